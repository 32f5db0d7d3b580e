"""``interleaf annotate push``: a run's trees to Label Studio, one task per node, dialogue or pair.

Pushing again is safe: a project that exists (same title) keeps its tasks and annotations, and
only items it does not hold yet - new ones, or ones whose content changed - are added. The
project's labeling interface must still be the one interleaf generates; one edited by hand is
refused rather than overwritten (people may be annotating with it).

Example (against a running Label Studio, token in ``LABEL_STUDIO_API_KEY``)::

    result = push("runs/demo", url="http://127.0.0.1:8080", what="turns", only="alive", sample=50)
    print(result.summary())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interleaf.annotate.client import LabelStudio
from interleaf.annotate.config import config_digest as digest_of
from interleaf.annotate.config import label_config, same_config
from interleaf.annotate.errors import AnnotateError, LabelConfigMismatch
from interleaf.annotate.items import (
    META,
    Only,
    fingerprint,
    item_images,
    review_items,
    sample_items,
    task_data,
    upload_name,
)
from interleaf.annotate.projects import What, description, kinds_of, markers, project_title
from interleaf.annotate.runs import open_reader, run_id_of
from interleaf.annotate.setup import load_review_setup
from interleaf.state import ImageRef


@dataclass
class ProjectPush:
    """What one push did to one project."""

    title: str
    project_id: int
    url: str
    created: bool
    items: int
    added: int
    kept: int


@dataclass
class PushResult:
    projects: list[ProjectPush] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        for p in self.projects:
            verb = "created" if p.created else "updated"
            lines.append(f"{verb} project {p.title!r} ({p.url}): {p.items} items, {p.added} tasks added, "
                         f"{p.kept} already there")
        return "\n".join(lines) or "nothing to push"


def _lookup(images: dict[str, str]) -> Callable[[ImageRef], str]:
    return lambda ref: images[ref.sha256]


def edited_config_error(project: dict[str, Any], expected: str) -> LabelConfigMismatch:
    return LabelConfigMismatch(
        f"Label Studio project {project.get('title')!r} (id {project.get('id')}) has a labeling interface that is "
        "not the one interleaf generates from the run's rubrics (edited by hand, or made from other rubrics): "
        "restore it (Settings > Labeling Interface > Code) or push into a new project with --project NAME. "
        f"Expected interface digest {digest_of(expected)}, found {digest_of(str(project.get('label_config', '')))}"
    )


def push(
    run: str | Path,
    *,
    url: str | None = None,
    project: str | None = None,
    what: What = "turns",
    only: Only = "all",
    sample: int | None = None,
    graph: str | Path | None = None,
    client: LabelStudio | None = None,
) -> PushResult:
    """Create or update the run's Label Studio project(s) for ``what`` and upload the missing tasks."""
    reader = open_reader(run)
    run_id = run_id_of(reader)
    setup = load_review_setup(reader, graph)
    states = {s.seed.id: s for s in reader.dialogues()}
    ls = client or LabelStudio.from_env(url)
    try:
        ls.whoami()
        plans = []
        for kind in kinds_of(what):
            dims = setup.dims(kind)
            items = sample_items(review_items(states.values(), kind, only), sample, f"{run_id}:{kind}:{only}")
            if not items and what == "pairs":
                continue
            plans.append((kind, dims, items, project_title(project, run_id, kind)))
        if not plans:
            raise AnnotateError(f"{reader.name}: the run has no candidate pairs to push")
        # Check every project before creating or uploading anything.
        existing: dict[str, dict[str, Any] | None] = {}
        for kind, dims, _, title in plans:
            found = ls.project_by_title(title)
            config = label_config(kind, dims)
            if found is not None:
                owner = markers(found.get("description")).get("run")
                if owner != run_id:
                    raise AnnotateError(
                        f"Label Studio project {title!r} (id {found['id']}) belongs to "
                        f"{'run ' + owner if owner else 'no interleaf run'}, not to run {run_id}: "
                        "choose another --project name"
                    )
                if not same_config(str(found.get("label_config", "")), config):
                    raise edited_config_error(found, config)
            existing[title] = found
        result = PushResult()
        for kind, dims, items, title in plans:
            config = label_config(kind, dims)
            found = existing[title]
            have: set[tuple[str, str, str]] = set()
            images: dict[str, str] = {}  # sha256 -> URL of the image in this project
            if found is None:
                rubric = setup.rubric(kind)
                found = ls.create_project(title, config, description(run_id, kind, rubric.name, digest_of(config)))
                created = True
            else:
                created = False
                for task in ls.iter_tasks(int(found["id"])):
                    meta = (task.get("data") or {}).get(META) or {}
                    have.add((str(meta.get("seed")), str(meta.get("item")), str(meta.get("fingerprint"))))
                    known = meta.get("images")
                    if isinstance(known, dict):
                        images.update({str(k): str(v) for k, v in known.items()})
            project_id = int(found["id"])
            new = [i for i in items
                   if (i.seed_id, i.item, fingerprint(states[i.seed_id], i)) not in have]
            missing: dict[str, ImageRef] = {}
            for i in new:
                for ref in item_images(states[i.seed_id], i):
                    if ref.sha256 not in images:
                        missing.setdefault(ref.sha256, ref)
            files = [(upload_name(ref), reader.image_bytes(ref), ref.mime) for ref in missing.values()]
            uploaded = ls.upload_files(project_id, files) if files else {}
            images.update({ref.sha256: uploaded[upload_name(ref)] for ref in missing.values()})
            tasks = [{"data": task_data(states[i.seed_id], i, run_id, _lookup(images))} for i in new]
            ls.import_tasks(project_id, tasks)
            result.projects.append(ProjectPush(
                title=title, project_id=project_id, url=f"{ls.url}/projects/{project_id}/data",
                created=created, items=len(items), added=len(new), kept=len(items) - len(new),
            ))
        return result
    finally:
        if client is None:
            ls.close()
