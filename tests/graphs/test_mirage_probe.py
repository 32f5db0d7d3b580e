"""The built-in `mirage-probe` graph: a prompt hierarchy per seed, every level to every model,
fabrication/caution judged, and per-level, per-model tables and plots in the run's reports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from interleaf.datasets.reports import SERIES_METADATA_KEY, ScoreTableParams, score_table, write_reports
from interleaf.graphs.compiler import compile_graph
from interleaf.graphs.loading import builtin_graphs, load_graph
from interleaf.state import Seed

from .run_builtin import DATA, point_models_at, run_graph

ROLES = {
    "INTERLEAF_EXPANDER_MODEL": "expand",
    "INTERLEAF_MIRAGE_REASONING_MODEL": "reasoning",
    "INTERLEAF_MIRAGE_CHAT_MODEL": "chat",
    "INTERLEAF_JUDGE_MODEL": "judge",
}
SEEDS = [
    Seed(id="flower", prompt="What colour are the petals of this flower?", images=[str(DATA / "flower.png")]),
    Seed(id="house", prompt="How many windows does this house have?", images=[str(DATA / "house.png")]),
    Seed(id="house-door", prompt="What is the door of this house made of?", images=[str(DATA / "house.png")]),
]


def test_mirage_probe_is_data_and_validates() -> None:
    spec, doc = load_graph("mirage-probe")
    compile_graph(spec, doc)
    levels = spec.nodes["expand"].params["levels"]
    assert [lv["name"] for lv in levels] == ["plain", "incomplete image", "misleading premise"]
    assert "instruction" not in levels[0] and all(lv["instruction"] for lv in levels[1:])
    assert spec.nodes["answer"].models == ["reasoning", "chat"]
    assert spec.nodes["plan"].params["k"] % len(spec.nodes["answer"].models) == 0
    assert spec.nodes["judge"].params["rubric"] == "mirage-fabrication"
    for m in spec.models.values():
        assert m.model.startswith("${INTERLEAF_") and m.api_base == "${INTERLEAF_API_BASE:-}"
    assert {r.kind for r in spec.reports.values()} == {"score_table"}


def _expected(states: list[Any], metric: str, threshold: float) -> dict[tuple[str, str], float]:
    """Rates recomputed from the dialogues, independently of the report code."""
    hits: dict[tuple[str, str], list[bool]] = {}
    for state in states:
        for node in state.nodes.values():
            score = node.scores[metric].value
            if node.status == "failed" or score is None:
                continue
            key = (str(node.tags["level"]), node.tags["model"])
            hits.setdefault(key, []).append(score >= threshold)
    return {k: sum(v) / len(v) for k, v in hits.items()}


async def test_mirage_probe_end_to_end_on_the_simulator(sim: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    point_models_at(monkeypatch, sim.base_url, ROLES)
    store, totals, states = await run_graph(builtin_graphs()["mirage-probe"], tmp_path / "run", SEEDS)
    assert totals.done == len(SEEDS) and totals.failed == 0
    assert totals.calls == sim.requests and totals.failed_calls == 0

    for state in states:
        # 3 levels x 2 models, one turn.
        assert len(state.prompts) == 3 and len(state.nodes) == 6
        cells = {(n.tags["level"], n.tags["model"]) for n in state.nodes.values()}
        assert cells == {(lv, m) for lv in (1, 2, 3) for m in ("reasoning", "chat")}
        for node in state.nodes.values():
            assert node.turn == 0 and node.assistant is not None
            assert node.provenance[0].model == node.tags["model"]
            assert set(node.scores) == {"fabrication", "caution"}
            images = len(node.user.images)
            assert images == 1  # every level of this graph keeps the seed image
            if node.tags["level"] == 1:
                assert node.user.text == state.seed.prompt
            else:
                assert node.user.text != state.seed.prompt and node.tags["expansion"] == "model"
    assert sim.requests_by_model["reasoning"] == sim.requests_by_model["chat"] == 3 * len(SEEDS)
    assert sim.requests_by_model["expand"] == 2 * len(SEEDS)

    written = write_reports(store)
    for name in ("fabrication_by_level", "caution_by_level"):
        for ext in ("md", "csv", "json", "png"):
            assert f"reports/{name}.{ext}" in written
    assert "reports/fabrication_score_by_level.md" in written
    assert "reports/fabrication_score_by_level.png" not in written  # that report asks for no plot
    assert "reports/index.md" in written

    # The CSV holds one row per (level, model) cell with the rate recomputed here.
    rows = list(csv.DictReader(io.StringIO(store.get_bytes("reports/fabrication_by_level.csv").decode())))
    got = {(r["level"], r["model"]): float(r["fabrication_rate"]) for r in rows}
    expected = _expected(states, "fabrication", 1)
    assert got.keys() == expected.keys() and len(got) == 6
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6)
        assert int(next(r["n"] for r in rows if (r["level"], r["model"]) == key)) == len(SEEDS)

    md = store.get_bytes("reports/fabrication_by_level.md").decode()
    assert "| level | chat | reasoning |" in md
    assert "![Fabrication rate by prompt level](fabrication_by_level.png)" in md
    assert md.count("(n=3)") == 6
    index = store.get_bytes("reports/index.md").decode()
    assert "## Fabrication rate by prompt level" in index and "## Caution rate by prompt level" in index

    # The plot: a real PNG with one series per model, labelled in its metadata ...
    png = store.get_bytes("reports/fabrication_by_level.png")
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.width > 100
        assert json.loads(img.text[SERIES_METADATA_KEY]) == ["chat", "reasoning"]
    # ... and the same figure, rebuilt from the run, has one line per model with the table's values.
    spec = load_graph("mirage-probe")[0]
    params = ScoreTableParams.model_validate(spec.reports["fabrication_by_level"].params)
    table = score_table(states, params)
    fig = table.figure(title="t", y_label="y")
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["chat", "reasoning"]
    for ln in lines:
        ys = list(ln.get_ydata())
        assert ys == pytest.approx([expected[(str(lv), str(ln.get_label()))] for lv in (1, 2, 3)])
