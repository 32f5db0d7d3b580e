"""Every import points down the layers (docs/architecture.md draws them).

Imports under ``if TYPE_CHECKING:`` count too: a type that needs an upper layer is a sign the
concept lives in the wrong place. Function-local imports of interleaf modules are allowed only
with a comment on the line before or on the line itself saying why (a heavy dependency, an
optional backend), never to dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "interleaf"

#: Lowest first. A module may import modules of its own layer or of layers below.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "registry", "state"),
    ("storage", "graphs.spec", "graphs.yamlsource", "graphs.loading", "graphs.rubric", "seeds", "imaging",
     "models.judge_format", "models.markers", "models.retry", "models.health", "models.ratelimit"),
    ("run",),
    ("models", "tools"),
    ("runtime", "nodes"),
    ("graphs.compiler", "graphs.predicates", "graphs.reporting"),
    ("runner", "processes", "_preload", "datasets", "bench", "annotate", "preflight"),
    ("flows",),
    ("launch", "testing"),
    ("cli", "bench.cli", "annotate.cli", "__main__", ""),
]


#: Modules whose docstring explains why their functions import what they use.
LOCAL_IMPORTS_BY_DESIGN = {
    "cli": "each command imports what it needs, so `interleaf --help` stays fast",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of ``module`` (relative to ``interleaf``): the longest matching prefix wins."""
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def _interleaf_imports(tree: ast.Module) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every interleaf import."""
    found: list[tuple[int, str, bool]] = []
    top_level = {id(node) for node in tree.body}
    type_checking = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "interleaf":
            names = [node.module]
            if node.module == "interleaf":
                names = [f"interleaf.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "interleaf"]
        for name in names:
            found.append((node.lineno, name.removeprefix("interleaf").lstrip("."),
                          id(node) in top_level or id(node) in type_checking))
    return found


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    missing = [_module_name(p) for p in _modules() if layer_of(_module_name(p)) < 0]
    assert not missing


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _module_name(p) or "interleaf")
def test_imports_point_down(path: Path) -> None:
    importer = _module_name(path)
    if importer == "":
        return  # the package's lazy public API re-exports every layer on purpose
    mine = layer_of(importer)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    upward = []
    uncommented = []
    for line, imported, module_level in _interleaf_imports(tree):
        theirs = layer_of(imported)
        if theirs > mine:
            upward.append(f"{importer}:{line} imports {imported} (layer {theirs} > {mine})")
        if not module_level and importer not in LOCAL_IMPORTS_BY_DESIGN:
            here = lines[line - 1]
            before = [text.strip() for text in lines[max(0, line - 4):line - 1]]
            if "#" not in here and not any(text.startswith("#") for text in before):
                uncommented.append(f"{importer}:{line} imports {imported} inside a function without saying why")
    assert not upward
    assert not uncommented


def test_layer_table_matches_the_docs() -> None:
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for prefixes in LAYERS:
        for prefix in prefixes:
            if prefix and not prefix.startswith("__"):
                assert f"`{prefix}`" in doc, f"docs/architecture.md does not place `{prefix}` in a layer"
