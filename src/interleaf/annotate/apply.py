"""``interleaf annotate apply``: re-prune and re-pair a finished run with people's scores, no model called.

The graph's own rules decide, through the same code its node kinds run
(:func:`~interleaf.nodes.pruning.prune_turn`, :class:`~interleaf.nodes.pairs.PairRule`):

1. every node the pruner had pruned is put back in the running, then each turn is pruned again,
   in order, with people's scores taking precedence over the judge's where present
   (``prefer: human``, the default; ``prefer: judge`` in the graph's ``branch_pruner`` /
   ``preference_pairs`` params, or ``--prefer``, lets the judge win where both scored);
   nodes below a node that is now pruned are pruned with the reason ``ancestor ... pruned``.
   A node kept now that was pruned at generation has no continuation (no model is called to
   grow one), so it ends a shorter dialogue;
2. the pairs are made again from the re-pruned tree; each says in ``decided_by`` whether a
   person's score entered it. Pairs the rule does not make (imported people's pairs, a
   ``pair_judge``'s verdicts) are kept as they are.

Failed nodes stay failed. With no human scores, or with ``prefer: judge`` and a judge score
everywhere, ``apply`` reproduces the run exactly, so it is safe to run at any time and twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from interleaf.annotate.agreement import AgreementReport, agreement_report, known_annotators, write_report
from interleaf.annotate.runs import open_reader, write_states, writer_lock
from interleaf.annotate.setup import ReviewSetup, load_review_setup
from interleaf.nodes.judging import Prefer
from interleaf.nodes.pairs import PairRule
from interleaf.nodes.pruning import PruneRule, prune_turn
from interleaf.state import DialogueState, PreferencePair, TreeNode


def reprune(nodes: dict[str, TreeNode], rule: PruneRule) -> dict[str, TreeNode]:
    """The tree with every turn pruned again by ``rule`` (pruned nodes first put back alive).

    Example:
        >>> from interleaf.graphs.rubric import load_rubric
        >>> from interleaf.nodes.pruning import BranchPrunerParams
        >>> from interleaf.state import Message, Score, TreeNode
        >>> rule = PruneRule.from_params(load_rubric("intermt-local"), BranchPrunerParams(keep=1))
        >>> def n(i, q, **kw):
        ...     return TreeNode(id=i, user=Message.user("q"), assistant=Message(role="assistant"),
        ...                     scores={"text_quality": Score(value=q)}, **kw)
        >>> tree = {"v0.0": n("v0.0", 1, status="pruned"), "v0.1": n("v0.1", 3)}
        >>> {k: v.status for k, v in reprune(tree, rule).items()}
        {'v0.0': 'pruned', 'v0.1': 'alive'}
    """
    out = {k: (n.model_copy(update={"status": "alive", "reason": None}) if n.status == "pruned" else n)
           for k, n in nodes.items()}
    for turn in sorted({n.turn for n in out.values()}):
        for n in sorted((n for n in out.values() if n.turn == turn), key=lambda n: n.id):
            parent = out.get(n.parent) if n.parent is not None else None
            if n.status == "alive" and parent is not None and parent.status != "alive":
                # The reason names the node that was cut, however far up it is.
                inherited = parent.reason if parent.reason and parent.reason.startswith("ancestor ") else None
                why = inherited or f"ancestor {parent.id} {parent.status}"
                out[n.id] = n.model_copy(update={"status": "pruned", "reason": why})
        out.update(prune_turn(out, turn, rule))
    return out


def made_by_rule(pair: PreferencePair, seed_id: str, rule: PairRule) -> bool:
    """Whether ``pair`` is one the ``preference_pairs`` rule makes (its id scheme), so ``apply`` may
    replace it; other pairs - imported people's pairs, a ``pair_judge``'s verdicts - are kept."""
    base = f"{seed_id}/{pair.level}/{pair.response_1}~{pair.response_2}"
    if pair.id == base:
        return True
    groups = set(rule.local.group_members()) | (set(rule.global_.group_members()) if rule.global_ else set())
    return pair.id.startswith(base + "/") and pair.id[len(base) + 1:] in groups


def apply_to_state(state: DialogueState, prune: PruneRule | None, pairs: PairRule | None) -> DialogueState:
    """One dialogue re-decided (a new state; ``state`` is not changed)."""
    nodes = reprune(state.nodes, prune) if prune is not None else dict(state.nodes)
    update: dict[str, object] = {"nodes": nodes}
    if pairs is not None:
        made = pairs.pairs(state.seed, nodes, state.dialogue_scores, state.human_dialogue_scores)
        others = [p for p in state.pairs if not made_by_rule(p, state.seed.id, pairs)]
        update["pairs"] = made + others
    return state.model_copy(update=update)


@dataclass
class ApplyResult:
    dialogues: int = 0
    dialogues_written: int = 0
    status_changes: Counter[str] = field(default_factory=Counter)
    pairs_before: int = 0
    pairs_after: int = 0
    pairs_by_human: int = 0
    pairs_flipped: int = 0
    prefer: dict[str, str] = field(default_factory=dict)
    report: AgreementReport | None = None

    def summary(self) -> str:
        changes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status_changes.items())) or "none"
        prefer = ", ".join(f"{k} prefers {v}" for k, v in self.prefer.items()) or "no pruner or pairs node"
        lines = [
            f"applied to {self.dialogues} dialogue(s) ({prefer}); {self.dialogues_written} written",
            f"node status changes: {changes}",
            f"pairs: {self.pairs_before} before, {self.pairs_after} now ({self.pairs_by_human} decided by people, "
            f"{self.pairs_flipped} with the preferred side flipped)",
        ]
        if self.report is not None:
            lines.append(self.report.summary())
        return "\n".join(lines)


def apply(run: str | Path, *, graph: str | Path | None = None, prefer: Prefer | None = None) -> ApplyResult:
    """Re-prune and re-pair every dialogue of the run (see the module docstring); writes what changed."""
    reader = open_reader(run)
    setup: ReviewSetup = load_review_setup(reader, graph, prefer)
    result = ApplyResult()
    if setup.prune is not None:
        result.prefer["pruning"] = setup.prune.prefer
    if setup.pairs is not None:
        result.prefer["pairs"] = setup.pairs.params.prefer
    with writer_lock(reader, "interleaf annotate apply"):
        states = list(reader.dialogues())
        changed: list[DialogueState] = []
        for state in states:
            new = apply_to_state(state, setup.prune, setup.pairs)
            for k, n in new.nodes.items():
                old = state.nodes[k].status
                if old != n.status:
                    result.status_changes[f"{old}->{n.status}"] += 1
            before = {p.id: p.overall for p in state.pairs}
            result.pairs_before += len(state.pairs)
            result.pairs_after += len(new.pairs)
            result.pairs_by_human += sum(p.decided_by == "human" for p in new.pairs)
            result.pairs_flipped += sum(1 for p in new.pairs if p.id in before and before[p.id] != p.overall)
            if new != state:
                changed.append(new)
        result.dialogues = len(states)
        result.dialogues_written = write_states(reader, changed)
        by_seed = {s.seed.id: s for s in states} | {s.seed.id: s for s in changed}
        result.report = agreement_report(by_seed.values(), setup, users=known_annotators(reader.store))
        write_report(reader.store, result.report)
    return result
