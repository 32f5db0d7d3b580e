"""Agreement: between annotators (InterMT's dual verification) and between the judge and people.

Per rubric dimension:

- **annotators**: items scored by two or more people; *exact* agreement and agreement *within
  one* scale step over every pair of annotators on an item; Cohen's kappa per pair of
  annotators over the items both scored (undefined - ``None`` - when chance agreement is 1, e.g.
  both always gave the same value), and their mean;
- **judge vs people** (the InterMT-Bench measures): over every person's score that has a judge
  score for the same item and dimension, exact agreement, mean absolute difference and Pearson's r;
- **pair accuracy**: of the pairs people's scores decide, the share where the judge's scores
  alone prefer the same side.

Items where two annotators differ by more than one scale step are listed for a second look.
The report is written to the run's ``reports/human-agreement.{md,json}``.

Example:
    >>> cohen_kappa([3, 2, 3, 1], [3, 2, 2, 1])
    0.636364
    >>> cohen_kappa([2, 2], [2, 2]) is None
    True
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

from interleaf.annotate.setup import ReviewSetup
from interleaf.nodes.pairs import PairRule, compare
from interleaf.run import layout
from interleaf.state import DialogueState, HumanScore
from interleaf.storage.store import ObjectStore

REPORT_NAME = "human-agreement"


def cohen_kappa(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None when undefined)."""
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    categories = set(a) | set(b)
    expected = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in categories)
    if expected >= 1.0:
        return None
    return round((observed - expected) / (1 - expected), 6)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r (None with fewer than two points or no variance)."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy), 6)


@dataclass(frozen=True)
class Rating:
    """One annotator's latest score of one dimension of one item, with the judge's score of it."""

    seed_id: str
    item: str          # tree node id (turn level) or dialogue end id (dialogue level)
    level: str         # "turn" | "dialogue"
    dimension: str
    annotator: str
    value: float
    judge: float | None


def _latest(records: Iterable[HumanScore]) -> dict[tuple[str, str], HumanScore]:
    out: dict[tuple[str, str], tuple[tuple[float, int], HumanScore]] = {}
    for order, r in enumerate(records):
        if r.value is None:
            continue
        key = (r.dimension, r.annotator)
        rank = (r.at if r.at is not None else float("-inf"), order)
        if key not in out or rank >= out[key][0]:
            out[key] = (rank, r)
    return {k: v[1] for k, v in out.items()}


def ratings(states: Iterable[DialogueState]) -> list[Rating]:
    """Every annotator's latest score per item and dimension, across the run."""
    out: list[Rating] = []
    for s in states:
        for node in sorted(s.nodes.values(), key=lambda n: n.id):
            for (dim, who), r in sorted(_latest(node.human_scores).items()):
                judge = node.scores.get(dim)
                out.append(Rating(s.seed.id, node.id, "turn", dim, who, float(r.value or 0),
                                  judge.value if judge is not None else None))
        for end, records in sorted(s.human_dialogue_scores.items()):
            judged = s.dialogue_scores.get(end, {})
            for (dim, who), r in sorted(_latest(records).items()):
                judge = judged.get(dim)
                out.append(Rating(s.seed.id, end, "dialogue", dim, who, float(r.value or 0),
                                  judge.value if judge is not None else None))
    return out


@dataclass
class DimensionAgreement:
    dimension: str
    level: str
    ratings: int = 0
    items_multi: int = 0
    annotator_pairs: int = 0
    exact: float | None = None
    within_one: float | None = None
    kappa: float | None = None
    kappas: dict[str, float | None] = field(default_factory=dict)
    judge_n: int = 0
    judge_exact: float | None = None
    judge_mae: float | None = None
    judge_pearson: float | None = None


@dataclass
class Disagreement:
    seed_id: str
    item: str
    level: str
    dimension: str
    values: dict[str, float]
    gap: float


