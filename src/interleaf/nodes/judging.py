"""Asking a judge model to score with a rubric: prompt, one re-ask, scores (missing ones kept raw).

Used by the node kinds that judge (``consistency_check``, ``global_judge``) and the ones that
read a rubric's dimensions (``branch_pruner``, ``preference_pairs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from interleaf.errors import SpecError
from interleaf.graphs.rubric import Dimension, Level, Rubric, RubricNotFound, dimension_hint, load_rubric
from interleaf.models.client import ModelCallError
from interleaf.models.judge_format import parse_judge_output
from interleaf.nodes.prompting import chat_messages, merge_text, transcript_parts
from interleaf.state import HumanScore, ImagePart, Message, ModelCall, Score, TextPart, TreeNode

if TYPE_CHECKING:
    from interleaf.nodes.base import NodeContext
    from interleaf.storage.store import ObjectStore


def history_key(node: TreeNode) -> str:
    """What siblings under the same history share: the parent id, or the prompt variant at turn 0."""
    return node.id.rsplit(".", 1)[0]


#: Whose score wins on a dimension both the judge and people scored (``prefer:`` in a graph's params).
Prefer = Literal["human", "judge"]


@dataclass(frozen=True)
class ScoreView:
    """The scores a rule decides on, and which dimensions of them came from people."""

    scores: dict[str, Score]
    human: frozenset[str] = frozenset()


def human_consensus(records: Iterable[HumanScore]) -> dict[str, Score]:
    """One score per dimension from people's records: the mean over annotators of each one's latest value.

    An annotator who scored a dimension twice (a changed annotation, or a turn task and a pair
    task) counts once, with the record of the latest ``at``; records without a value are skipped.

    >>> from interleaf.state import HumanScore
    >>> s = human_consensus([HumanScore(dimension="text_quality", value=3, annotator="a", reason="clear"),
    ...                      HumanScore(dimension="text_quality", value=2, annotator="b")])
    >>> s["text_quality"].value
    2.5
    """
    latest: dict[tuple[str, str], tuple[float, int, HumanScore]] = {}
    for order, r in enumerate(records):
        if r.value is None:
            continue
        key = (r.dimension, r.annotator)
        rank = (r.at if r.at is not None else float("-inf"), order)
        if key not in latest or rank >= latest[key][:2]:
            latest[key] = (*rank, r)
    by_dim: dict[str, list[HumanScore]] = {}
    for (dim, _), (_, _, r) in sorted(latest.items()):
        by_dim.setdefault(dim, []).append(r)
    out: dict[str, Score] = {}
    for dim, rs in by_dim.items():
        values = [float(r.value) for r in rs if r.value is not None]
        reason = "; ".join(f"{r.annotator} ({r.value:g})" + (f": {r.reason}" if r.reason else "") for r in rs)
        out[dim] = Score(value=round(sum(values) / len(values), 6), reason=f"human: {reason}")
    return out


def combine_scores(
    judge: Mapping[str, Score], human: Iterable[HumanScore] = (), prefer: Prefer = "human"
) -> ScoreView:
    """Judge scores and people's, one per dimension: ``prefer`` wins where both have a value.

    >>> from interleaf.state import HumanScore, Score
    >>> judge = {"text_quality": Score(value=1), "context_coherence": Score(value=3)}
    >>> view = combine_scores(judge, [HumanScore(dimension="text_quality", value=3, annotator="a")])
    >>> (view.scores["text_quality"].value, view.scores["context_coherence"].value, sorted(view.human))
    (3.0, 3.0, ['text_quality'])
    >>> combine_scores(judge, [HumanScore(dimension="text_quality", value=3, annotator="a")], "judge").human
    frozenset()
    """
    people = human_consensus(human)
    scores = dict(judge)
    from_people: set[str] = set()
    for dim, score in people.items():
        mine = scores.get(dim)
        judged = mine is not None and mine.value is not None
        if prefer == "human" or not judged:
            scores[dim] = score
            from_people.add(dim)
    return ScoreView(scores, frozenset(from_people))


def node_scores(node: TreeNode, prefer: Prefer = "human") -> ScoreView:
    """A tree node's judge scores combined with its people's scores (see :func:`combine_scores`)."""
    if not node.human_scores:
        return ScoreView(node.scores)
    return combine_scores(node.scores, node.human_scores, prefer)


def node_rubric(ctx: NodeContext, ref: str, param: str = "rubric") -> Rubric:
    """Load the rubric a node's ``params.<param>`` names; a bad reference is a :class:`SpecError`.

    Relative paths resolve against the graph file's folder. Errors inside the rubric file name
    that file's line; a reference to nothing names the graph's ``params`` field.
    """
    base: Path | None = ctx.runtime.spec_dir
    try:
        return load_rubric(ref, base)
    except RubricNotFound as exc:
        raise SpecError(str(exc), None, f"params.{param}") from None


def rubric_dims(
    rubric: Rubric, level: Level, names: Sequence[str] | None, param: str = "dimensions"
) -> list[Dimension]:
    """The rubric's ``level`` dimensions, or the ``names`` subset; unknown names are a :class:`SpecError`."""
    available = rubric.dims(level)
    if not available:
        raise SpecError(
            f"rubric {rubric.name!r} ({rubric.source}) has no {level}-level dimensions", None, "params.rubric"
        )
    if names is None:
        return available
    by_name = {d.name: d for d in available}
    for i, n in enumerate(names):
        if n not in by_name:
            raise SpecError(
                f"rubric {rubric.name!r} ({rubric.source}) has no {level}-level dimension {n!r} "
                f"(it has: {', '.join(by_name)}){dimension_hint(rubric, n, list(by_name))}", None,
                f"params.{param}.{i}",
            )
    return [by_name[n] for n in names]


