"""``interleaf annotate pull``: submitted annotations back into the run as :class:`HumanScore` records.

The records of one task carry ``origin="label-studio:<project id>/<task id>"``; a pull replaces
all records of every task it reads with what Label Studio holds now, so:

- pulling twice adds nothing;
- an annotator who changes an annotation (or submits a new one on the same task) replaces
  their earlier scores: per annotator and task only the latest annotation counts;
- two annotators of one task are two sets of records, both kept;
- a skipped (cancelled) latest annotation counts as no scores from that annotator;
- records of tasks deleted in Label Studio are dropped.

The judge's scores are never touched. Everything is checked before anything is written: a
project whose interface was edited, an annotation value outside the rubric's scale, or an
annotated task whose item is gone from the run (or changed since the push) stops the pull
with a message and exit code 2, and the run stays as it was.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from interleaf.annotate.agreement import AgreementReport, agreement_report, write_report
from interleaf.annotate.client import LabelStudio
from interleaf.annotate.config import ItemKind, is_pair, label_config, read_control, same_config
from interleaf.annotate.errors import AnnotateError, AnnotationValueError, LabelStudioError, VanishedItemsError
from interleaf.annotate.items import META, ReviewItem, fingerprint
from interleaf.annotate.projects import markers, project_kind
from interleaf.annotate.push import edited_config_error
from interleaf.annotate.runs import open_reader, run_id_of, write_states, writer_lock
from interleaf.annotate.setup import ReviewSetup, load_review_setup
from interleaf.graphs.rubric import Dimension
from interleaf.state import DialogueState, HumanScore

ORIGIN_PREFIX = "label-studio:"


def annotator_id(user_id: Any) -> str:
    """The annotator id recorded in the run: Label Studio's user id, not the email (exports stay anonymous)."""
    return f"ls-user-{user_id}"


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


@dataclass
class Target:
    """Where a task's records go: a tree node's ``human_scores`` or a dialogue end's ``human_dialogue_scores``."""

    seed_id: str
    node_id: str
    dialogue: bool


@dataclass
class PulledTask:
    """One task read back: where its records go (one target per side) and the records."""

    origin: str
    targets: list[Target]
    records: dict[int, list[HumanScore]]  # side index (0 or 1) -> records


@dataclass
class PullResult:
    projects: list[str] = field(default_factory=list)
    tasks: int = 0
    annotated_tasks: int = 0
    annotations: int = 0
    records: int = 0
    added: int = 0
    removed: int = 0
    dialogues_written: int = 0
    unannotated_vanished: int = 0
    report: AgreementReport | None = None

    def summary(self) -> str:
        lines = [
            f"pulled {len(self.projects)} project(s) ({', '.join(self.projects)}): {self.tasks} tasks, "
            f"{self.annotated_tasks} annotated, {self.annotations} annotations in effect",
            f"human score records: {self.records} now, {self.added} added, {self.removed} removed "
            f"({self.dialogues_written} dialogue(s) written)",
        ]
        if self.unannotated_vanished:
            lines.append(f"note: {self.unannotated_vanished} unannotated task(s) refer to items the run no "
                         "longer has; they were ignored")
        if self.report is not None:
            lines.append(self.report.summary())
        return "\n".join(lines)


def _latest_per_annotator(annotations: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Each annotator's latest annotation of a task (by update time, then id)."""
    latest: dict[Any, dict[str, Any]] = {}
    for a in annotations:
        who = a.get("completed_by")
        if isinstance(who, dict):  # some servers expand the user
            who = who.get("id")
        rank = (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0))
        if who not in latest or rank > latest[who]["_rank"]:
            latest[who] = {**a, "_rank": rank, "_who": who}
    return latest


