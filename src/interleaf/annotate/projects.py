"""Label Studio projects of a run: their titles, and the marker lines their descriptions carry.

A project made by ``push`` says in its description which run and kind of item it holds::

    interleaf-run: 20261203T065312-1a2b3c4d
    interleaf-kind: turns
    interleaf-config: 5f0c...

so ``pull`` without ``--project`` finds every project of the run, and knows which interface
each one should have.

Example:
    >>> project_titles(None, "20261203T065312-1a2b3c4d", "pairs")
    ['20261203T065312-1a2b3c4d local-pairs', '20261203T065312-1a2b3c4d global-pairs']
    >>> markers("x\\ninterleaf-run: r1\\ninterleaf-kind: turns")["kind"]
    'turns'
"""

from __future__ import annotations

from typing import Any, Literal

from interleaf.annotate.config import ITEM_KINDS, ItemKind
from interleaf.annotate.errors import AnnotateError

What = Literal["turns", "dialogues", "pairs"]

#: Label Studio's limits on a project title.
TITLE_MIN, TITLE_MAX = 3, 50


def kinds_of(what: What) -> list[ItemKind]:
    """The item kinds one ``--what`` pushes: pairs go to two projects (turn- and dialogue-level rubrics)."""
    return ["local-pairs", "global-pairs"] if what == "pairs" else [what]


def project_title(name: str | None, run_id: str, kind: ItemKind) -> str:
    """The project title for ``kind`` items: ``NAME`` (``NAME local-pairs`` for pairs), default ``<run id> <kind>``."""
    if name is None:
        title = f"{run_id} {kind}"
    elif kind in ("local-pairs", "global-pairs"):
        title = f"{name} {kind}"
    else:
        title = name
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        raise AnnotateError(
            f"Label Studio project title {title!r} must be {TITLE_MIN}-{TITLE_MAX} characters long: choose a "
            "shorter --project name"
        )
    return title


def project_titles(name: str | None, run_id: str, what: What) -> list[str]:
    return [project_title(name, run_id, k) for k in kinds_of(what)]


def description(run_id: str, kind: ItemKind, rubric: str, digest: str) -> str:
    """A project description: a sentence for people, then the marker lines."""
    return (
        f"Human review of interleaf run {run_id}: {kind}, scored with rubric {rubric}. "
        "Made by `interleaf annotate push`; edit the labeling interface and `interleaf annotate pull` "
        "will refuse it.\n"
        f"interleaf-run: {run_id}\ninterleaf-kind: {kind}\ninterleaf-config: {digest}\n"
    )


def markers(text: str | None) -> dict[str, str]:
    """The ``interleaf-<name>: value`` lines of a description."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().startswith("interleaf-"):
            out[key.strip()[len("interleaf-"):]] = value.strip()
    return out


def project_kind(project: dict[str, Any]) -> ItemKind:
    """The kind of items a project made by ``push`` holds; an :class:`AnnotateError` for other projects."""
    kind = markers(project.get("description")).get("kind")
    for k in ITEM_KINDS:
        if k == kind:
            return k
    raise AnnotateError(
        f"Label Studio project {project.get('title')!r} (id {project.get('id')}) was not made by "
        "`interleaf annotate push` (its description has no 'interleaf-kind:' line)"
    )