def check_dimension_keys(rubric: Rubric, mapping: Mapping[str, Any], param: str) -> None:
    """Every key of ``params.<param>`` must be a dimension of ``rubric``."""
    names = set(rubric.names())
    for key in mapping:
        if key not in names:
            raise SpecError(
                f"{param} names dimension {key!r}, which rubric {rubric.name!r} ({rubric.source}) lacks "
                f"(dimensions: {', '.join(rubric.names())}){dimension_hint(rubric, key)}", None,
                f"params.{param}.{key}",
            )


@dataclass
class JudgeOutcome:
    """What one judging produced: a score per dimension (value None when unreadable)."""

    scores: dict[str, Score] = field(default_factory=dict)
    calls: list[ModelCall] = field(default_factory=list)
    reasked: bool = False
    error: str | None = None

    @property
    def missing(self) -> list[str]:
        return [k for k, s in self.scores.items() if s.value is None]


def judge_prompt(
    rubric: Rubric, dims: Sequence[Dimension], sections: Sequence[tuple[str, Sequence[Message]]]
) -> list[Message]:
    """System message with the rubric's criteria; one user message with the material and answer format.

    ``sections`` are titled runs of messages (e.g. "Conversation so far", "Candidate answer").
    """
    parts: list[TextPart | ImagePart] = []
    for title, msgs in sections:
        parts.append(TextPart(text=f"\n=== {title} ===\n"))
        parts.extend(transcript_parts(msgs))
    parts.append(TextPart(text="\n\n" + rubric.format_text(dims)))
    return [
        Message(role="system", parts=[TextPart(text=rubric.criteria_text(dims))]),
        Message(role="user", parts=merge_text(parts)),
    ]


def _reask_text(rubric: Rubric, dims: Sequence[Dimension], unreadable: Sequence[str]) -> str:
    return (
        "Your answer could not be read for: " + ", ".join(unreadable) + ". "
        "Score every dimension again, using exactly the format below and the allowed values.\n\n"
        + rubric.format_text(dims)
    )


def _read(rubric: Rubric, dims: Sequence[Dimension], text: str) -> dict[str, tuple[float, str]]:
    parsed = parse_judge_output(text, rubric.parse_scales(dims))
    return {k: v for k, v in parsed.scores.items() if rubric.accepts(k, v[0])}


async def ask_judge(
    client: Any,
    rubric: Rubric,
    dims: Sequence[Dimension],
    prompt: Sequence[Message],
    store: ObjectStore | None,
    cache_tag: str = "",
) -> JudgeOutcome:
    """Call the judge; re-ask once for unreadable dimensions; never raises on model failure.

    Dimensions still unreadable after the re-ask get ``Score(value=None, raw=<judge text>)``.
    A failed call (after the client's retries) sets ``error`` and leaves every score missing.
    """
    out = JudgeOutcome()
    messages = await chat_messages(client, prompt, store)
    texts: list[str] = []
    read: dict[str, tuple[float, str]] = {}
    for attempt in range(2):
        try:
            completion = await client.complete(messages, cache_tag=f"{cache_tag}:judge{attempt}")
        except ModelCallError as exc:
            out.error = f"judge call failed: {exc.reason}"
            break
        out.calls.append(completion.call)
        text = completion.text or ""
        texts.append(text)
        for k, v in _read(rubric, dims, text).items():
            read.setdefault(k, v)
        unreadable = [d.name for d in dims if d.name not in read]
        if not unreadable or attempt == 1:
            break
        out.reasked = True
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {"role": "user", "content": _reask_text(rubric, dims, unreadable)},
        ]
    raw = "\n---\n".join(texts) if texts else (out.error or "")
    for d in dims:
        if d.name in read:
            value, reason = read[d.name]
            out.scores[d.name] = Score(value=value, reason=reason)
        else:
            why = out.error or "judge output unreadable after one re-ask"
            out.scores[d.name] = Score(value=None, reason=why, raw=raw)
    return out
