"""How far a judge agrees with people: judgments read out of dialogue states, and their metrics.

Everything here is a pure function of :class:`~interleaf.state.DialogueState` objects, so the
same numbers come out for an InterMT-Bench run, for a run annotated later (Label Studio), or
for any run that carries both judge scores and :class:`~interleaf.state.HumanScore` records.

A **score judgment** is one judge answer compared with people's labels: a turn (the node's
``scores`` against its ``human_scores``; the judge read ``node.turn + 1`` turns) or a whole
dialogue (``dialogue_scores[leaf]`` against ``human_dialogue_scores[leaf]``). Each person's
label of a dimension is one comparison (two annotators of one turn are two; one annotator's
changed label counts once, the latest). A judge score
with ``value=None`` (unreadable after the re-ask, or a failed call) is *unparsed*: counted,
never compared, never guessed.

A **pair judgment** is a people's pair (``decided_by="human"``) and the judge's pair on the same
two nodes. Per dimension, a people's tie (0) is left out and counted; a judge tie against a
people's preference counts as wrong.

A **crucial-step judgment** is a ``crucial_step`` record: the judge's answer and the grader's
1-5 grade of it against the person's reference.

``turns`` is how many turns of dialogue the judge had to read for a judgment; grouping every
metric by it gives the multi-turn scaling curve (``by_turns``).

Example (one turn, one person, the judge agreeing on one dimension of two):

>>> from interleaf.state import HumanScore, Message, Score, Seed, TreeNode
>>> node = TreeNode(id="v0.0", user=Message.user("q"), assistant=Message(role="assistant"),
...                 scores={"a": Score(value=2), "b": Score(value=1)},
...                 human_scores=[HumanScore(dimension="a", value=2, annotator="p"),
...                               HumanScore(dimension="b", value=3, annotator="p")])
>>> state = DialogueState(seed=Seed(id="s", prompt="q"), nodes={"v0.0": node})
>>> summary = score_summary([state])
>>> summary["agreement"], summary["by_turns"]
(0.5, [{'turns': 1, 'items': 1, 'comparisons': 2, 'metric': 0.5}])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from interleaf.datasets.intermt import PLACEHOLDER_TAG
from interleaf.graphs.rubric import load_rubric
from interleaf.state import DialogueState, HumanScore, PreferencePair, Score

#: Node kinds whose model calls are "the judge" of a run (their provenance names its model).
JUDGE_KINDS = frozenset({"consistency_check", "turn_judge", "global_judge", "pair_judge", "crucial_step"})
#: Provenance note that marks the grader's calls of ``crucial_step`` (not the judge under test).
GRADER_NOTE = "grader"

Level = Literal["turn", "dialogue"]


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r of two equally long samples; None when undefined (fewer than two points, or
    either side constant).

    >>> pearson([1, 2, 3], [1, 3, 2])
    0.5
    >>> pearson([1, 2, 3], [2, 2, 2]) is None
    True
    """
    n = len(xs)
    if n != len(ys) or n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / math.sqrt(sxx * syy)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# -- score judgments -----------------------------------------------------------------------------


@dataclass
class ScoreJudgment:
    """One judge answer (a turn or a whole dialogue) and the people's labels it is compared with."""

    seed: str
    node: str
    level: Level
    turns: int
    judge: dict[str, float | None]
    human: list[tuple[str, float]]

    @property
    def parsed(self) -> bool:
        return all(v is not None for v in self.judge.values())

    def comparisons(self) -> Iterator[tuple[str, float, float]]:
        """``(dimension, person's value, judge's value)`` for every label the judge also scored."""
        for dim, value in self.human:
            judged = self.judge.get(dim)
            if judged is not None:
                yield dim, value, judged

    def lost(self) -> list[str]:
        """Dimensions a person labelled but the judge's answer left unreadable."""
        return [dim for dim, _ in self.human if dim in self.judge and self.judge[dim] is None]


