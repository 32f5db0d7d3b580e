"""push -> two people annotate through Label Studio's API -> pull (idempotent) -> apply -> the pairs that result."""

from __future__ import annotations

import json
from pathlib import Path

from interleaf.run.reader import RunReader
from interleaf.state import DialogueState
from tests.annotate.conftest import cli, project_tasks, run_id, snapshot
from tests.annotate.runs import write_image_run
from tests.fixtures.label_studio import Annotator, LabelStudioServer, choice, text

DIMS = ("text_quality", "context_coherence")


def states(run: Path) -> dict[str, DialogueState]:
    return {s.seed.id: s for s in RunReader.open(run).dialogues()}


def scores(tq: int, cc: int, reason: str = "") -> list[dict]:
    result = [choice("text_quality", "dialogue", str(tq)), choice("context_coherence", "dialogue", str(cc))]
    if reason:
        result.append(text("text_quality-reason", "dialogue", reason))
    return result


def test_round_trip_two_annotators_agreement_and_pairs(
    run_dir: Path, ls: LabelStudioServer, annotators: tuple[Annotator, Annotator]
) -> None:
    a, b = annotators
    before = states(run_dir)
    house = before["house"]
    # k=2, keep 1: the judge's scores kept one first answer of "house" and pruned the other.
    [keep_id] = [k for k in ("v0.0", "v0.1") if house.nodes[k].status == "alive"]
    [prune_id] = [k for k in ("v0.0", "v0.1") if house.nodes[k].status == "pruned"]

    pushed = cli("push", str(run_dir), "--what", "turns")
    assert pushed.exit_code == 0, pushed.output
    assert "created project" in pushed.output and "8 tasks added" in pushed.output
    again = cli("push", str(run_dir), "--what", "turns")
    assert again.exit_code == 0 and "0 tasks added, 8 already there" in again.output, again.output

    project, tasks = project_tasks(ls, f"{run_id(run_dir)} turns")
    assert len(tasks) == 8
    blob = json.dumps([t["data"] for t in tasks.values()])
    assert str(run_dir) not in blob and "file://" not in blob and "/tmp/" not in blob  # nothing of this machine
    kept, pruned = tasks[("house", keep_id)], tasks[("house", prune_id)]
    # Both people prefer the answer the judge's scores pruned; they disagree on coherence.
    a_kept = a.annotate(kept["id"], scores(1, 0))
    a.annotate(pruned["id"], scores(3, 3, "complete and clear"))
    b.annotate(kept["id"], scores(1, 3))
    b.annotate(pruned["id"], scores(3, 1))

    pulled = cli("pull", str(run_dir))
    assert pulled.exit_code == 0, pulled.output
    after = states(run_dir)["house"]
    records = after.nodes[prune_id].human_scores
    assert sorted((r.annotator, r.dimension, r.value) for r in records) == [
        (f"ls-user-{a.user_id}", "context_coherence", 3), (f"ls-user-{a.user_id}", "text_quality", 3),
        (f"ls-user-{b.user_id}", "context_coherence", 1), (f"ls-user-{b.user_id}", "text_quality", 3),
    ]
    assert {r.origin for r in records} == {f"label-studio:{project['id']}/{pruned['id']}"}
    assert next(r for r in records if r.annotator.endswith(str(a.user_id)) and r.dimension == "text_quality").reason \
        == "complete and clear"
    assert all(r.at is not None for r in records)
    assert after.nodes[prune_id].scores == house.nodes[prune_id].scores  # the judge's scores stay as they were
    assert after.nodes[prune_id].status == "pruned"  # pull only records; apply decides

    dialogues = {k: v for k, v in snapshot(run_dir).items() if k.startswith("dialogues/")}
    twice = cli("pull", str(run_dir))
    assert twice.exit_code == 0 and "0 added, 0 removed (0 dialogue(s) written)" in twice.output, twice.output
    assert {k: v for k, v in snapshot(run_dir).items() if k.startswith("dialogues/")} == dialogues

    # A changed annotation replaces the same person's earlier scores; the other person's stay.
    a.update(a_kept, scores(0, 0))
    changed = cli("pull", str(run_dir))
    assert changed.exit_code == 0, changed.output
    kept_records = states(run_dir)["house"].nodes[keep_id].human_scores
    assert len(kept_records) == 4
    assert {(r.annotator, r.dimension): r.value for r in kept_records}[(f"ls-user-{a.user_id}", "text_quality")] == 0
    assert {(r.annotator, r.dimension): r.value for r in kept_records}[(f"ls-user-{b.user_id}", "text_quality")] == 1

    report = json.loads((run_dir / "reports" / "human-agreement.json").read_text())
    by_dim = {d["dimension"]: d for d in report["dimensions"]}
    # text_quality: (0 vs 1) and (3 vs 3) -> exact 50%, kappa 1/3; coherence disagrees by 3 and by 2 steps.
    assert by_dim["text_quality"]["exact"] == 0.5 and by_dim["text_quality"]["kappa"] == 0.333333
    assert by_dim["context_coherence"]["exact"] == 0.0
    gaps = {(d["item"], d["dimension"]): d["gap"] for d in report["disagreements"]}
    assert gaps == {(keep_id, "context_coherence"): 3, (prune_id, "context_coherence"): 2}
    # Judge vs people on text_quality: four human scores, each against the judge's score of its node.
    people = [(keep_id, 0), (keep_id, 1), (prune_id, 3), (prune_id, 3)]
    judge = [house.nodes[k].scores["text_quality"].value for k, _ in people]
    assert by_dim["text_quality"]["judge_n"] == 4
    assert by_dim["text_quality"]["judge_exact"] == sum(j == v for j, (_, v) in zip(judge, people, strict=True)) / 4
    assert (by_dim["text_quality"]["judge_pearson"] is None) == (len(set(judge)) == 1)  # undefined: no variance
    assert report["annotators"][f"ls-user-{a.user_id}"] == "ann-a@example.com"
    md = (run_dir / "reports" / "human-agreement.md").read_text()
    assert "Disagreements by more than one scale step" in md and "ann-b@example.com" in md

    applied = cli("apply", str(run_dir))
    assert applied.exit_code == 0, applied.output
    house2 = states(run_dir)["house"]
    assert house2.nodes[prune_id].status == "alive"
    assert house2.nodes[keep_id].status == "pruned"
    assert house2.nodes[keep_id].reason.startswith("rank 2 of 2 under v0: score 2 < kept 5")
    below = [k for k, n in house2.nodes.items() if n.parent == keep_id]
    assert below and {house2.nodes[k].reason for k in below} == {f"ancestor {keep_id} pruned"}
    [pair] = house2.pairs
    # People: the pruned answer = 3 + (3+1)/2 = 5, the kept one = (0+1)/2 + (0+3)/2 = 2: it wins by 3.
    side = 2 if prune_id == "v0.1" else 1
    assert (pair.id, pair.overall, pair.margin, pair.decided_by) == ("house/local/v0.0~v0.1", side, 3.0, "human")
    assert pair.preference == {"text_quality": side, "context_coherence": side}
    assert "human:" in pair.reasons["text_quality"]
    assert states(run_dir)["flower"] == before["flower"]  # nobody annotated it: unchanged
    status = json.loads((run_dir / "status" / "house.json").read_text())
    assert status["complete"] == 1 and status["totals"]["calls"] > 0  # a shorter dialogue now; spend kept
    report = json.loads((run_dir / "reports" / "human-agreement.json").read_text())
    assert report["human_pairs"] == 1

    assert "0 written" in cli("apply", str(run_dir)).output  # idempotent
    judged = cli("apply", str(run_dir), "--prefer", "judge")
    assert judged.exit_code == 0, judged.output
    back = states(run_dir)["house"]
    assert {k: (n.status, n.reason) for k, n in back.nodes.items()} == \
           {k: (n.status, n.reason) for k, n in house.nodes.items()}
    assert back.pairs == house.pairs


