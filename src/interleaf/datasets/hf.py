"""A Hugging Face ``datasets`` export: two subsets with ``Image`` features and a dataset card.

``out/`` is a ``DatasetDict`` saved with ``save_to_disk`` (``datasets.load_from_disk(out)``)
holding ``dialogues`` (one row per complete dialogue, every turn with its text, images and
scores) and ``pairs`` (local and global preference pairs: shared history and both sides).
``out/data/<subset>.parquet`` holds the same rows as Parquet (images embedded), and
``out/README.md`` is the dataset card (graph, models, counts, dimensions) whose ``configs``
point at those files, so ``datasets.load_dataset(str(out), "pairs")`` works too. Texts keep
InterMT's ``<Image, ...>`` markers where images stand.

``push_to_hub`` uploads both subsets (Parquet, as the Hub stores them) and the card with the
credentials ``huggingface_hub`` finds (``HF_TOKEN`` or ``huggingface-cli login``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interleaf.datasets.image_files import image_uuid
from interleaf.datasets.interleaved import marked_text
from interleaf.datasets.outputs import prepare_out_dir, staging
from interleaf.errors import InterleafError, Location
from interleaf.run import layout
from interleaf.run.reader import RunDataError, RunReader, image_extension
from interleaf.state import DialogueState, HumanScore, ImageRef, PreferencePair, Score, TreeNode

if TYPE_CHECKING:
    import datasets

SUBSETS = ("dialogues", "pairs")


def _features() -> dict[str, datasets.Features]:
    from datasets import Features, Image, Value

    score = {"dimension": Value("string"), "value": Value("float64"), "reason": Value("string")}
    # People's scores sit next to the judge's, one record per annotator and dimension.
    human = {**score, "annotator": Value("string"), "at": Value("float64"), "origin": Value("string")}
    turn = {
        "node_id": Value("string"), "round": Value("int64"), "status": Value("string"),
        "prompt": Value("string"), "prompt_images": [Image()],
        "response": Value("string"), "response_images": [Image()], "scores": [score], "human_scores": [human],
    }
    return {
        "dialogues": Features({
            "id": Value("string"), "seed_id": Value("string"), "leaf_id": Value("string"),
            "turns": [turn], "dialogue_scores": [score], "human_dialogue_scores": [human],
        }),
        "pairs": Features({
            "id": Value("string"), "seed_id": Value("string"), "level": Value("string"),
            "history": [turn], "conversation_1": [turn], "conversation_2": [turn],
            "preference": [{"dimension": Value("string"), "preference": Value("int64"), "reason": Value("string")}],
            "overall": Value("int64"), "margin": Value("float64"), "decided_by": Value("string"),
        }),
    }


class _Rows:
    def __init__(self, reader: RunReader):
        self.reader = reader
        self.dialogues: list[dict[str, Any]] = []
        self.pairs: list[dict[str, Any]] = []
        self.models: Counter[str] = Counter()
        self.dimensions: dict[str, set[str]] = {"turn": set(), "dialogue": set()}
        self.nodes: Counter[str] = Counter()

    def _image(self, ref: ImageRef) -> dict[str, Any]:
        return {"bytes": self.reader.image_bytes(ref), "path": f"{image_uuid(ref)}.{image_extension(ref)}"}

    @staticmethod
    def _scores(scores: dict[str, Score]) -> list[dict[str, Any]]:
        return [{"dimension": k, "value": s.value, "reason": s.reason} for k, s in sorted(scores.items())]

    @staticmethod
    def _human(scores: list[HumanScore]) -> list[dict[str, Any]]:
        return [{"dimension": h.dimension, "value": h.value, "reason": h.reason, "annotator": h.annotator,
                 "at": h.at, "origin": h.origin} for h in scores]

    def _turn(self, node: TreeNode) -> dict[str, Any]:
        prompt, prompt_refs = marked_text(node.user, synthesize=False)
        response, response_refs = marked_text(node.assistant, synthesize=True) if node.assistant else ("", [])
        return {
            "node_id": node.id, "round": node.turn + 1, "status": node.status,
            "prompt": prompt, "prompt_images": [self._image(r) for r in prompt_refs],
            "response": response, "response_images": [self._image(r) for r in response_refs],
            "scores": self._scores(node.scores), "human_scores": self._human(node.human_scores),
        }

    def add(self, state: DialogueState) -> None:
        for node in state.nodes.values():
            self.nodes[node.status] += 1
            self.dimensions["turn"].update(node.scores)
            for prov in node.provenance:
                for call in prov.calls:
                    self.models[call.model] += 1
        leaves = {n.id for n in state.leaves()} | {k for k in state.dialogue_scores if k in state.nodes}
        for leaf_id in sorted(leaves):
            scores = state.dialogue_scores.get(leaf_id, {})
            self.dimensions["dialogue"].update(scores)
            self.dialogues.append({
                "id": f"{state.seed.id}/{leaf_id}", "seed_id": state.seed.id, "leaf_id": leaf_id,
                "turns": [self._turn(n) for n in state.path(leaf_id)], "dialogue_scores": self._scores(scores),
                "human_dialogue_scores": self._human(state.human_dialogue_scores.get(leaf_id, [])),
            })
        for pair in sorted(state.pairs, key=lambda p: p.id):
            self.pairs.append(self._pair(state, pair))

    def _pair(self, state: DialogueState, pair: PreferencePair) -> dict[str, Any]:
        for side in (pair.response_1, pair.response_2):
            if side not in state.nodes:
                raise RunDataError(f"pair {pair.id!r} names node {side!r}, which is not in the tree",
                                   Location(layout.dialogue_key(state.seed.id)), field="pairs")
        path_1, path_2 = state.path(pair.response_1), state.path(pair.response_2)
        shared = 0
        while shared < min(len(path_1), len(path_2)) - 1 and path_1[shared].id == path_2[shared].id:
            shared += 1
        return {
            "id": pair.id, "seed_id": state.seed.id, "level": pair.level,
            "history": [self._turn(n) for n in path_1[:shared]],
            "conversation_1": [self._turn(n) for n in path_1[shared:]],
            "conversation_2": [self._turn(n) for n in path_2[shared:]],
            "preference": [{"dimension": k, "preference": v, "reason": pair.reasons.get(k, "")}
                           for k, v in sorted(pair.preference.items())],
            "overall": pair.overall, "margin": pair.margin, "decided_by": pair.decided_by,
        }


def dataset_card(rows: _Rows, manifest: dict[str, Any], data_files: dict[str, str]) -> str:
    """README.md for the export: YAML header (configs, tags) and a summary of the run."""
    levels = Counter(p["level"] for p in rows.pairs)
    config_lines = "".join(
        f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {data_files[name]}\n" for name in SUBSETS
    )
    header = (
        "---\n"
        f"configs:\n{config_lines}"
        "tags:\n- interleaf\n- multimodal\n- preference\n- multi-turn\n"
        "---\n"
    )
    graph = manifest.get("graph_name") or "unknown"
    models = "\n".join(f"- `{m}` ({n} calls)" for m, n in sorted(rows.models.items())) or "- none recorded"

    def dims(kind: str) -> str:
        return ", ".join(f"`{d}`" for d in sorted(rows.dimensions[kind])) or "none"

    return header + (
        f"\n# Dialogues generated with interleaf (graph `{graph}`)\n\n"
        "Multi-turn interleaved text-and-image dialogues with per-turn and whole-dialogue scores and\n"
        "preference pairs. Texts keep `<Image, ...>` markers where images stand; the images are\n"
        "`Image` features in order.\n\n"
        "## Source\n\n"
        f"- graph: `{graph}` (hash `{str(manifest.get('graph_hash') or '')[:16]}`)\n"
        f"- run: `{manifest.get('run_id', 'unknown')}`, interleaf {manifest.get('package_version', 'unknown')}\n\n"
        f"## Models\n\n{models}\n\n"
        "## Counts\n\n"
        f"| subset | rows |\n|---|---|\n| dialogues | {len(rows.dialogues)} |\n| pairs | {len(rows.pairs)} |\n\n"
        f"Pairs: {levels.get('local', 0)} local (sibling turns), {levels.get('global', 0)} global (whole dialogues).\n"
        f"Tree nodes: {rows.nodes.get('alive', 0)} alive, {rows.nodes.get('pruned', 0)} pruned, "
        f"{rows.nodes.get('failed', 0)} failed.\n\n"
        "## Dimensions\n\n"
        f"- per turn: {dims('turn')}\n- per dialogue: {dims('dialogue')}\n\n"
        "## Loading\n\n"
        "```python\nimport datasets\n\n"
        "pairs = datasets.load_dataset(\"<this dataset>\", \"pairs\", split=\"train\")\n```\n"
        + _empty_note(rows)
    )


def _empty_note(rows: _Rows) -> str:
    empty = [name for name in SUBSETS if not getattr(rows, name)]
    if not empty:
        return ""
    names = " and ".join(f"`{n}`" for n in empty)
    return (f"\n{names} {'has' if len(empty) == 1 else 'have'} no rows: `datasets.load_dataset` refuses an "
            "empty subset, so load this export with `datasets.load_from_disk(...)` (same features).\n")


def _dataset(rows: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    """A ``Dataset`` of ``rows`` with exactly ``features``, also when there is no row.

    ``Dataset.from_list([])`` takes its columns from the first row and so has none, which
    ``features`` then mismatch ("Keys mismatch"); columns named by the features always work.
    """
    from datasets import Dataset

    return Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def export_hf(reader: RunReader, out: Path, push_to_hub: str | None = None) -> str:
    """Save the ``dialogues`` and ``pairs`` subsets under ``out``; optionally push them to the Hub.

    A run with no complete dialogue (empty, or every seed failed) gives empty subsets with the
    same features, which ``datasets.load_from_disk(out)`` loads; ``datasets.load_dataset``
    itself refuses a subset with no row ("corresponds to no data"), which the card says.
    Everything is written into a temporary folder first and moved into ``out`` when complete,
    so a failed export (:class:`~interleaf.datasets.outputs.OutputError`) leaves an earlier
    one whole.

    Example::

        export_hf(RunReader.open("runs/demo"), Path("runs/demo/hf"))
        datasets.load_from_disk("runs/demo/hf")["pairs"]
    """
    from datasets.utils import logging as ds_logging

    from datasets import DatasetDict

    out = prepare_out_dir(out)
    rows = _Rows(reader)
    for state in reader.dialogues():
        rows.add(state)
    features = _features()
    subsets = {name: _dataset(getattr(rows, name), features[name]) for name in SUBSETS}
    local_files = {name: f"data/{name}.parquet" for name in SUBSETS}
    manifest = _manifest_dict(reader)
    # save_to_disk writes no shard for an empty subset, and load_from_disk then fails: ask for one.
    shards = {name: 1 for name, ds in subsets.items() if ds.num_rows == 0}
    # Progress bars are process-wide in datasets: silence them for this export only.
    bars_were_on = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        with staging(out, replace=SUBSETS) as stage:
            DatasetDict(subsets).save_to_disk(str(stage), num_shards=shards or None)
            (stage / "data").mkdir()
            for name, ds in subsets.items():
                ds.to_parquet(str(stage / local_files[name]))
            (stage / "README.md").write_text(dataset_card(rows, manifest, local_files), encoding="utf-8")
    finally:
        if bars_were_on:
            ds_logging.enable_progress_bar()
    report = f"hf: {len(rows.dialogues)} dialogues, {len(rows.pairs)} pairs -> {out}"
    if push_to_hub:
        _push(subsets, dataset_card(rows, manifest, {n: f"{n}/train-*" for n in SUBSETS}), push_to_hub)
        report += f"; pushed to https://huggingface.co/datasets/{push_to_hub}"
    return report


def _manifest_dict(reader: RunReader) -> dict[str, Any]:
    manifest = reader.manifest()
    return {} if manifest is None else manifest.model_dump(mode="json")


def _push(subsets: dict[str, datasets.Dataset], card: str, repo_id: str) -> None:
    # Not exercised by the tests (no network here); it only chains the libraries' own upload calls.
    from huggingface_hub import HfApi

    try:
        for name, ds in subsets.items():
            ds.push_to_hub(repo_id, config_name=name, split="train")
        HfApi().upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                            repo_type="dataset")
    except Exception as exc:
        raise InterleafError(f"push to the Hub repo {repo_id!r} failed: {type(exc).__name__}: {exc}") from exc