@dataclass
class AgreementReport:
    annotators: dict[str, str] = field(default_factory=dict)
    dimensions: list[DimensionAgreement] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    human_pairs: int = 0
    pairs_compared: int = 0
    pair_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for the terminal."""
        if not self.dimensions:
            return "agreement: no human scores yet"
        lines = ["agreement (annotators: exact / kappa; judge vs people: exact / Pearson):"]
        for d in self.dimensions:
            lines.append(
                f"  {d.dimension:<32} {_pct(d.exact):>6} / {_num(d.kappa):>6}   judge {_pct(d.judge_exact):>6} / "
                f"{_num(d.judge_pearson):>6}  ({d.items_multi} items with 2+ annotators, {d.judge_n} judge-paired)"
            )
        if self.pair_accuracy is not None:
            lines.append(f"  pair accuracy of the judge on {self.pairs_compared} human-decided pairs: "
                         f"{_pct(self.pair_accuracy)}")
        if self.disagreements:
            lines.append(f"  {len(self.disagreements)} disagreement(s) by more than one step, for a second look:")
            for x in self.disagreements[:20]:
                vals = ", ".join(f"{self.annotators.get(a, a)}={v:g}" for a, v in sorted(x.values.items()))
                lines.append(f"    {x.seed_id} {x.item} {x.dimension}: {vals}")
            if len(self.disagreements) > 20:
                lines.append(f"    ... {len(self.disagreements) - 20} more in reports/{REPORT_NAME}.md")
        return "\n".join(lines)

    def markdown(self) -> str:
        out = ["# Human review: agreement", ""]
        if not self.dimensions:
            return "\n".join([*out, "No human scores yet.", ""])
        out += [
            "Annotators: exact agreement and agreement within one step over every pair of annotators on an "
            "item; Cohen's kappa per annotator pair (mean shown). Judge vs people: each person's score against "
            "the judge's score of the same item.", "",
            "| dimension | level | ratings | items 2+ | exact | within 1 | kappa | judge n | judge exact | "
            "judge MAE | judge Pearson |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for d in self.dimensions:
            out.append(f"| {d.dimension} | {d.level} | {d.ratings} | {d.items_multi} | {_pct(d.exact)} | "
                       f"{_pct(d.within_one)} | {_num(d.kappa)} | {d.judge_n} | {_pct(d.judge_exact)} | "
                       f"{_num(d.judge_mae)} | {_num(d.judge_pearson)} |")
        out += ["", f"Pairs decided by people's scores: {self.human_pairs}; the judge agrees on "
                    f"{_pct(self.pair_accuracy)} of the {self.pairs_compared} it can compare.", ""]
        kappa_rows = [(d.dimension, k, v) for d in self.dimensions for k, v in sorted(d.kappas.items())]
        if kappa_rows:
            out += ["## Cohen's kappa per annotator pair", "", "| dimension | annotators | kappa |", "|---|---|---|"]
            out += [f"| {dim} | {self._names(pair)} | {_num(v)} |" for dim, pair, v in kappa_rows]
            out.append("")
        out += ["## Disagreements by more than one scale step", ""]
        if not self.disagreements:
            out.append("None.")
        else:
            out += ["| seed | item | dimension | scores | gap |", "|---|---|---|---|---|"]
            for x in self.disagreements:
                vals = ", ".join(f"{self.annotators.get(a, a)}: {v:g}" for a, v in sorted(x.values.items()))
                out.append(f"| {x.seed_id} | {x.item} | {x.dimension} | {vals} | {x.gap:g} |")
        out.append("")
        return "\n".join(out)

    def _names(self, pair: str) -> str:
        return " / ".join(self.annotators.get(a, a) for a in pair.split("|"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _pair_accuracy(states: Iterable[DialogueState], rule: PairRule | None) -> tuple[int, int, float | None]:
    if rule is None:
        return 0, 0, None
    human_rule = PairRule(rule.params.model_copy(update={"prefer": "human"}), rule.local, rule.global_)
    decided = compared = agree = 0
    for s in states:
        for p in human_rule.pairs(s.seed, s.nodes, s.dialogue_scores, s.human_dialogue_scores):
            if p.decided_by != "human":
                continue
            decided += 1
            if p.level == "local":
                first, second = s.nodes[p.response_1].scores, s.nodes[p.response_2].scores
                rubric = rule.local
            else:
                first, second = s.dialogue_scores.get(p.response_1, {}), s.dialogue_scores.get(p.response_2, {})
                rubric = rule.global_ or rule.local
            judged = compare(first, second, rubric, list(p.preference))
            if judged is None:
                continue
            compared += 1
            agree += judged.overall == p.overall
    return decided, compared, (round(agree / compared, 6) if compared else None)


def agreement_report(
    states: Iterable[DialogueState], setup: ReviewSetup | None = None, *, users: Mapping[str, str] | None = None
) -> AgreementReport:
    """The agreement report of a run's dialogues (``users``: annotator id -> a name people know)."""
    states = list(states)
    rows = ratings(states)
    report = AgreementReport()
    names = dict(users or {})
    report.annotators = {a: names.get(a, a) for a in sorted({r.annotator for r in rows})}
    by_dim: dict[tuple[str, str], list[Rating]] = defaultdict(list)
    for r in rows:
        by_dim[(r.level, r.dimension)].append(r)
    for (level, dim), rs in sorted(by_dim.items()):
        d = DimensionAgreement(dimension=dim, level=level, ratings=len(rs))
        by_item: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for r in rs:
            by_item[(r.seed_id, r.item)][r.annotator] = r.value
        exact = within = pairs = 0
        pair_values: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for (seed_id, item), values in sorted(by_item.items()):
            if len(values) < 2:
                continue
            d.items_multi += 1
            for a, b in combinations(sorted(values), 2):
                pairs += 1
                exact += values[a] == values[b]
                within += abs(values[a] - values[b]) <= 1
                pair_values[(a, b)][0].append(values[a])
                pair_values[(a, b)][1].append(values[b])
            gap = max(values.values()) - min(values.values())
            if gap > 1:
                report.disagreements.append(Disagreement(seed_id, item, level, dim, dict(sorted(values.items())), gap))
        d.annotator_pairs = pairs
        if pairs:
            d.exact, d.within_one = round(exact / pairs, 6), round(within / pairs, 6)
        d.kappas = {f"{a}|{b}": cohen_kappa(xs, ys) for (a, b), (xs, ys) in sorted(pair_values.items())}
        defined = [k for k in d.kappas.values() if k is not None]
        d.kappa = round(sum(defined) / len(defined), 6) if defined else None
        judged = [r for r in rs if r.judge is not None]
        d.judge_n = len(judged)
        if judged:
            d.judge_exact = round(sum(r.value == r.judge for r in judged) / len(judged), 6)
            d.judge_mae = round(sum(abs(r.value - float(r.judge or 0)) for r in judged) / len(judged), 6)
            d.judge_pearson = pearson([float(r.judge or 0) for r in judged], [r.value for r in judged])
        report.dimensions.append(d)
    report.disagreements.sort(key=lambda x: (-x.gap, x.seed_id, x.item, x.dimension))
    report.human_pairs, report.pairs_compared, report.pair_accuracy = _pair_accuracy(
        states, setup.pairs if setup is not None else None)
    return report


def known_annotators(store: ObjectStore) -> dict[str, str]:
    """Annotator names of the last report (``pull`` knows them from Label Studio; ``apply`` reuses them)."""
    try:
        raw = store.get_json_or_none(layout.report_key(f"{REPORT_NAME}.json"))
    except ValueError:
        return {}
    names = raw.get("annotators") if isinstance(raw, dict) else None
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def write_report(store: ObjectStore, report: AgreementReport) -> list[str]:
    """Write ``reports/human-agreement.md`` and ``.json``; returns their keys."""
    md, js = layout.report_key(f"{REPORT_NAME}.md"), layout.report_key(f"{REPORT_NAME}.json")
    store.put_bytes(md, report.markdown().encode("utf-8"))
    store.put_bytes(js, (json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return [md, js]
