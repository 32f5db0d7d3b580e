"""Outputs never crash: every export format, the viewer and the reports on empty, all-failed,
partly failed runs and 0-record imports, and one typed error for places that cannot be written."""

from __future__ import annotations

import doctest
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

import datasets
from interleaf.datasets import image_source, intermt, outputs, viewer
from interleaf.datasets.export import FORMATS, export_run
from interleaf.datasets.hf import _features
from interleaf.datasets.intermt import EXPORT_FILES, import_intermt
from interleaf.datasets.jsonl import DIALOGUES_JSONL, read_jsonl
from interleaf.datasets.outputs import TEMP_PREFIX, OutputError, prepare_out_dir, staging, writing
from interleaf.datasets.reports import write_reports
from interleaf.datasets.viewer import render_run
from interleaf.errors import InterleafError
from interleaf.graphs.loading import builtin_graphs
from interleaf.run import layout
from interleaf.run.records import DialogueStatus, RunManifest
from interleaf.run.totals import RunTotals
from interleaf.state import DialogueState, Message, Seed, TreeNode
from interleaf.storage.store import ObjectStore
from tests.datasets.sample_run import write_sample_run

REPO = Path(__file__).resolve().parents[2]
TARGETS = (*FORMATS, "view")
FAILED = {"a": "RuntimeError: endpoint said no", "b": "ValueError: bad answer"}


def manifest(store: ObjectStore, seeds: int) -> None:
    RunManifest(run_id="r-1", graph_name="mirage-probe", graph_hash="ab" * 32,
                counts=RunTotals(seeds=seeds)).save(store)
    store.put_bytes(layout.GRAPH, builtin_graphs()["mirage-probe"].read_bytes())


def fail(store: ObjectStore, seed_id: str, error: str) -> None:
    DialogueStatus(seed_id=seed_id, status="failed", reason=error.split(":")[0], error=error).save(store)


def empty_run(root: Path) -> Path:
    manifest(ObjectStore(root), 0)
    return root


def all_failed_run(root: Path) -> Path:
    """Three seeds failed: two before finishing (no dialogue stored), one with a tree whose only answer failed."""
    store = ObjectStore(root)
    manifest(store, 3)
    for seed_id, error in FAILED.items():
        fail(store, seed_id, error)
    node = TreeNode(id="v0.0", turn=0, user=Message.user("q"), status="failed", reason="tool generate_image failed")
    state = DialogueState(seed=Seed(id="c", prompt="q"), nodes={"v0.0": node}, status="failed",
                          error="no complete dialogue")
    store.put_json(layout.dialogue_key("c"), state.model_dump(mode="json"))
    DialogueStatus(seed_id="c", status="failed", reason="no_complete_dialogue",
                   error="no complete dialogue").save(store)
    return root


def partly_failed_run(root: Path) -> Path:
    write_sample_run(root)
    store = ObjectStore(root)
    store.put_bytes(layout.GRAPH, builtin_graphs()["mirage-probe"].read_bytes())  # one that declares a report
    for seed_id, error in FAILED.items():
        fail(store, seed_id, error)
    return root


def empty_import(root: Path) -> Path:
    src = root.parent / f"{root.name}-src.json"
    src.write_text("[]\n")
    import_intermt(src, root)
    return root


RUNS: dict[str, Callable[[Path], Path]] = {
    "empty": empty_run, "all-failed": all_failed_run, "partly-failed": partly_failed_run, "empty-import": empty_import,
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = str(request.param)
    return name, RUNS[name](tmp_path_factory.mktemp(name) / "run")


def test_exports_of_runs_with_nothing_or_little_to_export(run: tuple[str, Path], tmp_path: Path) -> None:
    name, root = run
    nothing = name != "partly-failed"

    export_run(str(root), "intermt", tmp_path / "intermt", None)
    for file in EXPORT_FILES:
        records = json.loads((tmp_path / "intermt" / file).read_text())
        assert isinstance(records, list) and (records == []) == (nothing or file == "none")

    export_run(str(root), "align-anything", tmp_path / "aa", None)
    assert (json.loads((tmp_path / "aa" / "train.json").read_text()) == []) == nothing

    export_run(str(root), "jsonl", tmp_path / "jsonl", None)
    states = read_jsonl(tmp_path / "jsonl" / DIALOGUES_JSONL)
    # Lossless: a failed seed's stored tree is kept (with its reason) even when nothing finished.
    assert [s.seed.id for s in states if s.status == "failed"] == (["c"] if name == "all-failed" else [])

    report = export_run(str(root), "hf", tmp_path / "hf", None)
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    features = _features()
    for subset in ("dialogues", "pairs"):
        assert loaded[subset].features == features[subset]
        assert (loaded[subset].num_rows == 0) == nothing
        table = pq.read_table(tmp_path / "hf" / "data" / f"{subset}.parquet")
        assert table.column_names == list(features[subset]) and (table.num_rows == 0) == nothing
    card = (tmp_path / "hf" / "README.md").read_text()
    assert ("load_from_disk" in card) == nothing
    assert (report.startswith("hf: 0 dialogues, 0 pairs")) == nothing


def notice(index: Path) -> str:
    page = index.read_text()
    return page[page.index('<section id="notice"'):page.index("</section>", page.index('<section id="notice"'))]


def test_view_says_why_it_is_empty(run: tuple[str, Path], tmp_path: Path) -> None:
    name, root = run
    index = render_run(str(root), tmp_path / "view")
    text = notice(index)
    data = index.read_text()
    if name in ("empty", "empty-import"):
        assert "no dialogue: this run has no seeds" in text
    elif name == "all-failed":
        assert "no dialogue finished: 3 seeds failed (reasons: RuntimeError x1, ValueError x1, " \
               "no_complete_dialogue x1)" in text
        for seed_id, error in FAILED.items():
            assert f"<code>{seed_id}</code>: {error}" in text
    else:
        assert "2 seeds failed (reasons: RuntimeError x1, ValueError x1); the finished dialogues are shown" in text
        assert '"seeds": [{"id": "doc/b 2"' in data


def test_reports_of_runs_with_nothing_to_report(run: tuple[str, Path]) -> None:
    name, root = run
    if name == "empty-import":
        # An import has no graph, so no declared report: a typed error, not a traceback.
        with pytest.raises(InterleafError, match=r"no graph\.yaml"):
            write_reports(str(root))
        return
    store = ObjectStore(root)
    keys = write_reports(store)
    assert layout.report_key("index.md") in keys
    if name != "partly-failed":
        index = store.get_bytes_or_none(layout.report_key("index.md"))
        stored = b"1 dialogues." if name == "all-failed" else b"0 dialogues."  # the failed tree is stored
        assert index is not None and stored in index and b"(no scores)" in index
        assert not any(k.endswith(".png") for k in keys), "no plot of no data"


# -- places that cannot be written ---------------------------------------------------------------


def write(root: Path, target: str, out: Path) -> None:
    if target == "view":
        render_run(str(root), out)
    else:
        export_run(str(root), target, out, None)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "run"
    write_sample_run(root)
    return root


@pytest.mark.parametrize("target", TARGETS)
def test_a_file_in_the_way(sample: Path, tmp_path: Path, target: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "out"):
        with pytest.raises(OutputError) as err:
            write(sample, target, out)
        assert str(out) in str(err.value) and err.value.errno == errno.ENOTDIR
        assert "a regular file is in the way" in str(err.value)
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; test_real_full_and_read_only_"
                    "file_systems covers a read-only place for root, test_a_file_in_the_way an unwritable one")
