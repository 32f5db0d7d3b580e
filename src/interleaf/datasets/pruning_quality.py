"""How well a run's pruning and preference pairs followed the truth, on runs the offline simulator answered.

The simulator plants known defects in some candidate answers and keeps no record of them: the
truth is read back from each answer's content (:mod:`interleaf.datasets.sim_truth`). This
report compares it with what the run did:

- of the candidates with planted defects, how many were **pruned** (not kept: pruned by the
  pruner, or failed a check), overall and per defect kind;
- of the clean candidates, how many were **kept**;
- of the preference pairs that have a **cleaner** side, how many chose it (local pairs: the
  two candidates; global pairs: every answer on the two dialogues' paths). One side is cleaner
  when its defects are a proper part of the other side's (clean against anything defective;
  ``{off_topic}`` against ``{off_topic, truncated}``); pairs with different defects on each side
  (``pairs_incomparable``) are not counted.

``defective_prunable`` is the most defective candidates any judge could have removed with the
same number of removals in each sibling group (sum over groups of min(defective, removed)):
with ``keep: 2`` of ``k: 3`` and no thresholds, a group holding two defective siblings can lose
only one of them, whatever the judge says.

Runs whose answers the simulator did not write get no report (:func:`write_pruning_quality`
returns ``[]``)::

    >>> from interleaf.storage.store import ObjectStore
    >>> import tempfile
    >>> write_pruning_quality(ObjectStore(tempfile.mkdtemp()))   # no dialogues at all
    []
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from interleaf.datasets.sim_truth import DEFECT_KINDS, planted_defects
from interleaf.nodes.judging import history_key
from interleaf.run import layout
from interleaf.run.reader import RunReader
from interleaf.state import DialogueState, PreferencePair

if TYPE_CHECKING:
    from collections.abc import Iterable

    from interleaf.storage.store import ObjectStore

#: Where the report goes in the run's store.
JSON_KEY = layout.report_key("pruning_quality.json")
MD_KEY = layout.report_key("pruning_quality.md")
#: Share of answered candidates the simulator must have written for the run to count as its run.
SIMULATED_SHARE = 0.9


@dataclass
class PruningQuality:
    """The report's numbers (the JSON file is :meth:`to_dict`)."""

    candidates: int = 0
    unrecognized_candidates: int = 0
    defective_candidates: int = 0
    defective_pruned: int = 0
    defective_prunable: int = 0
    clean_candidates: int = 0
    clean_kept: int = 0
    pairs: int = 0
    pairs_cleaner_chosen: int = 0
    pairs_incomparable: int = 0
    by_defect: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: {"candidates": 0, "pruned": 0} for k in DEFECT_KINDS})
    by_level: dict[str, dict[str, int]] = field(default_factory=lambda: {
        lv: {"pairs": 0, "cleaner_chosen": 0, "incomparable": 0} for lv in ("local", "global")})

    @property
    def simulated(self) -> bool:
        """Whether the simulator wrote (nearly) every answered candidate of the run."""
        answered = self.candidates + self.unrecognized_candidates
        return self.candidates > 0 and self.candidates >= SIMULATED_SHARE * answered

    def shares(self) -> dict[str, float | None]:
        def share(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        return {
            "defective_pruned": share(self.defective_pruned, self.defective_candidates),
            "defective_pruned_of_prunable": share(self.defective_pruned, self.defective_prunable),
            "clean_kept": share(self.clean_kept, self.clean_candidates),
            "pairs_cleaner_chosen": share(self.pairs_cleaner_chosen, self.pairs),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shares"] = self.shares()
        return out


def _chosen(pair: PreferencePair) -> tuple[str, str] | None:
    """(chosen, rejected) node ids; None for a tie."""
    if pair.overall == 1:
        return pair.response_1, pair.response_2
    if pair.overall == 2:
        return pair.response_2, pair.response_1
    return None


def _add_dialogue(report: PruningQuality, state: DialogueState) -> None:
    defects: dict[str, frozenset[str] | None] = {}
    for node_id in sorted(state.nodes, key=lambda n: (n.count("."), n)):
        node = state.nodes[node_id]
        if node.assistant is None:
            continue
        path = state.path(node_id)
        earlier = [n.assistant for n in path[:-1] if n.assistant is not None]
        defects[node_id] = planted_defects(node.assistant, earlier)

    groups: dict[str, list[str]] = defaultdict(list)
    for node_id, found in defects.items():
        if found is None:
            report.unrecognized_candidates += 1
            continue
        groups[history_key(state.nodes[node_id])].append(node_id)
        report.candidates += 1
        kept = state.nodes[node_id].status == "alive"
        if found:
            report.defective_candidates += 1
            report.defective_pruned += not kept
            for kind in found:
                row = report.by_defect.setdefault(kind, {"candidates": 0, "pruned": 0})
                row["candidates"] += 1
                row["pruned"] += not kept
        else:
            report.clean_candidates += 1
            report.clean_kept += kept
    for members in groups.values():
        removed = sum(state.nodes[n].status != "alive" for n in members)
        report.defective_prunable += min(removed, sum(bool(defects[n]) for n in members))

    def dirt(node_id: str, level: str) -> Counter[str] | None:
        """The defects a pair's side carries: its own (local), or every answer's on its path (global)."""
        nodes = [state.nodes[node_id]] if level == "local" else state.path(node_id)
        total: Counter[str] = Counter()
        for n in nodes:
            found = defects.get(n.id)
            if found is None:
                return None
            total.update(found)
        return total

    for pair in state.pairs:
        first, second = dirt(pair.response_1, pair.level), dirt(pair.response_2, pair.level)
        if first is None or second is None:
            continue
        row = report.by_level.setdefault(pair.level, {"pairs": 0, "cleaner_chosen": 0, "incomparable": 0})
        if not (_cleaner(first, second) or _cleaner(second, first)):
            report.pairs_incomparable += 1
            row["incomparable"] += 1
            continue
        report.pairs += 1
        row["pairs"] += 1
        sides = _chosen(pair)
        if sides is not None:
            chosen, rejected = (first, second) if sides[0] == pair.response_1 else (second, first)
            cleaner = _cleaner(chosen, rejected)
            report.pairs_cleaner_chosen += cleaner
            row["cleaner_chosen"] += cleaner


def _cleaner(a: Counter[str], b: Counter[str]) -> bool:
    """Whether defects ``a`` are a proper part of ``b`` (every defect of ``a`` is in ``b``, and ``b`` has more).

    Two sides with different defects ({missing_image} and {off_topic}) have no cleaner side:
    which is worse is the rubric's call, not the truth's.

    >>> _cleaner(Counter(), Counter(["off_topic"])), _cleaner(Counter(["truncated"]), Counter(["off_topic"]))
    (True, False)
    """
    return a != b and all(b[k] >= v for k, v in a.items())


def pruning_quality(states: Iterable[DialogueState]) -> PruningQuality:
    """The report's numbers over ``states`` (whether or not the simulator wrote them: see ``simulated``)."""
    report = PruningQuality()
    for state in states:
        _add_dialogue(report, state)
    return report


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def render_markdown(report: PruningQuality) -> str:
    """The readable table of ``reports/pruning_quality.md``."""
    lines = [
        "# Pruning quality against the simulator's planted defects",
        "",
        "The offline simulator planted known defects in some candidate answers; this compares them",
        "with what the run kept, pruned and paired. Pruned = not kept (pruned, or failed a check).",
        "",
        "| measure | count | of | share |",
        "|---|---:|---:|---:|",
        f"| defective candidates pruned | {report.defective_pruned} | {report.defective_candidates} | "
        f"{_pct(report.defective_pruned, report.defective_candidates)} |",
        f"| ... of those the removals allowed (`defective_prunable`) | {report.defective_pruned} | "
        f"{report.defective_prunable} | {_pct(report.defective_pruned, report.defective_prunable)} |",
        f"| clean candidates kept | {report.clean_kept} | {report.clean_candidates} | "
        f"{_pct(report.clean_kept, report.clean_candidates)} |",
        f"| pairs with the cleaner side chosen | {report.pairs_cleaner_chosen} | {report.pairs} | "
        f"{_pct(report.pairs_cleaner_chosen, report.pairs)} |",
    ]
    for level, row in report.by_level.items():
        lines.append(f"| ... {level} pairs | {row['cleaner_chosen']} | {row['pairs']} | "
                     f"{_pct(row['cleaner_chosen'], row['pairs'])} |")
    lines += [
        "",
        f"{report.pairs_incomparable} pairs had no cleaner side (the same or different defects on both) "
        "and are not counted above; "
        f"{report.candidates} candidates were read, {report.unrecognized_candidates} were not written "
        "by the simulator.",
        "",
        "## By defect kind",
        "",
        "| defect | candidates | pruned | share |",
        "|---|---:|---:|---:|",
    ]
    for kind, row in report.by_defect.items():
        lines.append(f"| {kind} | {row['candidates']} | {row['pruned']} | {_pct(row['pruned'], row['candidates'])} |")
    return "\n".join(lines) + "\n"


def write_pruning_quality(store: ObjectStore) -> list[str]:
    """Write ``reports/pruning_quality.json`` and ``.md`` for a simulator run; return the keys written.

    Returns ``[]`` and writes nothing when the simulator did not write the run's answers
    (at least :data:`SIMULATED_SHARE` of the answered candidates), e.g. for a run of real models.
    """
    reader = RunReader(store)
    keys = reader.dialogue_keys()
    # Called at the end of every run: a run of real models is recognised from its first answered
    # dialogue, without reading the rest.
    for key in keys:
        first = pruning_quality([reader.dialogue(key)])
        if first.candidates + first.unrecognized_candidates:
            if not first.simulated:
                return []
            break
    report = pruning_quality(reader.dialogue(k) for k in keys)
    if not report.simulated:
        return []
    store.put_bytes(JSON_KEY, (json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8"))
    store.put_bytes(MD_KEY, render_markdown(report).encode("utf-8"))
    return [JSON_KEY, MD_KEY]
