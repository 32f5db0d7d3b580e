"""InterMT and InterMT-Bench JSON shapes: export a run as them, import them as a run.

Files an export writes (each a JSON list sorted by ``id``):

``dialogues.json``
    one record per complete dialogue (an alive leaf of a tree)::

        {"id", "conversations": [{"round", "prompt", "prompt_images", "prompt_uuid",
                                  "response", "response_images", "response_uuid"}, ...]}

    ``prompt_images`` is ``[""]`` for a turn without a prompt image, as in the released files;
    responses keep their ``<Image, ...>`` markers inline.
``local_pairs.json``
    ``{"id", "front_convs": [{"round", "prompt", "prompt_images", "response", "response_images"}],
    "paired_convs": {"round", "prompt", "prompt_images", "response_1", "response_1_images",
    "response_2", "response_2_images"}, "local_overall_preference": {dim: 1|2|0}}``
``global_pairs.json``
    the same with ``overall_preference``; ``front_convs`` is the history both dialogues share and
    ``conversation_1`` / ``conversation_2`` hold every round after it (``paired_convs`` has the
    last of them, which is all InterMT-Bench's loader reads).
``scores.json``
    InterMT-Bench's score shape: ``{"id", "conversations": [{"round": 0, "annotations":
    {global dims}}, {"round": r, "round_conversations": {...}, "annotations": {local dims}}]}``.

Pair records also carry ``overall``, ``margin``, ``reasons`` and ``decided_by`` (``"judge"`` or
``"human"``); the released loaders ignore keys they do not read. A score record's
``annotations`` are people's scores when the dialogue has any (``judge_annotations`` then holds
the judge's beside them), else the judge's, marked ``"scored_by": "judge"``.

Images are written under ``images/<uuid>.<ext>``, except that an image an import read keeps the
name its record gave it (so two names with identical bytes stay two names).

Import reads any of these files (or an export folder with all of them), or the released
InterMT / InterMT-Bench files, into a run: one :class:`~interleaf.state.DialogueState` per
dialogue or pair record, so the data can be re-judged, extended or viewed. It is lossless key
by key: what the run does not model (ids, uuids, ``annotation`` objects, any other field) is
kept with the record and written back by the next export, image names included. People's
labels become :class:`~interleaf.state.HumanScore` records (``origin="import:intermt"``, their
reasons kept) and people's preferences :class:`~interleaf.state.PreferencePair` with
``decided_by="human"``; a file's ``"scored_by": "judge"`` / ``"decided_by": "judge"`` (interleaf's
own exports) keep judge scores as judge scores.

Missing images (``missing_images``): ``"error"`` (the default) refuses the file, naming the first
missing image and how many are missing; ``"placeholder"`` puts a grey placeholder image in their
place and marks it (node tag :data:`PLACEHOLDER_TAG`, seed metadata :data:`PLACEHOLDERS_KEY`);
``"skip"`` leaves the records that miss an image out.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.image_source import ImageMissing, ImageSource, ImageSourceError, pixel_problem
from interleaf.datasets.interleaved import marked_text, message_from_marked_text
from interleaf.datasets.outputs import OutputError, prepare_out_dir, write_bytes, write_text
from interleaf.errors import InterleafError, LocatedError, Location
from interleaf.run import layout
from interleaf.run.reader import RunDataError, RunReader
from interleaf.run.writer import ImageDecodeError, RunWriter
from interleaf.state import (
    DialogueState,
    HumanScore,
    ImageRef,
    Message,
    PreferencePair,
    Prompt,
    Score,
    Seed,
    TreeNode,
)

LOCAL_DIMENSIONS = ("local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence")
GLOBAL_DIMENSIONS = (
    "context_awareness", "helpfulness", "crucial_step_recognition", "global_image_text_consistency", "style_coherence",
)
DIALOGUES_FILE = "dialogues.json"
LOCAL_PAIRS_FILE = "local_pairs.json"
GLOBAL_PAIRS_FILE = "global_pairs.json"
SCORES_FILE = "scores.json"
EXPORT_FILES = (DIALOGUES_FILE, SCORES_FILE, LOCAL_PAIRS_FILE, GLOBAL_PAIRS_FILE)
#: Record kinds, in the order an import reads them (a score record may join a dialogue read before).
RECORD_KINDS = ("dialogue", "scores", "local_pair", "global_pair")

#: Seed metadata keys an import leaves, so a later export writes the records it read.
RECORD_KIND = "intermt_record"
RECORD_ID = "intermt_id"
#: Node tag and seed metadata key holding what an import kept to write its record back unchanged.
SOURCE_TAG = "intermt_source"
#: Node tag: names of the images of this node an import replaced by placeholders.
PLACEHOLDER_TAG = "intermt_missing_images"
#: Seed metadata: how many images of the record are placeholders.
PLACEHOLDERS_KEY = "intermt_placeholders"
#: ``HumanScore.origin`` / ``annotator`` of labels read from a file that names no annotator.
HUMAN_ORIGIN = "import:intermt"
HUMAN_ANNOTATOR = "intermt"
MissingImages = Literal["error", "placeholder", "skip"]
MISSING_IMAGES: tuple[str, ...] = get_args(MissingImages)

_UUID_NAMESPACE = uuid.UUID("0f6d3c1e-8a51-4c0b-b7a2-6e1f9d2c4a30")
_NO_IMAGE = [""]
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class InterMTFormatError(LocatedError):
    """An InterMT record is malformed (the message names the file, line or record, and field)."""


class MissingImagesError(InterMTFormatError):
    """Images the records name are not under the images root (``missing_images="error"``).

    Located at the first missing image; :attr:`count` missing names in :attr:`records` records.
    """

    def __init__(self, message: str, location: Location | None, field: str | None, *, count: int, records: int):
        self.count = count
        self.records = records
        super().__init__(message, location, field)


@lru_cache(maxsize=1)
def placeholder_png() -> bytes:
    """The grey 64x64 PNG an import puts where an image is missing (``missing_images="placeholder"``)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (64, 64), (200, 200, 200))
    draw = ImageDraw.Draw(img)
    draw.line((8, 8, 56, 56), fill=(120, 120, 120), width=3)
    draw.line((8, 56, 56, 8), fill=(120, 120, 120), width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def is_placeholder(ref: ImageRef) -> bool:
    """Whether ``ref`` is the placeholder an import put where an image was missing."""
    import hashlib

    return ref.sha256 == hashlib.sha256(placeholder_png()).hexdigest()


# -- what an import keeps ------------------------------------------------------------------------

#: Keys each place of a record maps to the tree; every other key is kept verbatim.
_MODELED: dict[str, frozenset[str]] = {
    "dialogue": frozenset({"id", "conversations"}),
    "dialogue_round": frozenset({"round", "prompt", "prompt_images", "prompt_uuid", "response", "response_images",
                                 "response_uuid"}),
    "scores": frozenset({"id", "conversations", "scored_by"}),
    "scores_round": frozenset({"round", "round_conversations", "annotations", "reasons", "judge_annotations",
                               "judge_reasons"}),
    "round_conversations": frozenset({"prompt", "prompt_images", "response", "response_images"}),
    "pair": frozenset({"id", "front_convs", "paired_convs", "local_overall_preference", "overall_preference",
                       "overall", "margin", "reasons", "conversation_1", "conversation_2", "decided_by"}),
    "pair_round": frozenset({"round", "prompt", "prompt_images", "response", "response_images"}),
    "paired_convs": frozenset({"round", "prompt", "prompt_images", "response_1", "response_1_images", "response_2",
                               "response_2_images"}),
}


def _extras(obj: dict[str, Any], place: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _MODELED[place]}


def _with_extras(record: dict[str, Any], extras: Any) -> dict[str, Any]:
    """``record`` plus the kept keys it does not already have (modelled keys win)."""
    if isinstance(extras, dict):
        for key, value in extras.items():
            record.setdefault(key, value)
    return record


def _source(tags: dict[str, Any], kind: str) -> dict[str, Any]:
    kept = tags.get(SOURCE_TAG)
    value = kept.get(kind) if isinstance(kept, dict) else None
    return value if isinstance(value, dict) else {}


def _keep(tags: dict[str, Any], kind: str, **values: Any) -> None:
    """Keep ``values`` (the empty ones left out) for the record shape ``kind`` under :data:`SOURCE_TAG`."""
    kept = {k: v for k, v in values.items() if v}
    if kept:
        tags.setdefault(SOURCE_TAG, {}).setdefault(kind, {}).update(kept)


def _safe_name(name: str) -> bool:
    """Whether an imported image name can be written back under the export folder as it is."""
    if not name or name != name.strip() or "\\" in name or "\x00" in name or _URI.match(name):
        return False
    norm = posixpath.normpath(name)
    return (norm == name and not name.startswith(("/", "~")) and ".." not in name.split("/")
            and name not in EXPORT_FILES)


# -- export -------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _annotations(scores: dict[str, Score]) -> tuple[dict[str, int | float], dict[str, str]]:
    values = {k: _number(s.value) for k, s in sorted(scores.items()) if s.value is not None}
    reasons = {k: s.reason for k, s in sorted(scores.items()) if s.value is not None and s.reason}
    return values, reasons


def _human_annotations(scores: list[HumanScore]) -> tuple[dict[str, int | float], dict[str, str]]:
    """One value per dimension (the first record of it: a file holds one annotator's labels)."""
    first: dict[str, HumanScore] = {}
    for s in scores:
        if s.value is not None:
            first.setdefault(s.dimension, s)
    values = {k: _number(s.value) for k, s in sorted(first.items()) if s.value is not None}
    reasons = {k: s.reason for k, s in sorted(first.items()) if s.reason}
    return values, reasons


class _Exporter:
    def __init__(self, reader: RunReader, out: Path):
        self.reader = reader
        self.out = out
        self.images = ImageFiles(reader, out)
        #: Export-relative path -> sha256 of every image file this export wrote (or kept for a placeholder).
        self.paths: dict[str, str] = {}
        self.placeholders = 0
        self.dialogues: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.local_pairs: list[dict[str, Any]] = []
        self.global_pairs: list[dict[str, Any]] = []

    @property
    def image_count(self) -> int:
        return len(self.paths)

    def _generated(self, refs: list[ImageRef]) -> list[str]:
        paths = self.images.paths(refs)
        for ref, rel in zip(refs, paths, strict=True):
            self.paths.setdefault(rel, ref.sha256)
        return paths

    def _named(self, names: list[str], refs: list[ImageRef]) -> bool:
        """Write ``refs`` under the names their import read; False when a name cannot be used."""
        if len(names) != len(refs) or not all(_safe_name(n) for n in names):
            return False
        if any(self.paths.get(n, r.sha256) != r.sha256 for n, r in zip(names, refs, strict=True)):
            return False  # the same name already holds other bytes in this export
        for name, ref in zip(names, refs, strict=True):
            if name in self.paths:
                continue
            self.paths[name] = ref.sha256
            if is_placeholder(ref):
                # The file was missing when imported: the name comes back, no made-up bytes under it.
                self.placeholders += 1
                continue
            target = self.out / name
            if not target.exists():
                write_bytes(target, self.reader.image_bytes(ref))
        return True

    def _image_list(self, node: TreeNode, kind: str, side: str, refs: list[ImageRef], empty: list[str]) -> Any:
        """The image list of ``side`` of ``node`` as the record named it, when the images are unchanged."""
        kept = _source(node.tags, kind).get("images", {}).get(side)
        if isinstance(kept, dict) and kept.get("sha") == [r.sha256 for r in refs]:
            raw = kept.get("raw")
            if isinstance(raw, str):
                names = [raw] if raw else []
            else:
                names = [n for n in raw if isinstance(n, str) and n] if isinstance(raw, list) else []
            if self._named(names, refs):
                return raw
        return self._generated(refs) or list(empty)

    def _prompt(self, node: TreeNode, kind: str, empty: list[str]) -> tuple[str, Any]:
        text, refs = marked_text(node.user, synthesize=False)
        return text, self._image_list(node, kind, "prompt", refs, empty)

    def _response(self, node: TreeNode, kind: str) -> tuple[str, Any]:
        if node.assistant is None:
            return "", []
        text, refs = marked_text(node.assistant, synthesize=True)
        return text, self._image_list(node, kind, "response", refs, [])

    @staticmethod
    def _round(node: TreeNode) -> int:
        tagged = node.tags.get("intermt_round")
        return tagged if isinstance(tagged, int) else node.turn + 1

    def _conv(self, node: TreeNode, kind: str = "pair") -> dict[str, Any]:
        prompt, prompt_images = self._prompt(node, kind, _NO_IMAGE)
        response, response_images = self._response(node, kind)
        conv = {"round": self._round(node), "prompt": prompt, "prompt_images": prompt_images,
                "response": response, "response_images": response_images}
        return _with_extras(conv, _source(node.tags, kind).get("extra"))

    def _uuid(self, state: DialogueState, node: TreeNode, side: str) -> str:
        tagged = node.tags.get(f"{side}_uuid")
        if isinstance(tagged, str) and tagged:
            return tagged
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{state.seed.id}/{node.id}/{side}"))

    def add_state(self, state: DialogueState) -> None:
        kind = state.seed.metadata.get(RECORD_KIND)
        if kind not in ("local_pair", "global_pair"):
            for leaf in _dialogue_leaves(state):
                self._add_dialogue(state, leaf)
        for pair in sorted(state.pairs, key=lambda p: p.id):
            self._add_pair(state, pair)

    def _kept_record(self, state: DialogueState, kind: str, leaf_or_pair: str) -> dict[str, Any]:
        """What the import kept of the record ``kind`` for this leaf (or pair), if it is the one read."""
        kept = _source(state.seed.metadata, kind)
        return kept if kept.get("end") == leaf_or_pair else {}

    def _add_dialogue(self, state: DialogueState, leaf: TreeNode) -> None:
        record_id = state.seed.metadata.get(RECORD_ID)
        did = str(record_id) if isinstance(record_id, str) and record_id else f"{state.seed.id}/{leaf.id}"
        path = state.path(leaf.id)
        conversations = []
        for node in path:
            prompt, prompt_images = self._prompt(node, "dialogue", _NO_IMAGE)
            response, response_images = self._response(node, "dialogue")
            conversations.append(_with_extras({
                "round": self._round(node), "prompt": prompt, "prompt_images": prompt_images,
                "prompt_uuid": self._uuid(state, node, "prompt"), "response": response,
                "response_images": response_images, "response_uuid": self._uuid(state, node, "response"),
            }, _source(node.tags, "dialogue").get("extra")))
        record = {"id": did, "conversations": conversations}
        self.dialogues.append(_with_extras(record, self._kept_record(state, "dialogue", leaf.id).get("extra")))
        self._add_scores(state, leaf, did, path)

    def _add_scores(self, state: DialogueState, leaf: TreeNode, did: str, path: list[TreeNode]) -> None:
        judge_dialogue = state.dialogue_scores.get(leaf.id, {})
        human_dialogue = state.human_dialogue_scores.get(leaf.id, [])
        judged = bool(judge_dialogue) or any(n.scores for n in path)
        human = bool(human_dialogue) or any(n.human_scores for n in path)
        if not judged and not human:
            return
        kept = self._kept_record(state, "scores", leaf.id)

        def annotate(entry: dict[str, Any], judge: dict[str, Score], people: list[HumanScore]) -> dict[str, Any]:
            if human:
                entry["annotations"], entry["reasons"] = _human_annotations(people)
                if judged:
                    entry["judge_annotations"], entry["judge_reasons"] = _annotations(judge)
            else:
                entry["annotations"], entry["reasons"] = _annotations(judge)
            return entry

        rounds: list[dict[str, Any]] = [
            _with_extras(annotate({"round": 0}, judge_dialogue, human_dialogue), kept.get("round0_extra"))]
        for node in path:
            prompt, prompt_images = self._prompt(node, "scores", [])
            response, response_images = self._response(node, "scores")
            inner = {"prompt": prompt, "prompt_images": prompt_images, "response": response,
                     "response_images": response_images}
            entry = {"round": self._round(node),
                     "round_conversations": _with_extras(inner, _source(node.tags, "scores").get("inner_extra"))}
            rounds.append(_with_extras(annotate(entry, node.scores, node.human_scores),
                                       _source(node.tags, "scores").get("extra")))
        record: dict[str, Any] = {"id": did}
        if not human:
            record["scored_by"] = "judge"
        record["conversations"] = rounds
        self.scores.append(_with_extras(record, kept.get("extra")))

    def _node(self, state: DialogueState, node_id: str | None, pair: PreferencePair, side: str) -> TreeNode:
        node = state.nodes.get(node_id or "")
        if node is None:
            raise RunDataError(f"pair {pair.id!r} names node {node_id!r}, which is not in the tree",
                               Location(layout.dialogue_key(state.seed.id)), field=f"pairs.{side}")
        return node

    def _add_pair(self, state: DialogueState, pair: PreferencePair) -> None:
        first = self._node(state, pair.response_1, pair, "response_1")
        second = self._node(state, pair.response_2, pair, "response_2")
        path_1, path_2 = state.path(first.id), state.path(second.id)
        shared = 0
        while (shared < min(len(path_1), len(path_2)) - 1 and path_1[shared].id == path_2[shared].id):
            shared += 1
        tail_1, tail_2 = path_1[shared:], path_2[shared:]
        last_1, last_2 = tail_1[-1], tail_2[-1]
        kept = self._kept_record(state, "pair", pair.id)
        prompt, prompt_images = self._prompt(last_1, "paired", _NO_IMAGE)
        response_1, images_1 = self._response(last_1, "paired")
        response_2, images_2 = self._response(last_2, "paired")
        paired = {
            "round": self._round(last_1), "prompt": prompt, "prompt_images": prompt_images,
            "response_1": response_1, "response_1_images": images_1,
            "response_2": response_2, "response_2_images": images_2,
        }
        record: dict[str, Any] = {
            "id": pair.id,
            "front_convs": [self._conv(n) for n in path_1[:shared]],
            "paired_convs": _with_extras(paired, kept.get("paired_extra")),
        }
        if pair.level == "local":
            record["local_overall_preference"] = dict(sorted(pair.preference.items()))
        else:
            record["overall_preference"] = dict(sorted(pair.preference.items()))
            record["conversation_1"] = [self._conv(n) for n in tail_1]
            record["conversation_2"] = [self._conv(n) for n in tail_2]
        record.update({"overall": pair.overall, "margin": pair.margin, "reasons": dict(sorted(pair.reasons.items())),
                       "decided_by": pair.decided_by})
        (self.local_pairs if pair.level == "local" else self.global_pairs).append(
            _with_extras(record, kept.get("extra")))


def _dialogue_leaves(state: DialogueState) -> list[TreeNode]:
    """Complete dialogues: alive leaves, and any node the run scored as a whole dialogue."""
    ids = {n.id for n in state.leaves()} | {k for k in state.dialogue_scores if k in state.nodes}
    ids |= {k for k in state.human_dialogue_scores if k in state.nodes}
    return [state.nodes[i] for i in sorted(ids)]


def _write_json(path: Path, records: list[dict[str, Any]]) -> None:
    records = sorted(records, key=lambda r: str(r["id"]))
    write_text(path, json.dumps(records, ensure_ascii=False, indent=2) + "\n")


def export_intermt(reader: RunReader, out: Path) -> str:
    """Write the four InterMT files and their images under ``out``; returns a one-line report."""
    out = prepare_out_dir(out)
    exporter = _Exporter(reader, out)
    for state in reader.dialogues():
        exporter.add_state(state)
    _write_json(out / DIALOGUES_FILE, exporter.dialogues)
    _write_json(out / SCORES_FILE, exporter.scores)
    _write_json(out / LOCAL_PAIRS_FILE, exporter.local_pairs)
    _write_json(out / GLOBAL_PAIRS_FILE, exporter.global_pairs)
    missing = (f" ({exporter.placeholders} named images were missing when imported and have no file)"
               if exporter.placeholders else "")
    return (f"intermt: {len(exporter.dialogues)} dialogues, {len(exporter.local_pairs)} local pairs, "
            f"{len(exporter.global_pairs)} global pairs, {len(exporter.scores)} score records, "
            f"{exporter.image_count} images{missing} -> {out}")


# -- import -------------------------------------------------------------------------------------


@dataclass
class _Record:
    """One record of an input file and where it came from (for error messages)."""

    data: dict[str, Any]
    path: Path
    line: int | None
    index: int

    def where(self, name: str = "") -> tuple[Location, str | None]:
        prefix = "" if self.line is not None else f"[{self.index}]"
        field = f"{prefix}.{name}" if prefix and name else prefix or name
        return Location(str(self.path), self.line), field or None

    def fail(self, message: str, where: str = "") -> InterMTFormatError:
        location, name = self.where(where)
        return InterMTFormatError(message, location, field=name)


def _read_records(path: Path) -> Iterator[_Record]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InterMTFormatError(f"cannot read: {exc}", Location(str(path))) from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InterMTFormatError(f"not valid JSON: {exc.msg}", Location(str(path), exc.lineno, exc.colno)) from None
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InterMTFormatError("each record must be a JSON object", Location(str(path)), field=f"[{index}]")
            yield _Record(item, path, None, index)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InterMTFormatError(f"not valid JSON: {exc.msg}", Location(str(path), lineno, exc.colno)) from None
        if not isinstance(item, dict):
            raise InterMTFormatError("each line must be a JSON object", Location(str(path), lineno))
        yield _Record(item, path, lineno, lineno - 1)


def record_kind(data: dict[str, Any]) -> str | None:
    """``"dialogue"``, ``"scores"``, ``"local_pair"`` or ``"global_pair"`` for an InterMT record, else None.

    >>> record_kind({"front_convs": [], "paired_convs": {}, "overall_preference": {}})
    'global_pair'
    >>> record_kind({"conversations": [{"round": 0, "annotations": {}}]})
    'scores'
    """
    if "paired_convs" in data or "front_convs" in data:
        return "global_pair" if "overall_preference" in data else "local_pair"
    convs = data.get("conversations")
    if isinstance(convs, list):
        rounds = [c for c in convs if isinstance(c, dict)]
        # A score record nests each round's text under round_conversations (round 0 holds only
        # the dialogue's annotations); a dialogue whose rounds carry their own prompt may also
        # carry human annotations, and stays a dialogue.
        if any("round_conversations" in c for c in rounds):
            return "scores"
        if any("annotations" in c for c in rounds) and not any("prompt" in c for c in rounds):
            return "scores"
        return "dialogue"
    return None


def _kind(record: _Record) -> str:
    kind = record_kind(record.data)
    if kind is None:
        raise record.fail("not an InterMT record: expected 'conversations' (a dialogue or score record) "
                          "or 'front_convs' and 'paired_convs' (a preference pair)")
    return kind


@dataclass
class _Round:
    """One round as read: prompt and response with their images already stored."""

    round: int | None
    user: Message
    assistant: Message
    tags: dict[str, Any] = field(default_factory=dict)


class _SkipRecord(Exception):
    """The record names a missing image and ``missing_images="skip"``."""


@dataclass
class ImportSummary:
    """What an import read: counts per record kind, images, placeholders and skipped records."""

    out: Path
    source: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))
    images: int = 0
    #: Images put in place of missing ones, and the records that hold any.
    placeholder_images: int = 0
    placeholder_records: int = 0
    #: Records left out because an image was missing (``missing_images="skip"``).
    skipped_records: int = 0
    missing_names: list[str] = field(default_factory=list)
    seed_ids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        c = self.counts
        text = (f"imported {c['dialogue']} dialogues, {c['scores']} score records, {c['local_pair']} local pairs, "
                f"{c['global_pair']} global pairs ({self.images} images) from {self.source} into {self.out}")
        if self.placeholder_images:
            text += (f"; {self.placeholder_images} missing image(s) replaced by placeholders in "
                     f"{self.placeholder_records} record(s)")
        if self.skipped_records:
            text += f"; {self.skipped_records} record(s) skipped for missing images"
        return text