def _people(scores: Iterable[HumanScore]) -> list[tuple[str, float]]:
    """``(dimension, value)`` per person: an annotator who labelled a dimension twice (a changed
    annotation) counts once, with the latest record (by ``at``, then order)."""
    latest: dict[tuple[str, str], tuple[tuple[float, int], float]] = {}
    for order, s in enumerate(scores):
        if s.value is None:
            continue
        rank = (s.at if s.at is not None else -math.inf, order)
        key = (s.dimension, s.annotator)
        if key not in latest or rank >= latest[key][0]:
            latest[key] = (rank, s.value)
    return [(dim, value) for (dim, _), (_, value) in latest.items()]


def _judge(scores: dict[str, Score]) -> dict[str, float | None]:
    return {k: s.value for k, s in scores.items()}


def score_judgments(dialogues: Iterable[DialogueState]) -> list[ScoreJudgment]:
    """Every judged turn or dialogue that people labelled too, in seed and node order."""
    out: list[ScoreJudgment] = []
    for state in sorted(dialogues, key=lambda s: s.seed.id):
        for node in sorted(state.nodes.values(), key=lambda n: n.id):
            human = _people(node.human_scores)
            if human and node.scores:
                out.append(ScoreJudgment(state.seed.id, node.id, "turn", node.turn + 1, _judge(node.scores), human))
        for leaf_id in sorted(state.human_dialogue_scores):
            human = _people(state.human_dialogue_scores[leaf_id])
            judged = state.dialogue_scores.get(leaf_id)
            leaf = state.nodes.get(leaf_id)
            if human and judged and leaf is not None:
                out.append(ScoreJudgment(state.seed.id, leaf_id, "dialogue", leaf.turn + 1, _judge(judged), human))
    return out


