"""Turning an InterMT-Bench file into a run folder ready for the engine (no model is called here).

``interleaf bench intermt FILE --task T --out DIR`` is a thin layer over ``interleaf run``;
:func:`prepare_intermt_bench` does everything before the run:

1. **import** FILE into ``DIR/source/`` (a run of its own: people's labels as
   :class:`~interleaf.state.HumanScore` records, images confined to ``--images-root``,
   ``--missing-images`` applied, ``--limit`` taken), reused while FILE and those options
   stay the same;
2. **seeds**: ``DIR/seeds.jsonl``, one seed per labelled item, naming its stored dialogue for the
   ``stored_dialogue`` node and carrying a hash of it (a re-imported item whose content
   changed is redone, an unchanged one is not);
3. **graph**: the built-in ``intermt-bench-<task>`` graph, or, with ``--judge`` / ``--grader``,
   a copy in ``DIR`` with that model string (and no API key of its own, so litellm reads the
   provider's usual variable: an OpenAI key is never sent to another provider);
4. ``DIR/bench.json`` records what was asked, so a later call with another FILE, task or
   judge is refused (use another ``--out``) instead of mixing two benchmarks in one run.

The run itself (``interleaf.launch.run_from_cli``) then resumes like any run: items already
judged are skipped, so a repeated command makes no repeated judge call.

Example::

    plan = prepare_intermt_bench(BenchRequest(file=Path("bench/score.json"), task="score", out=Path("runs/b"),
                                              judge="openai/gpt-4o-mini"))
    plan.graph, plan.seeds   # -> what RunOptions(graph=..., seeds=..., out=...) takes
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from interleaf.datasets.intermt import (
    MissingImages,
    import_intermt_run,
    read_intermt_records,
)
from interleaf.datasets.outputs import prepare_out_dir, write_text
from interleaf.errors import InterleafError
from interleaf.graphs.loading import builtin_graphs
from interleaf.run import layout
from interleaf.run.reader import RunReader
from interleaf.state import DialogueState

BenchTask = Literal["score", "pair", "crucial"]
TASKS: tuple[str, ...] = ("score", "pair", "crucial")
#: Record kinds each task reads from FILE.
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "score": ("dialogue", "scores"), "pair": ("local_pair", "global_pair"), "crucial": ("dialogue",),
}
SOURCE_DIR = "source"
SEEDS_FILE = "seeds.jsonl"
BENCH_FILE = "bench.json"
#: The dimension whose people's reason is the reference of the crucial-step task.
CRUCIAL_DIMENSION = "crucial_step_recognition"
_JUDGE_LINE = '    model: "${INTERLEAF_JUDGE_MODEL:-openai/gpt-4o}"\n'
_GRADER_LINE = '    model: "${INTERLEAF_GRADER_MODEL:-openai/gpt-4o}"\n'
_BASE_LINE = '    api_base: "${INTERLEAF_API_BASE:-}"\n'
_KEY_LINE = '    api_key: "${OPENAI_API_KEY:-}"\n'


class BenchError(InterleafError):
    """A bench command cannot go on (bad input or a folder holding another benchmark): exit 2."""


@dataclass
class BenchRequest:
    """What ``interleaf bench intermt`` was asked to do."""

    file: Path
    task: str
    out: Path
    judge: str | None = None
    grader: str | None = None
    images_root: str | None = None
    missing_images: MissingImages = "error"
    limit: int | None = None
    allow_outside_root: bool = False


@dataclass
class BenchPlan:
    """What the run is given: graph, seeds, and what the import found."""

    graph: str
    seeds: Path
    out: Path
    items: int
    imported: dict[str, Any] = field(default_factory=dict)
    left_out: int = 0
    reused_import: bool = False

    def describe(self) -> str:
        text = f"{self.items} items for the bench"
        if self.left_out:
            text += f" ({self.left_out} imported records carry no people's labels for this task)"
        imp = self.imported
        if imp.get("placeholder_images"):
            text += (f"; {imp['placeholder_records']} items will be judged without their images "
                     f"({imp['placeholder_images']} placeholders)")
        if imp.get("skipped_records"):
            text += f"; {imp['skipped_records']} items skipped for missing images"
        return text


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*.json*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _has_labels(state: DialogueState, task: str) -> bool:
    if task == "pair":
        return any(p.decided_by == "human" for p in state.pairs)
    if task == "crucial":
        return any(s.dimension == CRUCIAL_DIMENSION and s.reason.strip()
                   for scores in state.human_dialogue_scores.values() for s in scores)
    return any(n.human_scores for n in state.nodes.values()) or any(state.human_dialogue_scores.values())


def _content_hash(state: DialogueState) -> str:
    """A hash of the item that ignores where its images were stored (the source folder may move)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "uri"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    data = json.dumps(strip(state.model_dump(mode="json")), sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def _seed_line(state: DialogueState, task: str) -> dict[str, Any]:
    prompt = next((p.message.text for p in state.prompts if p.message.text.strip()), "")
    if not prompt.strip():
        prompt = f"InterMT-Bench item {state.seed.id}"
    # The imported record's metadata rides along (its kind, id and the keys an export writes back),
    # so exporting the bench run gives the records as read, with the judge's scores beside.
    return {"id": state.seed.id, "prompt": prompt, "metadata": state.seed.metadata, "bench": {
        "task": task, "source": f"{SOURCE_DIR}/{layout.dialogue_key(state.seed.id)}", "blobs": SOURCE_DIR,
        "sha256": _content_hash(state)}}


def _graph(req: BenchRequest) -> str:
    """The graph to run: the built-in one, or a copy in ``out`` with the models asked for."""
    builtin = builtin_graphs()[f"intermt-bench-{req.task}"]
    if req.judge is None and req.grader is None:
        return str(builtin)
    text = builtin.read_text(encoding="utf-8")
    for line, model in ((_JUDGE_LINE, req.judge), (_GRADER_LINE, req.grader)):
        if model is None:
            continue
        if "${" in model or "\n" in model or not model.strip():
            raise BenchError(f"model {model!r}: give a litellm model string (provider/model)")
        block = line + _BASE_LINE + _KEY_LINE
        assert block in text, f"built-in graph {builtin} changed: no {line.strip()!r} block"
        # Its own model string, and no OpenAI key: litellm then reads the provider's usual
        # credential variable for whatever model this is (an OpenAI key never goes elsewhere).
        text = text.replace(block, f"    model: {json.dumps(model)}\n" + _BASE_LINE, 1)
    path = prepare_out_dir(req.out) / f"bench-{req.task}.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return str(path)


def _recorded(req: BenchRequest, digest: str) -> dict[str, Any]:
    return {"task": req.task, "file": str(Path(req.file).resolve()), "file_sha256": digest, "judge": req.judge,
            "grader": req.grader, "import": {"images_root": req.images_root, "missing_images": req.missing_images,
                                             "limit": req.limit, "allow_outside_root": req.allow_outside_root}}


def _check_same_bench(req: BenchRequest, previous: dict[str, Any], digest: str) -> None:
    out = req.out
    if previous.get("task") != req.task:
        raise BenchError(f"{out} holds an InterMT-Bench run of --task {previous.get('task')}; use another --out "
                         f"for --task {req.task}")
    if previous.get("file_sha256") != digest:
        raise BenchError(f"{out} holds an InterMT-Bench run of {previous.get('file')} with other content than "
                         f"{req.file}; use another --out")
    for what in ("judge", "grader"):
        if previous.get(what) != getattr(req, what):
            shown = previous.get(what) or "the graph's default (INTERLEAF_*_MODEL)"
            raise BenchError(f"{out} was judged with --{what} {shown}; use another --out to bench "
                             f"{getattr(req, what) or 'the default model'}")


def _import(req: BenchRequest, source: Path) -> dict[str, Any]:
    """Import into a fresh folder beside ``source``, then put it in place (a failed import leaves
    the previous one as it was)."""
    staging = source.with_name(f".{SOURCE_DIR}-new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = import_intermt_run(req.file, staging, images_root=req.images_root,
                                     allow_outside_root=req.allow_outside_root, missing_images=req.missing_images,
                                     kinds=TASK_KINDS[req.task], limit=req.limit)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(source, ignore_errors=True)
    os.replace(staging, source)
    data = asdict(summary)
    data["out"] = str(source)
    return data


def _what_file_holds(file: Path) -> str:
    counts: dict[str, int] = {}
    for kind, _ in read_intermt_records(file):
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {k.replace('_', ' ')} record(s)" for k, n in sorted(counts.items())) or "no records"


def prepare_intermt_bench(req: BenchRequest) -> BenchPlan:
    """Import, seeds and graph for one bench task (see the module docstring); raises :class:`BenchError`."""
    if req.task not in TASKS:
        raise BenchError(f"--task must be one of {', '.join(TASKS)}, not {req.task!r}")
    if req.grader is not None and req.task != "crucial":
        raise BenchError("--grader is for --task crucial (the model that grades the judge's answers)")
    file = Path(req.file)
    if not file.exists():
        raise BenchError(f"{file}: no such file")
    out = prepare_out_dir(Path(req.out))
    req = BenchRequest(**{**asdict(req), "out": out})
    digest = _file_digest(file)
    bench_path = out / BENCH_FILE
    previous: dict[str, Any] = {}
    if bench_path.exists():
        previous = json.loads(bench_path.read_text(encoding="utf-8"))
        _check_same_bench(req, previous, digest)
    elif (out / layout.MANIFEST).exists():
        raise BenchError(f"{out} holds a run that is not an InterMT-Bench run; use another --out")
    recorded = _recorded(req, digest)
    source = out / SOURCE_DIR
    reuse = (previous.get("import") == recorded["import"] and (source / layout.MANIFEST).exists()
             and isinstance(previous.get("imported"), dict))
    imported = previous["imported"] if reuse else _import(req, source)
    states = list(RunReader.open(str(source)).dialogues())
    chosen = [s for s in states if _has_labels(s, req.task)]
    if not chosen:
        raise BenchError(f"{file}: no item with people's labels for --task {req.task} (the file holds "
                         f"{_what_file_holds(file)}; score reads score records or annotated dialogues, pair reads "
                         "preference pairs, crucial reads dialogues annotated with crucial_step_recognition and "
                         "its reason)")
    seeds = out / SEEDS_FILE
    text = "".join(json.dumps(_seed_line(s, req.task), ensure_ascii=False, sort_keys=True) + "\n" for s in chosen)
    if not seeds.exists() or seeds.read_text(encoding="utf-8") != text:
        write_text(seeds, text)
    graph = _graph(req)
    write_text(bench_path, json.dumps({**recorded, "imported": imported, "items": len(chosen)}, indent=2) + "\n")
    return BenchPlan(graph=graph, seeds=seeds, out=out, items=len(chosen), imported=imported,
                     left_out=len(states) - len(chosen), reused_import=reuse)