class _Importer:
    def __init__(self, writer: RunWriter, *, images_root: str | Path | None = None,
                 allow_outside_root: bool = False, missing_images: MissingImages = "error"):
        self.writer = writer
        self.images_root = images_root
        self.allow_outside_root = allow_outside_root
        self.missing_images = missing_images
        self._sources: dict[str, ImageSource] = {}
        self._images: dict[str, ImageRef] = {}
        self.states: dict[str, DialogueState] = {}
        self.by_record_id: dict[str, str] = {}
        self.counts = dict.fromkeys(RECORD_KINDS, 0)
        # Missing images of the record being read, and of the whole file.
        self._record_missing: list[str] = []
        self.first_missing: tuple[_Record, str, str] | None = None
        self.missing_names: dict[str, None] = {}
        self.missing_records = 0
        self.placeholder_images = 0
        self.placeholder_records = 0
        self.skipped = 0

    # -- records ------------------------------------------------------------------------------
    def add(self, kind: str, record: _Record) -> None:
        """Read one record; a record the missing-images policy leaves out adds nothing."""
        self._record_missing = []
        before = (dict(self.states), dict(self.by_record_id), dict(self.counts))
        adder: Callable[[_Record], None] = {
            "dialogue": self.add_dialogue, "scores": self.add_scores,
            "local_pair": self.add_local_pair, "global_pair": self.add_global_pair}[kind]
        try:
            adder(record)
        except _SkipRecord:
            self.states, self.by_record_id, self.counts = before
            self.skipped += 1
            self.missing_records += 1
            return
        if self._record_missing:
            self.missing_records += 1
            if self.missing_images == "placeholder":
                self.placeholder_records += 1
                self.placeholder_images += len(self._record_missing)

    # -- fields -------------------------------------------------------------------------------
    @staticmethod
    def _text(record: _Record, obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
        value = obj.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise record.fail(f"'{key}' must be a string, not {type(value).__name__}", f"{where}.{key}".lstrip("."))
        return value

    def _source(self, record: _Record) -> ImageSource:
        root: str | Path = self.images_root if self.images_root is not None else record.path.parent
        source = self._sources.get(str(root))
        if source is None:
            source = ImageSource(root, allow_outside_root=self.allow_outside_root)
            self._sources[str(root)] = source
        return source

    def _missing(self, record: _Record, rel: str, field: str, exc: ImageMissing) -> ImageRef:
        """Apply the missing-images policy to one image; returns what stands in for it."""
        self._record_missing.append(rel)
        self.missing_names.setdefault(rel, None)
        if self.first_missing is None:
            self.first_missing = (record, field, str(exc))
        if self.missing_images == "skip":
            raise _SkipRecord
        if self.missing_images == "error":
            # Keep reading, so the error can say how many are missing; nothing is stored.
            return ImageRef(uri="missing:", sha256="0" * 64, width=1, height=1)
        ref = self._images.get("placeholder:")
        if ref is None:
            ref = self._store_image(record, field, rel, "placeholder", placeholder_png())
            self._images["placeholder:"] = ref
        return ref

    def _images_of(self, record: _Record, obj: dict[str, Any], key: str, where: str,
                   missing: list[str]) -> list[ImageRef]:
        value = obj.get(key, [])
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise record.fail(f"'{key}' must be a list of image paths", f"{where}.{key}".lstrip("."))
        refs = []
        for n, rel in enumerate(value):
            if not rel:
                continue
            field = f"{where}.{key}[{n}]".lstrip(".")
            try:
                location, data = self._source(record).read(rel)
            except ImageMissing as exc:
                refs.append(self._missing(record, rel, field, exc))
                missing.append(rel)
                continue
            except ImageSourceError as exc:
                raise record.fail(str(exc), field) from None
            ref = self._images.get(location)
            if ref is None:
                ref = self._store_image(record, field, rel, location, data)
                self._images[location] = ref
            refs.append(ref)
        return refs

    def _store_image(self, record: _Record, field: str, rel: str, location: str, data: bytes) -> ImageRef:
        problem = pixel_problem(data)
        if problem is not None:
            raise record.fail(f"image {rel!r} ({location}): {problem}", field)
        try:
            return self.writer.put_image(data, location)
        except ImageDecodeError as exc:
            raise record.fail(str(exc), field) from None
        except InterleafError:
            raise
        except OSError as exc:  # storing the blob failed: the output's problem
            raise OutputError.from_os(self.writer.store.uri, exc) from None
        except Exception as exc:  # a decoder error Pillow does not wrap as OSError
            raise record.fail(f"{location}: not a readable image ({type(exc).__name__}: {exc})", field) from None

    def _round_of(self, record: _Record, conv: Any, where: str, kind: str, response_key: str = "response",
                  *, place: str = "") -> _Round:
        """One round; ``kind`` names the record shape whose image names and extra keys are kept."""
        if not isinstance(conv, dict):
            raise record.fail("a round must be a JSON object", where)
        number = conv.get("round")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise record.fail("'round' must be an integer", f"{where}.round")
        prompt = self._text(record, conv, "prompt", where)
        response = self._text(record, conv, response_key, where, required=False)
        missing: list[str] = []
        prompt_refs = self._images_of(record, conv, "prompt_images", where, missing)
        response_refs = self._images_of(record, conv, f"{response_key}_images", where, missing)
        user = message_from_marked_text("user", prompt, prompt_refs)
        assistant = message_from_marked_text("assistant", response, response_refs)
        tags: dict[str, Any] = {}
        if number is not None:
            tags["intermt_round"] = number
        for side in ("prompt", "response"):
            value = conv.get(f"{side}_uuid")
            if isinstance(value, str) and value:
                tags[f"{side}_uuid"] = value
        images: dict[str, Any] = {}
        if "prompt_images" in conv:
            images["prompt"] = {"raw": conv["prompt_images"], "sha": [r.sha256 for r in prompt_refs]}
        if f"{response_key}_images" in conv:
            images["response"] = {"raw": conv[f"{response_key}_images"], "sha": [r.sha256 for r in response_refs]}
        _keep(tags, kind, images=images, extra=_extras(conv, place) if place else None)
        if missing:
            tags[PLACEHOLDER_TAG] = missing
        return _Round(number, user, assistant, tags)

    def _rounds(self, record: _Record, obj: dict[str, Any], key: str, kind: str, place: str) -> list[_Round]:
        convs = obj.get(key)
        if not isinstance(convs, list):
            raise record.fail(f"'{key}' must be a list of rounds", key)
        return [self._round_of(record, c, f"{key}[{i}]", kind, place=place) for i, c in enumerate(convs)]

    # -- trees --------------------------------------------------------------------------------
    def _new_state(self, record: _Record, kind: str, first: _Round | None) -> DialogueState:
        raw_id = record.data.get("id")
        record_id = str(raw_id) if raw_id is not None and raw_id != "" else f"{record.path.stem}-{record.index}"
        seed_id = record_id
        n = 2
        while seed_id in self.states:
            seed_id = f"{record_id}#{n}"
            n += 1
        prompt = first.user.text if first else ""
        images = [i.uri for i in first.user.images] if first else []
        seed = Seed(id=seed_id, prompt=prompt, images=images,
                    metadata={RECORD_KIND: kind, RECORD_ID: record_id, "source": str(record.path)})
        state = DialogueState(seed=seed, status="done")
        self.states[seed_id] = state
        if kind in ("dialogue", "scores"):
            self.by_record_id.setdefault(record_id, seed_id)
        self.counts[kind] += 1
        return state

    @staticmethod
    def _add_chain(state: DialogueState, parent: str | None, rounds: list[_Round], *, variant: int = 0,
                   candidate: int = 0) -> list[TreeNode]:
        chain: list[TreeNode] = []
        for position, rnd in enumerate(rounds):
            cand = candidate if position == 0 else 0
            node_id = f"v{variant}.{cand}" if parent is None else f"{parent}.{cand}"
            turn = 0 if parent is None else state.nodes[parent].turn + 1
            node = TreeNode(id=node_id, parent=parent, turn=turn, candidate=cand, user=rnd.user,
                            assistant=rnd.assistant, tags=dict(rnd.tags))
            state.nodes[node_id] = node
            if parent is None:
                if all(p.variant != variant for p in state.prompts):
                    state.prompts.append(Prompt(variant=variant, message=rnd.user))
            elif state.nodes[parent].follow_up is None:
                state.nodes[parent].follow_up = rnd.user
            chain.append(node)
            parent = node_id
        return chain

    @staticmethod
    def _mark_placeholders(state: DialogueState) -> None:
        count = sum(len(n.tags.get(PLACEHOLDER_TAG, [])) for n in state.nodes.values())
        if count:
            state.seed.metadata[PLACEHOLDERS_KEY] = count

    def add_dialogue(self, record: _Record) -> None:
        rounds = self._rounds(record, record.data, "conversations", "dialogue", "dialogue_round")
        if not rounds:
            raise record.fail("a dialogue needs at least one round", "conversations")
        state = self._new_state(record, "dialogue", rounds[0])
        chain = self._add_chain(state, None, rounds)
        # People's annotations of a released file: per round (the turn's) and per record (the
        # whole dialogue's). The objects themselves stay with the record's other keys.
        for conv, node in zip(record.data["conversations"], chain, strict=True):
            node.human_scores = _merge_human(node.human_scores, _human(_annotation_scores(conv)))
        people = _human(_annotation_scores(record.data))
        if people:
            state.human_dialogue_scores[chain[-1].id] = people
        _keep(state.seed.metadata, "dialogue", end=chain[-1].id, extra=_extras(record.data, "dialogue"))
        self._mark_placeholders(state)

    def add_scores(self, record: _Record) -> None:
        convs = record.data.get("conversations")
        assert isinstance(convs, list)
        by_judge = record.data.get("scored_by") == "judge"
        overall: tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]] = ({}, {})
        round0_extra: dict[str, Any] = {}
        turn_scores: list[tuple[dict[str, Any], tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]],
                                _Round]] = []
        for i, conv in enumerate(convs):
            where = f"conversations[{i}]"
            if not isinstance(conv, dict):
                raise record.fail("a round must be a JSON object", where)
            scores = self._scores(record, conv, where, by_judge)
            inner = conv.get("round_conversations")
            if inner is None:
                overall[0].update(scores[0])
                overall[1].update(scores[1])
                round0_extra.update(_extras(conv, "scores_round"))
                continue
            rnd = self._round_of(record, inner, f"{where}.round_conversations", "scores")
            number = conv.get("round")
            if isinstance(number, int) and not isinstance(number, bool):
                rnd.tags["intermt_round"] = number
            _keep(rnd.tags, "scores", extra=_extras(conv, "scores_round"),
                  inner_extra=_extras(inner, "round_conversations"))
            turn_scores.append((conv, scores, rnd))
        raw_id = record.data.get("id")
        existing = self.by_record_id.get(str(raw_id)) if raw_id is not None else None
        if existing is not None:
            state = self.states[existing]
            path = state.path(state.leaves()[-1].id) if state.leaves() else []
            if len(path) != len(turn_scores):
                raise record.fail(f"{len(turn_scores)} scored rounds, but dialogue {raw_id!r} has {len(path)}",
                                  "conversations")
            self.counts["scores"] += 1
            # The dialogue record gave the tree; this record adds its labels and what it alone holds.
            for node, (_, _, rnd) in zip(path, turn_scores, strict=True):
                node.tags.setdefault(SOURCE_TAG, {})["scores"] = _source(rnd.tags, "scores")
        else:
            state = self._new_state(record, "scores", turn_scores[0][2] if turn_scores else None)
            path = self._add_chain(state, None, [r for _, _, r in turn_scores])
        for node, (_, (judge, people), _) in zip(path, turn_scores, strict=True):
            node.scores.update(_judge(judge))
            node.human_scores = _merge_human(node.human_scores, _human(people))
        if path:
            leaf = path[-1].id
            if overall[0]:
                state.dialogue_scores[leaf] = {**state.dialogue_scores.get(leaf, {}), **_judge(overall[0])}
            if overall[1]:
                state.human_dialogue_scores[leaf] = _merge_human(state.human_dialogue_scores.get(leaf, []),
                                                                 _human(overall[1]))
            _keep(state.seed.metadata, "scores", end=leaf, extra=_extras(record.data, "scores"),
                  round0_extra=round0_extra)
        self._mark_placeholders(state)

    def _scores(self, record: _Record, conv: dict[str, Any], where: str, by_judge: bool) -> tuple[
            dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
        """``(judge, people)`` scores of one score-record round: ``annotations`` are people's unless
        the record says ``scored_by: judge``; ``judge_annotations`` are always the judge's."""
        judge: dict[str, tuple[float, str]] = {}
        people: dict[str, tuple[float, str]] = {}
        for key, reasons_key, is_judge in (("annotations", "reasons", by_judge),
                                           ("judge_annotations", "judge_reasons", True)):
            values = conv.get(key, {})
            reasons = conv.get(reasons_key, {})
            if not isinstance(values, dict) or not isinstance(reasons, dict):
                raise record.fail(f"'{key}' and '{reasons_key}' must be objects", f"{where}.{key}")
            for dim, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise record.fail(f"score must be a number, not {value!r}", f"{where}.{key}.{dim}")
                reason = reasons.get(dim, "")
                (judge if is_judge else people)[str(dim)] = (
                    float(value), reason if isinstance(reason, str) else str(reason))
        return judge, people

    def _preference(self, record: _Record, key: str) -> dict[str, int]:
        value = record.data.get(key, {})
        if not isinstance(value, dict):
            raise record.fail(f"'{key}' must be an object of dimension -> 1, 2 or 0", key)
        for dim, pref in value.items():
            if isinstance(pref, bool) or pref not in (0, 1, 2):
                raise record.fail(f"preference must be 1, 2 or 0, not {pref!r}", f"{key}.{dim}")
        return {str(k): int(v) for k, v in value.items()}

    def _pair_extras(self, record: _Record) -> dict[str, Any]:
        overall = record.data.get("overall", 0)
        margin = record.data.get("margin", 0.0)
        reasons = record.data.get("reasons", {})
        decided_by = record.data.get("decided_by", "human")
        if isinstance(overall, bool) or overall not in (0, 1, 2):
            raise record.fail(f"'overall' must be 1, 2 or 0, not {overall!r}", "overall")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise record.fail("'margin' must be a number", "margin")
        if not isinstance(reasons, dict) or not all(isinstance(v, str) for v in reasons.values()):
            raise record.fail("'reasons' must be an object of dimension -> text", "reasons")
        if decided_by not in ("judge", "human"):
            raise record.fail(f"'decided_by' must be 'judge' or 'human', not {decided_by!r}", "decided_by")
        # A released file's preferences are people's; interleaf's own exports say "judge".
        return {"overall": int(overall), "margin": float(margin), "reasons": dict(reasons), "decided_by": decided_by}

    def _paired(self, record: _Record) -> dict[str, Any]:
        paired = record.data.get("paired_convs")
        if not isinstance(paired, dict):
            raise record.fail("'paired_convs' must be an object", "paired_convs")
        return paired

    def _keep_pair(self, state: DialogueState, record: _Record, pair_id: str) -> None:
        paired = record.data.get("paired_convs")
        _keep(state.seed.metadata, "pair", end=pair_id, extra=_extras(record.data, "pair"),
              paired_extra=_extras(paired, "paired_convs") if isinstance(paired, dict) else None)
        self._mark_placeholders(state)

    def add_local_pair(self, record: _Record) -> None:
        front = self._rounds(record, record.data, "front_convs", "pair", "pair_round")
        paired = self._paired(record)
        one = self._round_of(record, paired, "paired_convs", "paired", "response_1")
        two = self._round_of(record, paired, "paired_convs", "paired", "response_2")
        state = self._new_state(record, "local_pair", front[0] if front else one)
        chain = self._add_chain(state, None, front)
        parent = chain[-1].id if chain else None
        first = self._add_chain(state, parent, [one], candidate=0)[0]
        second = self._add_chain(state, parent, [two], candidate=1)[0]
        pair_id = str(state.seed.metadata[RECORD_ID])
        state.pairs.append(PreferencePair(
            id=pair_id, level="local", turn=first.turn, history=parent, response_1=first.id,
            response_2=second.id, preference=self._preference(record, "local_overall_preference"),
            **self._pair_extras(record),
        ))
        self._keep_pair(state, record, pair_id)

    def add_global_pair(self, record: _Record) -> None:
        front = self._rounds(record, record.data, "front_convs", "pair", "pair_round")
        paired = self._paired(record)
        tails = []
        for side in (1, 2):
            if f"conversation_{side}" in record.data:
                tail = self._rounds(record, record.data, f"conversation_{side}", "pair", "pair_round")
                if tail and isinstance(paired.get("prompt"), str):
                    # paired_convs repeats the last rounds: keep its image names for the export too.
                    last = self._round_of(record, paired, "paired_convs", "paired", f"response_{side}")
                    if "paired" in last.tags.get(SOURCE_TAG, {}):
                        tail[-1].tags.setdefault(SOURCE_TAG, {})["paired"] = last.tags[SOURCE_TAG]["paired"]
            else:
                tail = [self._round_of(record, paired, "paired_convs", "paired", f"response_{side}")]
            if not tail:
                raise record.fail("a conversation needs at least one round", f"conversation_{side}")
            tails.append(tail)
        state = self._new_state(record, "global_pair", front[0] if front else tails[0][0])
        chain = self._add_chain(state, None, front)
        parent = chain[-1].id if chain else None
        same_root = parent is not None or tails[0][0].user == tails[1][0].user
        leaves = []
        for side, tail in enumerate(tails):
            variant, candidate = (0, side) if same_root else (side, 0)
            leaves.append(self._add_chain(state, parent, tail, variant=variant, candidate=candidate)[-1])
        pair_id = str(state.seed.metadata[RECORD_ID])
        state.pairs.append(PreferencePair(
            id=pair_id, level="global", response_1=leaves[0].id,
            response_2=leaves[1].id, preference=self._preference(record, "overall_preference"),
            **self._pair_extras(record),
        ))
        self._keep_pair(state, record, pair_id)

    def raise_for_missing(self) -> None:
        """With ``missing_images="error"``: refuse the file, at its first missing image."""
        if self.missing_images != "error" or self.first_missing is None:
            return
        record, name, message = self.first_missing
        location, field_name = record.where(name)
        n, k = len(self.missing_names), self.missing_records
        raise MissingImagesError(
            f"{message}; {n} image file(s) missing in {k} record(s) in all. Point --images-root at the folder "
            "or URI that holds them, or pass --missing-images placeholder (judge without them) or skip "
            "(leave those records out)", location, field_name, count=n, records=k)


_SCORE_KEYS = ("score", "value", "rating")
_REASON_KEYS = ("reason", "rationale", "explanation", "comment")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _annotation_scores(obj: Any) -> dict[str, tuple[float, str]]:
    """``dimension -> (value, reason)`` read from ``obj``'s ``annotation``/``annotations`` object.

    A dimension's value may be a number, a numeric string, or an object with ``score``,
    ``value`` or ``rating`` (and ``reason``/``rationale``/``explanation``/``comment``). A
    reason also comes from ``obj["reasons"][dim]`` or from a ``reason_<dim>`` entry beside the
    value (InterMT-Bench's crucial-step files). Other values (free-text remarks) are not scores.

    >>> scores = _annotation_scores({"annotation": {"helpfulness": {"score": "3", "reason": "clear"},
    ...     "crucial_step_recognition": 2, "reason_crucial_step_recognition": "finds the map step", "note": "ok"}})
    >>> scores["helpfulness"], scores["crucial_step_recognition"], sorted(scores)
    ((3.0, 'clear'), (2.0, 'finds the map step'), ['crucial_step_recognition', 'helpfulness'])
    """
    if not isinstance(obj, dict):
        return {}
    raw: dict[str, Any] = {}
    for key in ("annotation", "annotations"):
        value = obj.get(key)
        if isinstance(value, dict):
            raw.update(value)
    reasons = obj.get("reasons") if isinstance(obj.get("reasons"), dict) else {}
    scores: dict[str, tuple[float, str]] = {}
    for dim, value in raw.items():
        reason: Any = reasons.get(dim, "") if isinstance(reasons, dict) else ""
        if not reason and isinstance(raw.get(f"reason_{dim}"), str):
            reason = raw[f"reason_{dim}"]
        number = _as_number(value)
        if number is None and isinstance(value, dict):
            number = next((n for n in (_as_number(value.get(k)) for k in _SCORE_KEYS) if n is not None), None)
            reason = next((value[k] for k in _REASON_KEYS if isinstance(value.get(k), str)), reason)
        if number is not None:
            scores[str(dim)] = (number, reason if isinstance(reason, str) else str(reason))
    return scores


def _judge(values: dict[str, tuple[float, str]]) -> dict[str, Score]:
    return {dim: Score(value=v, reason=r) for dim, (v, r) in values.items()}


def _human(values: dict[str, tuple[float, str]]) -> list[HumanScore]:
    return [HumanScore(dimension=dim, value=v, reason=r, annotator=HUMAN_ANNOTATOR, origin=HUMAN_ORIGIN)
            for dim, (v, r) in values.items()]


def _merge_human(old: list[HumanScore], new: list[HumanScore]) -> list[HumanScore]:
    """``old`` with ``new`` added; a new label replaces an old one of the same dimension, annotator
    and origin (the same file read twice, or a dialogue file and its score file)."""
    keys = {(s.dimension, s.annotator, s.origin) for s in new}
    return [s for s in old if (s.dimension, s.annotator, s.origin) not in keys] + new


def _input_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = [source / name for name in EXPORT_FILES if (source / name).is_file()]
        if not found:
            raise InterleafError(f"{source}: no InterMT files ({', '.join(EXPORT_FILES)}) in this folder")
        return found
    if not source.is_file():
        raise InterleafError(f"{source}: no such file")
    return [source]


def read_intermt_records(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind, record)`` of every record of an InterMT file or export folder, in file order.

    Raises :class:`InterMTFormatError` for a file that is not InterMT JSON or JSONL.
    """
    for path in _input_files(Path(file)):
        for record in _read_records(path):
            yield _kind(record), record.data


def _selected(kinds: list[tuple[str, _Record]], only: Collection[str] | None,
              limit: int | None) -> list[tuple[str, _Record]]:
    """The records to import: of the kinds asked for, and of the first ``limit`` record ids (a
    dialogue and its score record share an id, and count once)."""
    chosen = [(k, r) for k, r in kinds if only is None or k in only]
    if limit is None:
        return chosen
    ids: dict[str, None] = {}
    out = []
    for kind, record in sorted(chosen, key=lambda kr: RECORD_KINDS.index(kr[0])):
        raw = record.data.get("id")
        key = f"{kind}:{record.path}:{record.index}" if raw is None or kind.endswith("pair") else f"d:{raw}"
        if key not in ids and len(ids) >= limit:
            continue
        ids.setdefault(key, None)
        out.append((kind, record))
    return out


def import_intermt_run(file: Path, out: Path, *, images_root: str | Path | None = None,
                       allow_outside_root: bool = False, missing_images: MissingImages = "error",
                       kinds: Collection[str] | None = None, limit: int | None = None) -> ImportSummary:
    """:func:`import_intermt`, returning an :class:`ImportSummary` instead of a one-line report.

    ``kinds`` keeps only records of those kinds (:data:`RECORD_KINDS`); ``limit`` only the first
    that many records (a dialogue and its score record count once).
    """
    if missing_images not in MISSING_IMAGES:
        raise InterleafError(f"--missing-images must be one of {', '.join(MISSING_IMAGES)}, not {missing_images!r}")
    if limit is not None and limit < 1:
        raise InterleafError(f"--limit must be at least 1, not {limit}")
    files = _input_files(Path(file))
    out = Path(out)
    if (out / layout.MANIFEST).exists() or (out / layout.DIALOGUE_PREFIX).exists():
        raise InterleafError(f"{out}: already holds a run; import into a new folder")
    records = [r for f in files for r in _read_records(f)]
    chosen = _selected([(_kind(r), r) for r in records], kinds, limit)
    writer = RunWriter(prepare_out_dir(out))
    importer = _Importer(writer, images_root=images_root, allow_outside_root=allow_outside_root,
                         missing_images=missing_images)
    try:
        for kind, record in sorted(chosen, key=lambda kr: RECORD_KINDS.index(kr[0])):
            importer.add(kind, record)
        importer.raise_for_missing()
        for state in importer.states.values():
            writer.write_dialogue(state)
        n = len(importer.states)
        writer.write_manifest("intermt-import", {"source": [str(f) for f in files]}, seeds=n)
    except OSError as exc:
        if isinstance(exc, InterleafError):  # the store gave up retrying: its own message
            raise
        raise OutputError.from_os(out, exc, note="the run there is incomplete; delete it and import again") from None
    summary = ImportSummary(out=out, source=str(file), counts=dict(importer.counts),
                            images=len([k for k in importer._images if k != "placeholder:"]),
                            placeholder_images=importer.placeholder_images,
                            placeholder_records=importer.placeholder_records, skipped_records=importer.skipped,
                            missing_names=list(importer.missing_names), seed_ids=list(importer.states))
    return summary


def import_intermt(file: Path, out: Path, *, images_root: str | Path | None = None,
                   allow_outside_root: bool = False, missing_images: MissingImages = "error") -> str:
    """Read InterMT records (a JSON list or JSONL file, or an export folder) into a new run at ``out``.

    Image paths in the records are read only under ``images_root``: a folder, or an fsspec URI
    such as ``s3://bucket/images`` or ``hf://datasets/org/name/images`` (default: the folder of
    each imported file). Absolute paths and paths that leave the root (``..``, a symbolic link
    out) are refused with the record and field named, unless ``allow_outside_root``; see
    :mod:`interleaf.datasets.image_source`. Images over ``PIL.Image.MAX_IMAGE_PIXELS`` are
    refused the same way. ``missing_images`` says what an image that is not there does (see the
    module docstring); with ``"error"`` a :class:`MissingImagesError` names the first and the
    count. A file with no record gives a valid run with no dialogue. Raises
    :class:`InterMTFormatError` for bad records and
    :class:`~interleaf.datasets.outputs.OutputError` when ``out`` cannot be written.

    Example (the CLI's ``interleaf import intermt FILE --out DIR --images-root URI``)::

        import_intermt(Path("bench/pairs.jsonl"), Path("runs/bench"), images_root="s3://bucket/bench-images",
                       missing_images="placeholder")
    """
    return import_intermt_run(file, out, images_root=images_root, allow_outside_root=allow_outside_root,
                              missing_images=missing_images).describe()