def _by_turns(rows: Iterable[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """``(turns, hits, comparisons)`` per judgment -> the scaling curve (judgments with none left out)."""
    buckets: dict[int, list[int]] = {}
    for turns, hits, n in rows:
        if n:
            b = buckets.setdefault(turns, [0, 0, 0])
            b[0] += 1
            b[1] += hits
            b[2] += n
    return [{"turns": t, "items": b[0], "comparisons": b[2], "metric": b[1] / b[2]} for t, b in sorted(buckets.items())]


def score_summary(dialogues: Iterable[DialogueState],
                  scales: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Agreement (exact match), Pearson and the scaling curve of judge scores against people's.

    ``scales`` (dimension -> ``(low, high)``) marks values outside a dimension's scale as special
    (a rubric's ``-1``: "cannot be judged"): they count for agreement (an answer that differs
    from the person's is a disagreement) but not for Pearson, mean error or means, where their
    number means nothing.
    """
    states = list(dialogues)
    judgments = score_judgments(states)
    dims: dict[str, dict[str, Any]] = {}
    for j in judgments:
        for dim, human, judged in j.comparisons():
            d = dims.setdefault(dim, {"level": j.level, "pairs": [], "unparsed": 0})
            d["pairs"].append((human, judged))
        for dim in j.lost():
            dims.setdefault(dim, {"level": j.level, "pairs": [], "unparsed": 0})["unparsed"] += 1
    dimensions: dict[str, dict[str, Any]] = {}
    correlations: list[float] = []
    hits = total = 0
    for dim in sorted(dims):
        pairs = dims[dim]["pairs"]
        matches = sum(1 for h, j in pairs if h == j)
        hits += matches
        total += len(pairs)
        low, high = (scales or {}).get(dim, (-math.inf, math.inf))
        numeric = [(h, j) for h, j in pairs if low <= h <= high and low <= j <= high]
        r = pearson([h for h, _ in numeric], [j for _, j in numeric])
        if r is not None:
            correlations.append(r)
        dimensions[dim] = {
            "level": dims[dim]["level"], "n": len(pairs), "agreement": matches / len(pairs) if pairs else None,
            "pearson": r, "unparsed": dims[dim]["unparsed"], "special": len(pairs) - len(numeric),
            "mean_abs_error": _mean([abs(h - j) for h, j in numeric]),
            "human_mean": _mean([h for h, _ in numeric]), "judge_mean": _mean([j for _, j in numeric]),
        }

    def curve(level: Level | None) -> list[dict[str, Any]]:
        rows = []
        for j in judgments:
            if level is None or j.level == level:
                compared = list(j.comparisons())
                rows.append((j.turns, sum(1 for _, h, v in compared if h == v), len(compared)))
        return _by_turns(rows)

    # People against each other, where two or more labelled the same turn: the yardstick for the judge.
    between: list[tuple[float, float]] = []
    for j in judgments:
        by_dim: dict[str, list[float]] = {}
        for dim, value in j.human:
            by_dim.setdefault(dim, []).append(value)
        for values in by_dim.values():
            between += [(a, b) for i, a in enumerate(values) for b in values[i + 1:]]
    parsed = sum(1 for j in judgments if j.parsed)
    return {
        "task": "score",
        "items": len({j.seed for j in judgments}),
        "judgments": len(judgments), "parsed": parsed, "unparsed": len(judgments) - parsed,
        "comparisons": total, "agreement": hits / total if total else None,
        "pearson": _mean(correlations), "dimensions": dimensions,
        "human_agreement": {"n": len(between),
                            "agreement": sum(a == b for a, b in between) / len(between) if between else None},
        "metric": "agreement", "by_turns": curve(None),
        "by_turns_by_level": {"turn": curve("turn"), "dialogue": curve("dialogue")},
    }


# -- pair judgments ------------------------------------------------------------------------------


@dataclass
class PairJudgment:
    """A people's pair and the judge's verdict on the same two nodes (None when it gave none)."""

    seed: str
    pair: str
    level: str
    turns: int
    human: dict[str, int]
    judge: dict[str, int] | None
    #: Whether the judge saw response_2 first (None when unknown).
    swapped: bool | None = None

    @property
    def unparsed_dims(self) -> list[str]:
        """Dimensions people labelled that the judge's verdict lacks."""
        if self.judge is None:
            return list(self.human)
        return [d for d in self.human if d not in self.judge]

    @property
    def parsed(self) -> bool:
        return self.judge is not None and not self.unparsed_dims


def _oriented(judge: PreferencePair, human: PreferencePair) -> dict[str, int] | None:
    if (judge.response_1, judge.response_2) == (human.response_1, human.response_2):
        return dict(judge.preference)
    if (judge.response_1, judge.response_2) == (human.response_2, human.response_1):
        flip = {1: 2, 2: 1, 0: 0}
        return {k: flip[v] for k, v in judge.preference.items()}
    return None


def _pair_records(state: DialogueState) -> dict[str, dict[str, Any]]:
    """``pair_judge`` records by the id of the people's pair they judged."""
    out: dict[str, dict[str, Any]] = {}
    for value in state.records.values():
        if isinstance(value, dict):
            for key, record in value.items():
                if isinstance(record, dict) and "judge_pair" in record and "swapped" in record:
                    out[str(key)] = record
    return out


def pair_judgments(dialogues: Iterable[DialogueState]) -> list[PairJudgment]:
    """Every people's pair, with the judge's verdict on the same nodes when there is one."""
    out: list[PairJudgment] = []
    for state in sorted(dialogues, key=lambda s: s.seed.id):
        records = _pair_records(state)
        judged = sorted((p for p in state.pairs if p.decided_by == "judge"), key=lambda p: p.id)
        for pair in sorted((p for p in state.pairs if p.decided_by == "human"), key=lambda p: p.id):
            verdict = next((o for j in judged if (o := _oriented(j, pair)) is not None), None)
            nodes = [state.nodes.get(pair.response_1), state.nodes.get(pair.response_2)]
            turns = max((n.turn for n in nodes if n is not None), default=0) + 1
            record = records.get(pair.id, {})
            swap = record.get("swapped")
            out.append(PairJudgment(state.seed.id, pair.id, pair.level, turns, dict(pair.preference), verdict,
                                    swap if isinstance(swap, bool) else None))
    return out


def pair_summary(dialogues: Iterable[DialogueState]) -> dict[str, Any]:
    """Accuracy of the judge's preferences against people's (their ties left out and counted)."""
    judgments = pair_judgments(dialogues)
    dims: dict[str, Counter[str]] = {}
    levels: dict[str, str] = {}
    rows = []
    first = shown = 0
    for j in judgments:
        hits = n = 0
        for dim, human in j.human.items():
            c = dims.setdefault(dim, Counter())
            levels.setdefault(dim, j.level)
            if human == 0:
                c["ties_excluded"] += 1
                continue
            judged = None if j.judge is None else j.judge.get(dim)
            if judged is None:
                c["unparsed"] += 1
                continue
            c["n"] += 1
            n += 1
            if judged == 0:
                c["judge_ties"] += 1
            if judged == human:
                c["correct"] += 1
                hits += 1
        rows.append((j.turns, hits, n))
        if j.judge is not None and j.swapped is not None:
            for value in j.judge.values():
                if value in (1, 2):
                    shown += 1
                    first += value == (2 if j.swapped else 1)
    dimensions = {
        dim: {"level": levels[dim], "n": c["n"], "accuracy": c["correct"] / c["n"] if c["n"] else None,
              "ties_excluded": c["ties_excluded"], "judge_ties": c["judge_ties"], "unparsed": c["unparsed"]}
        for dim, c in sorted(dims.items())
    }
    total = sum(c["n"] for c in dims.values())
    correct = sum(c["correct"] for c in dims.values())
    verdicts = [j for j in judgments if j.judge is not None]
    parsed = sum(1 for j in verdicts if j.parsed)
    return {
        "task": "pair",
        "items": len(judgments), "judgments": len(verdicts), "parsed": parsed, "unparsed": len(verdicts) - parsed,
        "unjudged": len(judgments) - len(verdicts),
        "comparisons": total, "accuracy": correct / total if total else None,
        "ties_excluded": sum(c["ties_excluded"] for c in dims.values()),
        "judge_ties": sum(c["judge_ties"] for c in dims.values()),
        "first_position_rate": first / shown if shown else None,
        "dimensions": dimensions, "metric": "accuracy", "by_turns": _by_turns(rows),
    }


# -- crucial-step judgments ----------------------------------------------------------------------


@dataclass
class CrucialJudgment:
    """A ``crucial_step`` record: the judge's answer, its grade, and the scores beside it."""

    seed: str
    leaf: str
    turns: int
    answer_parsed: bool
    grade: float | None
    judge_score: float | None = None
    human_scores: list[float] = field(default_factory=list)


def crucial_judgments(dialogues: Iterable[DialogueState], dimension: str = "crucial_step_recognition") -> list[
        CrucialJudgment]:
    out: list[CrucialJudgment] = []
    for state in sorted(dialogues, key=lambda s: s.seed.id):
        for value in state.records.values():
            if not isinstance(value, dict):
                continue
            for leaf, record in sorted(value.items()):
                if not (isinstance(record, dict) and {"answer", "grade", "reference"} <= set(record)):
                    continue
                node = state.nodes.get(str(leaf))
                grade = record.get("grade")
                judged = state.dialogue_scores.get(str(leaf), {}).get(dimension)
                out.append(CrucialJudgment(
                    state.seed.id, str(leaf), node.turn + 1 if node is not None else int(record.get("turns", 1)),
                    bool(record.get("answer_parsed")), float(grade) if isinstance(grade, (int, float)) else None,
                    judged.value if judged is not None else None,
                    [s.value for s in state.human_dialogue_scores.get(str(leaf), [])
                     if s.dimension == dimension and s.value is not None]))
    return out


def crucial_summary(dialogues: Iterable[DialogueState], scale: tuple[int, int] = (1, 5)) -> dict[str, Any]:
    """Mean grade and grade distribution of the judge's crucial-step answers."""
    judgments = crucial_judgments(dialogues)
    grades = [j.grade for j in judgments if j.grade is not None]
    distribution = {str(v): 0 for v in range(scale[0], scale[1] + 1)}
    for g in grades:
        key = str(int(g)) if float(g).is_integer() else str(g)
        distribution[key] = distribution.get(key, 0) + 1
    compared = [(h, j.judge_score) for j in judgments if j.judge_score is not None for h in j.human_scores]
    parsed = sum(1 for j in judgments if j.answer_parsed)
    buckets: dict[int, list[float]] = {}
    for j in judgments:
        if j.grade is not None:
            buckets.setdefault(j.turns, []).append(j.grade)
    return {
        "task": "crucial",
        "items": len(judgments), "judgments": len(judgments), "parsed": parsed, "unparsed": len(judgments) - parsed,
        "graded": len(grades), "ungraded": len(judgments) - len(grades),
        "mean_score": _mean(grades), "distribution": distribution, "scale": list(scale),
        "score_agreement": {"n": len(compared),
                            "agreement": sum(1 for h, v in compared if h == v) / len(compared) if compared else None},
        "metric": "mean_score",
        "by_turns": [{"turns": t, "items": len(g), "metric": sum(g) / len(g)} for t, g in sorted(buckets.items())],
    }


# -- what every summary carries ------------------------------------------------------------------


def _provenances(state: DialogueState) -> Iterator[dict[str, Any]]:
    for node in state.nodes.values():
        for prov in node.provenance:
            yield prov.model_dump(mode="json")

    def walk(value: Any) -> Iterator[dict[str, Any]]:
        if isinstance(value, dict):
            if isinstance(value.get("kind"), str) and isinstance(value.get("calls"), list):
                yield value
            else:
                for v in value.values():
                    yield from walk(v)

    yield from walk(state.records)


def judge_models(dialogues: Iterable[DialogueState], *, grader: bool = False) -> str | None:
    """The model string(s) of the run's judge (or of the crucial-step grader), from its calls."""
    seen: Counter[str] = Counter()
    for state in dialogues:
        for prov in _provenances(state):
            if prov.get("kind") not in JUDGE_KINDS or (GRADER_NOTE in prov.get("notes", [])) != grader:
                continue
            for call in prov.get("calls", []):
                if isinstance(call, dict) and isinstance(call.get("provider_model"), str):
                    seen[call["provider_model"]] += 1
    return ", ".join(sorted(seen)) if seen else None


def placeholder_counts(dialogues: Iterable[DialogueState]) -> dict[str, int]:
    """Dialogues judged with placeholder images (an import with ``missing_images="placeholder"``)."""
    items = images = 0
    for state in dialogues:
        found = sum(len(n.tags.get(PLACEHOLDER_TAG) or []) for n in state.nodes.values())
        items += bool(found)
        images += found
    return {"items": items, "images": images}


Task = Literal["score", "pair", "crucial", "agreement"]


def rubric_scales(*rubrics: str) -> dict[str, tuple[float, float]]:
    """Dimension -> ``(low, high)`` of rubrics (built-in names or paths), for :func:`score_summary`."""
    scales: dict[str, tuple[float, float]] = {}
    for ref in rubrics:
        for d in load_rubric(ref).dimensions:
            scales.setdefault(d.name, (d.scale.low, d.scale.high))
    return scales


def bench_summary(dialogues: Iterable[DialogueState], task: Task,
                  scales: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """The machine-readable summary of one task (the content of ``intermt_bench.json``).

    ``agreement`` is the score summary of any run, with a ``pair`` section when the run holds
    people's preference pairs too. ``scales`` default to the InterMT rubrics' (see
    :func:`score_summary`).
    """
    states = list(dialogues)
    if scales is None:
        scales = rubric_scales("intermt-local", "intermt-global")
    if task == "pair":
        summary = pair_summary(states)
    elif task == "crucial":
        summary = crucial_summary(states)
        summary["grader"] = judge_models(states, grader=True)
    else:
        summary = score_summary(states, scales)
        if task == "agreement":
            summary["task"] = "agreement"
            pairs = pair_summary(states)
            if pairs["items"]:
                summary["pair"] = pairs
    summary["judge"] = judge_models(states)
    summary["placeholders"] = placeholder_counts(states)
    head = ("task", "judge")
    return {**{k: summary[k] for k in head}, **{k: v for k, v in summary.items() if k not in head}}