@pytest.mark.parametrize("target", TARGETS)
def test_a_read_only_folder(sample: Path, tmp_path: Path, target: str) -> None:
    out = tmp_path / "out"
    write(sample, target, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        folder.chmod(0o555)
    try:
        with pytest.raises(OutputError) as err:
            write(sample, target, out)
        assert err.value.errno == errno.EACCES and str(out) in str(err.value)
        with pytest.raises(OutputError, match="Permission denied"):
            write(sample, target, out / "below")
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    finally:
        for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
            folder.chmod(0o755)


@pytest.mark.parametrize("target", ["intermt", "align-anything", "view"])
def test_a_failed_rewrite_keeps_the_earlier_export(sample: Path, tmp_path: Path, target: str) -> None:
    """The images folder replaced by a file: the rewrite fails midway, the earlier files stay whole."""
    out = tmp_path / "out"
    write(sample, target, out)
    shutil.rmtree(out / "images")
    (out / "images").write_text("not a folder")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(OutputError, match=r"out/images: File exists \(EEXIST\); a regular file is in the way"):
        write(sample, target, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_writing_and_staging_leave_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), writing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the exporter failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(RuntimeError), staging(tmp_path) as stage:
        (stage / "a.json").write_text("new")
        raise RuntimeError("the exporter failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "old-shard").write_text("old")
    with staging(tmp_path, replace=("ds",)) as stage:
        (stage / "ds").mkdir()
        (stage / "ds" / "new-shard").write_text("new")
        (stage / "a.json").write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path / "ds") == ["new-shard"]
    assert not [p for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]


def test_prepare_out_dir_probes_and_cleans_up(tmp_path: Path) -> None:
    out = prepare_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and os.listdir(out) == []


@pytest.mark.parametrize("module", [outputs, image_source, viewer, intermt], ids=lambda m: m.__name__)
def test_module_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and a private mount namespace (unshare) to mount a tiny "
                    "tmpfs and a read-only bind mount; there is no unprivileged way to make a real full disk")
def test_real_full_and_read_only_file_systems(tmp_path: Path) -> None:
    """ENOSPC on a 4 MiB tmpfs and EROFS on a read-only bind mount, in a child's own mount namespace."""
    child = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.datasets.output_faults",
         str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"},
    )
    assert child.returncode == 0, child.stderr[-4000:]
    results = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    assert {(r["case"], r["target"]) for r in results} >= {("enospc", t) for t in TARGETS} | {
        ("erofs", t) for t in TARGETS} | {("enospc-probe", "jsonl"), ("erofs-new", "jsonl")}
    for r in results:
        assert r["type"] == "OutputError", r
        reason = "No space left on device" if r["case"].startswith("enospc") else "Read-only file system"
        assert reason in r["message"] and str(tmp_path) in r["message"], r
        assert TEMP_PREFIX not in r["message"], "the message names the user's path, not a temporary one"
        assert r["kept"] and r["leftovers"] == [], r
        assert r["case"] == "erofs-new" or r["files"] > 0, r


def test_reports_into_a_blocked_store_are_an_output_error(tmp_path: Path) -> None:
    root = empty_run(tmp_path / "run")
    (root / layout.REPORTS_PREFIX).write_text("a file where the reports folder goes")
    with pytest.raises(OutputError, match=r"reports.*a regular file is in the way"):
        write_reports(str(root))