def test_dialogues_and_pairs_round_trip(
    run_dir: Path, tmp_path: Path, ls: LabelStudioServer, annotators: tuple[Annotator, Annotator]
) -> None:
    a, _ = annotators
    ends = sorted((s.seed.id, e) for s in states(run_dir).values() for e in s.dialogue_ends()
                  if s.nodes[e].status == "alive" and s.nodes[e].assistant is not None)
    assert cli("push", str(run_dir), "--what", "dialogues", "--only", "alive").exit_code == 0
    _, tasks = project_tasks(ls, f"{run_id(run_dir)} dialogues")
    assert sorted(tasks) == ends and ends
    end = next(e for s, e in ends if s == "house")
    dims = ("context_awareness", "helpfulness", "crucial_step_recognition")
    a.annotate(tasks[("house", end)]["id"], [choice(d, "dialogue", "2") for d in dims])
    assert cli("pull", str(run_dir)).exit_code == 0
    house = states(run_dir)["house"]
    assert sorted(r.dimension for r in house.human_dialogue_scores[end]) == sorted(dims)

    image_run, state = write_image_run(tmp_path / "images")
    assert [p.id for p in state.pairs] == ["garden/local/v0.0~v0.1"]
    pushed = cli("push", str(image_run), "--what", "pairs", "--project", "garden review")
    assert pushed.exit_code == 0 and "'garden review local-pairs'" in pushed.output, pushed.output
    _, pair_tasks = project_tasks(ls, "garden review local-pairs")
    task = pair_tasks[("garden", "local/v0.0~v0.1")]
    assert "Response 1" in task["data"]["pair"] and "Response 2" in task["data"]["pair"]
    local = ("local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence")
    # The judge preferred response 1; this person prefers response 2 on every dimension.
    a.annotate(task["id"], [choice(f"{d}-1", "pair", "0") for d in local]
               + [choice(f"{d}-2", "pair", "3") for d in local]
               + [text("text_quality-reason", "pair", "the second one answers the winter part")])
    pulled = cli("pull", str(image_run), "--project", "garden review")
    assert pulled.exit_code == 0, pulled.output
    after = states(image_run)["garden"]
    assert {r.value for r in after.nodes["v0.0"].human_scores} == {0}
    assert {r.value for r in after.nodes["v0.1"].human_scores} == {3}
    assert cli("apply", str(image_run)).exit_code == 0
    [pair] = states(image_run)["garden"].pairs
    assert (pair.overall, pair.decided_by) == (2, "human")
