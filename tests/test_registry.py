"""``module:attr`` names resolve installed modules only: a graph never runs a file lying beside it."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from interleaf.errors import SpecError
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import load_graph
from interleaf.registry import import_object, untrusted_dirs

EVIL = '''\
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("evil.py ran")
Kind = None
'''
GRAPH = '''\
name: g
nodes:
  greet: {kind: "evil:Kind"}
edges:
  - {from: START, to: greet}
  - {from: greet, to: END}
'''


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A downloaded graph with an ``evil.py`` beside it, and no PYTHONPATH choice of the user's."""
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "evil.py").write_text(EVIL)
    (folder / "graph.yaml").write_text(GRAPH)
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.delitem(sys.modules, "evil", raising=False)
    return folder


def validate(path: Path) -> SpecError:
    with pytest.raises(SpecError) as err:
        compile_graph(*load_graph(path))
    return err.value


def test_cwd_is_not_an_import_root(planted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console script: the working directory is not on sys.path, and interleaf no longer adds it."""
    monkeypatch.chdir(planted)
    error = validate(planted / "graph.yaml")
    assert error.field == "nodes.greet.kind" and "No module named 'evil'" in str(error)
    assert "only installed modules are imported" in str(error)
    assert not (planted / "imported.marker").exists() and "evil" not in sys.modules
    assert str(planted) not in sys.path


def test_cwd_on_sys_path_is_refused(planted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m interleaf`` puts the working directory first on sys.path: its files are still refused."""
    monkeypatch.chdir(planted)
    monkeypatch.syspath_prepend(str(planted))
    error = validate(planted / "graph.yaml")
    assert error.field == "nodes.greet.kind"
    assert f"module 'evil' would be imported from {planted / 'evil.py'}, inside the current folder" in str(error)
    assert "pip install -e" in str(error)
    assert not (planted / "imported.marker").exists() and "evil" not in sys.modules


def test_graph_folder_is_refused(planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.syspath_prepend(str(planted))
    with untrusted_dirs(planted):
        error = validate(planted / "graph.yaml")
    assert "inside a graph's folder" in str(error) and error.field == "nodes.greet.kind"
    assert not (planted / "imported.marker").exists()


def test_a_folder_the_user_put_on_pythonpath_is_trusted(planted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(planted)
    monkeypatch.syspath_prepend(str(planted))
    monkeypatch.setenv("PYTHONPATH", str(planted))
    assert import_object("evil:Kind") is None
    assert (planted / "imported.marker").read_text() == "evil.py ran"


def test_the_interpreters_own_modules_resolve_from_inside_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Working in the stdlib folder (or a home holding ~/.pyenv, or a project holding .venv) is fine."""
    monkeypatch.chdir(sysconfig.get_path("stdlib"))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    assert import_object("colorsys:rgb_to_hsv").__name__ == "rgb_to_hsv"


def test_module_example() -> None:
    import doctest

    from interleaf import registry

    result = doctest.testmod(registry)
    assert result.failed == 0 and result.attempted > 0


def test_bad_names_are_lookup_errors() -> None:
    with pytest.raises(LookupError, match="not an import path"):
        import_object("evil.py")
    with pytest.raises(LookupError, match="has no attribute 'Nope'"):
        import_object("interleaf.registry:Nope")


def test_plugin_entry_points_scan_the_installed_packages_once_per_sys_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import interleaf.registry as registry

    scans: list[int] = []
    real = registry.entry_points

    def counting() -> object:
        scans.append(1)
        return real()

    monkeypatch.setattr(registry, "entry_points", counting)
    monkeypatch.setattr(registry, "_ENTRY_POINTS", None)
    registry.plugin_entry_points("interleaf.nodes")
    registry.plugin_entry_points("interleaf.tools")
    assert len(scans) == 1
    # A package installed into a folder put on sys.path later is found: that path is scanned anew.
    dist = tmp_path / "late_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[interleaf.tools]\nlate_tool = late_plugin:Tool\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [ep.name for ep in registry.plugin_entry_points("interleaf.tools")] == ["late_tool"]
    assert len(scans) == 2