def _records(
    task: dict[str, Any], kind: ItemKind, dims: dict[str, Dimension], project: dict[str, Any], origin: str
) -> tuple[dict[int, list[HumanScore]], int]:
    """Records by side from a task's annotations; raises :class:`AnnotationValueError` on a bad value."""
    out: dict[int, list[HumanScore]] = defaultdict(list)
    used = 0
    where = f"task {task.get('id')} of project {project.get('title')!r}"
    for who, a in sorted(_latest_per_annotator(task.get("annotations") or []).items(), key=lambda kv: str(kv[0])):
        if a.get("was_cancelled"):
            continue
        used += 1
        scores: dict[tuple[str, int], float] = {}
        reasons: dict[str, str] = {}
        for r in a.get("result") or []:
            name = str(r.get("from_name", ""))
            ref = read_control(name, kind, list(dims))
            if ref is None:
                raise AnnotationValueError(
                    f"{where}, annotation {a.get('id')}: field {name!r} is not one interleaf made "
                    f"(dimensions: {', '.join(dims)}); was the labeling interface edited?"
                )
            value = r.get("value") or {}
            if ref.part == "reason":
                texts = value.get("text") or []
                reasons[ref.dimension] = "\n".join(str(t) for t in texts).strip()
                continue
            picked = value.get("choices") or []
            if len(picked) != 1:
                raise AnnotationValueError(f"{where}, annotation {a.get('id')}: {name!r} needs exactly one "
                                           f"choice, got {picked!r}")
            try:
                number = float(str(picked[0]).split(" ", 1)[0])
            except ValueError:
                number = float("nan")
            scale = dims[ref.dimension].scale
            if number != number or not scale.accepts(number):
                raise AnnotationValueError(
                    f"{where}, annotation {a.get('id')}: {name!r} = {picked[0]!r} is not on the scale of "
                    f"{ref.dimension} ({scale.low}..{scale.high}"
                    + (f", or {', '.join(str(v) for v in scale.special)}" if scale.special else "") + ")"
                )
            scores[(ref.dimension, ref.side)] = number
        at = _epoch(a.get("updated_at") or a.get("created_at"))
        for (dim, side), number in sorted(scores.items()):
            out[max(side - 1, 0)].append(HumanScore(
                dimension=dim, value=number, reason=reasons.get(dim, ""), annotator=annotator_id(who), at=at,
                origin=origin,
            ))
    return out, used


def _has_annotations(task: dict[str, Any]) -> bool:
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def _projects(ls: LabelStudio, run_id: str, name: str | None) -> list[dict[str, Any]]:
    projects = ls.projects()
    if name is not None:
        wanted = {name, f"{name} local-pairs", f"{name} global-pairs"}
        chosen = [p for p in projects if p.get("title") in wanted]
        if not chosen:
            raise AnnotateError(f"Label Studio at {ls.url} has no project titled {name!r}")
    else:
        chosen = [p for p in projects if markers(p.get("description")).get("run") == run_id]
        if not chosen:
            raise AnnotateError(f"Label Studio at {ls.url} has no project of run {run_id}: push first, "
                                "or name the project with --project")
    for p in chosen:
        owner = markers(p.get("description")).get("run")
        if owner != run_id:
            raise AnnotateError(f"Label Studio project {p.get('title')!r} (id {p.get('id')}) belongs to "
                                f"{'run ' + owner if owner else 'no interleaf run'}, not to run {run_id}")
    return sorted(chosen, key=lambda p: int(p["id"]))


def _read_project(
    ls: LabelStudio, project: dict[str, Any], setup: ReviewSetup, states: dict[str, DialogueState], run_id: str,
    result: PullResult, vanished: list[str],
) -> tuple[list[PulledTask], set[str]]:
    kind = project_kind(project)
    dims = setup.dims(kind)
    expected = label_config(kind, dims)
    if not same_config(str(project.get("label_config", "")), expected):
        raise edited_config_error(project, expected)
    by_name = {d.name: d for d in dims}
    pulled: list[PulledTask] = []
    origins: set[str] = set()
    for task in ls.iter_tasks(int(project["id"])):
        result.tasks += 1
        origin = f"{ORIGIN_PREFIX}{project['id']}/{task['id']}"
        origins.add(origin)
        meta = (task.get("data") or {}).get(META)
        annotated = _has_annotations(task)
        if not isinstance(meta, dict) or meta.get("run") != run_id or meta.get("kind") != kind:
            if annotated:
                raise AnnotationValueError(
                    f"task {task['id']} of project {project.get('title')!r} was not made by `interleaf annotate push` "
                    f"for run {run_id} (no matching data[{META!r}]); delete it or move it to another project"
                )
            continue
        seed_id, sides = str(meta.get("seed")), tuple(str(s) for s in meta.get("sides") or [])
        item = ReviewItem(kind, seed_id, str(meta.get("item")), sides)
        state = states.get(seed_id)
        problem = None
        if state is None:
            problem = f"seed {seed_id!r} is not in the run"
        elif missing := [s for s in sides if s not in state.nodes]:
            problem = f"node {missing[0]!r} of seed {seed_id!r} is not in the run"
        elif not sides or fingerprint(state, item) != meta.get("fingerprint"):
            problem = f"{item.key} changed since it was pushed"
        if problem is not None:
            if annotated:
                vanished.append(f"task {task['id']} ({project.get('title')}): {problem}")
            else:
                result.unannotated_vanished += 1
            continue
        records, used = _records(task, kind, by_name, project, origin)
        result.annotated_tasks += used > 0
        result.annotations += used
        dialogue = kind in ("dialogues", "global-pairs")
        targets = [Target(seed_id, s, dialogue) for s in sides]
        if not is_pair(kind):
            targets = targets[:1]
        pulled.append(PulledTask(origin, targets, records))
    return pulled, origins


