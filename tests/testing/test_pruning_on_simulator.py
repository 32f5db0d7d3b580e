"""The built-in `intermt` graph on the simulator, judged against the simulator's planted defects.

One run (module-scoped) of the built-in graph, copied with smaller images and with a threshold
on every dimension it weights, over three demo seeds with the default defect rates; the tests
read it back. The threshold is what lets pruning remove *every* defective candidate: with
rank pruning alone (``keep: 2`` of ``k: 3``) a group holding two defective siblings must keep
one of them, and the report's ``defective_prunable`` says how many that leaves.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from interleaf import open_run
from interleaf.datasets.pruning_quality import JSON_KEY, MD_KEY, pruning_quality, write_pruning_quality
from interleaf.datasets.sim_truth import DEFECT_KINDS, read_answer
from interleaf.graphs.rubric import load_rubric
from interleaf.run.reader import RunReader
from interleaf.seeds import read_seeds
from interleaf.state import DialogueState, ImagePart, TextPart
from interleaf.storage.store import ObjectStore
from interleaf.testing.demo import DEMO_SEEDS, demo_graph
from interleaf.testing.sim_text import PROBLEM_WORDS, local_verdict
from interleaf.testing.simulator import Simulator

#: The demo seeds the run uses: a house photo to repaint, a logo, a cat drawn in steps.
SEED_IDS = ("demo-001", "demo-003", "demo-004")
#: Each seed's subject, written by hand (not by the simulator's own extractor).
SUBJECT_WORDS = {"demo-001": ("house",), "demo-003": ("logo", "Morning Crumb"), "demo-004": ("cat",)}
WEIGHTED = ("local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence")
IMAGE_WORDS = re.compile(r"\b(?:image|picture|pictures|version|step|shows|showed|edited)\b", re.IGNORECASE)


def _thresholded_copy(dest: Path) -> Path:
    path = demo_graph("intermt", dest, image_size=32, steps=1)
    yaml = YAML(typ="rt", pure=True)
    data: Any = yaml.load(path.read_text(encoding="utf-8"))
    data["nodes"]["prune"]["params"]["thresholds"] = dict.fromkeys(WEIGHTED, 2)
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return path


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_dir: Path,
            tiny_pix2pix_dir: Path) -> Iterator[tuple[ObjectStore, list[DialogueState]]]:
    root = tmp_path_factory.mktemp("sim-pruning")
    graph = _thresholded_copy(root / "intermt.yaml")
    seeds = [s for s in read_seeds(DEMO_SEEDS) if s.id in SEED_IDS]
    with Simulator(seed=0) as sim, pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERLEAF_API_BASE", sim.base_url)
        mp.setenv("OPENAI_API_KEY", "sk-sim-local")
        for var, role in (("EXPANDER", "expand"), ("ASSISTANT", "assistant"), ("JUDGE", "judge"),
                          ("USER_SIM", "user")):
            mp.setenv(f"INTERLEAF_{var}_MODEL", f"openai/sim-{role}")
        mp.setenv("INTERLEAF_T2I_MODEL", str(tiny_pipeline_dir))
        mp.setenv("INTERLEAF_EDIT_MODEL", str(tiny_pix2pix_dir))
        run = open_run(graph, root / "run")
        try:
            totals = asyncio.run(run.arun_seeds(seeds))
        finally:
            asyncio.run(run.aclose())
            run.release()
    assert (totals.done, totals.failed) == (len(seeds), 0)
    yield run.store, list(RunReader(run.store).dialogues())


def test_defective_candidates_are_pruned_and_pairs_choose_the_cleaner_side(
        sim_run: tuple[ObjectStore, list[DialogueState]]) -> None:
    store, states = sim_run
    report = pruning_quality(states)
    assert report.simulated and report.unrecognized_candidates == 0
    # Enough of everything for the shares to mean something at the default rates.
    assert report.candidates >= 80 and report.defective_candidates >= 20 and report.pairs >= 20
    assert sum(row["candidates"] > 0 for row in report.by_defect.values()) >= 5
    # Every kind lowers a weighted, thresholded dimension of intermt-local, so every one is pruned.
    assert report.defective_pruned >= 0.95 * report.defective_candidates, report.to_dict()
    assert report.pairs_cleaner_chosen >= 0.95 * report.pairs, report.to_dict()
    for kind, row in report.by_defect.items():
        assert row["pruned"] >= 0.95 * row["candidates"], (kind, row)
    # The pruner only removed what it had to: clean candidates go only where a group had 3 clean ones.
    assert report.clean_kept >= 0.6 * report.clean_candidates

    # The report files: the JSON has the integer fields, the table is readable.
    assert write_pruning_quality(store) == [JSON_KEY, MD_KEY]
    data = store.get_json(JSON_KEY)
    for name in ("defective_candidates", "defective_pruned", "clean_candidates", "clean_kept", "pairs",
                 "pairs_cleaner_chosen"):
        assert isinstance(data[name], int) and data[name] == getattr(report, name)
    assert set(data["by_defect"]) == set(DEFECT_KINDS)
    assert all(set(v) == {"candidates", "pruned"} for v in data["by_defect"].values())
    md = store.get_bytes(MD_KEY).decode()
    assert "| defective candidates pruned |" in md and "| off_topic |" in md


def _best_dialogue(state: DialogueState) -> list[Any]:
    def total(leaf: str) -> float:
        return sum(s.value or 0 for s in state.dialogue_scores[leaf].values())

    leaf = max(sorted(state.dialogue_scores), key=total)
    return state.path(leaf)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", " ".join(text.split())) if s]


def test_a_dialogue_reads_as_sentences_about_the_seed_with_images_where_the_text_talks_of_them(
        sim_run: tuple[ObjectStore, list[DialogueState]]) -> None:
    _, states = sim_run
    for state in states:
        words = SUBJECT_WORDS[state.seed.id]
        path = _best_dialogue(state)
        assert len(path) == 4, [n.id for n in path]
        for node in path:
            assert node.assistant is not None
            for role, message in (("user", node.user), ("assistant", node.assistant)):
                text = message.text
                assert any(w.lower() in text.lower() for w in words), (state.seed.id, role, text)
                for sentence in _sentences(text):
                    # Grammatical enough to check: a capital first, closing punctuation last.
                    assert sentence[0].isupper() or sentence[0].isdigit(), sentence
                    assert sentence[-1] in ".?!:", (state.seed.id, role, sentence)
            parts = node.assistant.parts
            for i, part in enumerate(parts):
                if not isinstance(part, ImagePart):
                    continue
                before = next((p.text for p in reversed(parts[:i]) if isinstance(p, TextPart)), "")
                announce = _sentences(before)[-1]
                assert announce.endswith(":") and IMAGE_WORDS.search(announce), (node.id, announce)
                assert part.caption and part.marker
        # Later turns point back at what an earlier image showed.
        later = " ".join(n.assistant.text for n in path[1:] if n.assistant is not None)
        assert re.search(r"\bimage \d+\b", later, re.IGNORECASE), later


def test_every_judge_line_gives_a_reason_that_agrees_with_its_score(
        sim_run: tuple[ObjectStore, list[DialogueState]]) -> None:
    _, states = sim_run
    local = load_rubric("intermt-local")
    checked = 0
    for state in states:
        for node in state.nodes.values():
            if node.assistant is None or not node.scores:
                continue
            earlier = [n.assistant for n in state.path(node.id)[:-1] if n.assistant is not None]
            facts = read_answer(node.assistant, earlier)
            assert facts is not None
            for dim, score in node.scores.items():
                top = local.dimension(dim).scale.high
                problem = any(w in score.reason.lower() for w in PROBLEM_WORDS)
                assert (score.value == top) != problem, (node.id, dim, score)
                expected = local_verdict(dim, facts, node.turn)
                assert expected is not None and score.value == expected.value, (node.id, dim, score, facts.defects)
                checked += 1
        glob = load_rubric("intermt-global")
        for leaf, scores in state.dialogue_scores.items():
            for dim, score in scores.items():
                top = glob.dimension(dim).scale.high
                problem = any(w in score.reason.lower() for w in PROBLEM_WORDS)
                assert (score.value == top) != problem, (leaf, dim, score)
                checked += 1
    assert checked > 500