def _merge(
    states: dict[str, DialogueState], pulled: list[PulledTask], project_ids: set[str], live_origins: set[str]
) -> tuple[dict[str, DialogueState], int, int]:
    """New states with every pulled task's records replacing those of the same origin; (changed, added, removed)."""
    new: dict[str, DialogueState] = {k: s.model_copy(deep=True) for k, s in states.items()}
    replace: dict[tuple[str, str, bool], list[HumanScore]] = defaultdict(list)
    touched: dict[tuple[str, str, bool], set[str]] = defaultdict(set)
    for task in pulled:
        for side, target in enumerate(task.targets):
            key = (target.seed_id, target.node_id, target.dialogue)
            touched[key].add(task.origin)
            replace[key] += task.records.get(side, [])

    def stale(r: HumanScore) -> bool:
        # A record of a project being pulled whose task is gone from Label Studio.
        if not r.origin.startswith(ORIGIN_PREFIX):
            return False
        project = r.origin[len(ORIGIN_PREFIX):].split("/", 1)[0]
        return project in project_ids and r.origin not in live_origins

    added = removed = 0

    def rebuild(old: list[HumanScore], key: tuple[str, str, bool]) -> list[HumanScore]:
        nonlocal added, removed
        drop = touched.get(key, set())
        kept = [r for r in old if r.origin not in drop and not stale(r)]
        out = kept + replace.get(key, [])
        out.sort(key=lambda r: (r.origin, r.annotator, r.dimension))
        before = {r.model_dump_json() for r in old}
        after = {r.model_dump_json() for r in out}
        added += len(after - before)
        removed += len(before - after)
        return out

    for seed_id, state in new.items():
        for node_id, node in state.nodes.items():
            key = (seed_id, node_id, False)
            if node.human_scores or key in touched:
                node.human_scores = rebuild(node.human_scores, key)
        ends = set(state.human_dialogue_scores) | {k[1] for k in touched if k[0] == seed_id and k[2]}
        for end in sorted(ends):
            key = (seed_id, end, True)
            merged = rebuild(state.human_dialogue_scores.get(end, []), key)
            if merged:
                state.human_dialogue_scores[end] = merged
            else:
                state.human_dialogue_scores.pop(end, None)
    return new, added, removed


def pull(
    run: str | Path,
    *,
    url: str | None = None,
    project: str | None = None,
    graph: str | Path | None = None,
    client: LabelStudio | None = None,
) -> PullResult:
    """Read the run's projects' annotations into the run (see the module docstring)."""
    reader = open_reader(run)
    run_id = run_id_of(reader)
    setup = load_review_setup(reader, graph)
    ls = client or LabelStudio.from_env(url)
    result = PullResult()
    try:
        ls.whoami()
        projects = _projects(ls, run_id, project)
        try:
            users = ls.users()
        except LabelStudioError:
            # Only the report's names need it, and tokens without admin rights may not list users.
            users = {}
        with writer_lock(reader, "interleaf annotate pull"):
            states = {s.seed.id: s for s in reader.dialogues()}
            pulled: list[PulledTask] = []
            live: set[str] = set()
            vanished: list[str] = []
            for p in projects:
                tasks, origins = _read_project(ls, p, setup, states, run_id, result, vanished)
                pulled += tasks
                live |= origins
                result.projects.append(str(p.get("title")))
            if vanished:
                more = f"\n  ... and {len(vanished) - 10} more" if len(vanished) > 10 else ""
                shown = "\n  ".join(vanished[:10]) + more
                raise VanishedItemsError(
                    f"{len(vanished)} annotated task(s) refer to items the run no longer has (or that changed since "
                    f"the push), so their scores cannot be placed; nothing was written:\n  {shown}\n"
                    "Pull into the run they were pushed from, or delete those tasks in Label Studio."
                )
            new, result.added, result.removed = _merge(states, pulled, {str(p["id"]) for p in projects}, live)
            changed = [s for k, s in new.items() if s != states[k]]
            result.dialogues_written = write_states(reader, changed)
            result.records = sum(len(n.human_scores) for s in new.values() for n in s.nodes.values()) + sum(
                len(v) for s in new.values() for v in s.human_dialogue_scores.values())
            result.report = agreement_report(new.values(), setup, users={annotator_id(k): v for k, v in users.items()})
            write_report(reader.store, result.report)
        return result
    finally:
        if client is None:
            ls.close()

