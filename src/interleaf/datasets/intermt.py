"""InterMT and InterMT-Bench JSON shapes: export a run as them, import them as a run.

Files an export writes (each a JSON list sorted by ``id``, images under ``images/<uuid>.png``):

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

Pair and score records also carry ``overall``, ``margin`` and ``reasons``; the released loaders
ignore keys they do not read. Import reads any of these files (or an export folder with all of
them) into a run: one :class:`~interleaf.state.DialogueState` per dialogue or pair record, so
the data can be re-judged, extended or viewed, and exporting it again gives the same files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interleaf.datasets.image_files import ImageFiles
from interleaf.datasets.interleaved import marked_text, message_from_marked_text
from interleaf.datasets.run_reader import RunDataError, RunReader, prepare_out_dir
from interleaf.datasets.run_writer import ImageDecodeError, RunWriter
from interleaf.errors import InterleafError, LocatedError, Location
from interleaf.state import (
    DialogueState,
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

#: Seed metadata keys an import leaves, so a later export writes the records it read.
RECORD_KIND = "intermt_record"
RECORD_ID = "intermt_id"
_UUID_NAMESPACE = uuid.UUID("0f6d3c1e-8a51-4c0b-b7a2-6e1f9d2c4a30")
_NO_IMAGE = [""]


class InterMTFormatError(LocatedError):
    """An InterMT record is malformed (the message names the file, line or record, and field)."""


# -- export -------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _annotations(scores: dict[str, Score]) -> tuple[dict[str, int | float], dict[str, str]]:
    values = {k: _number(s.value) for k, s in sorted(scores.items()) if s.value is not None}
    reasons = {k: s.reason for k, s in sorted(scores.items()) if s.value is not None and s.reason}
    return values, reasons


class _Exporter:
    def __init__(self, reader: RunReader, out: Path):
        self.images = ImageFiles(reader, out)
        self.dialogues: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.local_pairs: list[dict[str, Any]] = []
        self.global_pairs: list[dict[str, Any]] = []

    def _prompt(self, node: TreeNode, empty: list[str]) -> tuple[str, list[str]]:
        text, refs = marked_text(node.user, synthesize=False)
        return text, self.images.paths(refs) or list(empty)

    def _response(self, node: TreeNode) -> tuple[str, list[str]]:
        if node.assistant is None:
            return "", []
        text, refs = marked_text(node.assistant, synthesize=True)
        return text, self.images.paths(refs)

    @staticmethod
    def _round(node: TreeNode) -> int:
        tagged = node.tags.get("intermt_round")
        return tagged if isinstance(tagged, int) else node.turn + 1

    def _conv(self, node: TreeNode) -> dict[str, Any]:
        prompt, prompt_images = self._prompt(node, _NO_IMAGE)
        response, response_images = self._response(node)
        return {"round": self._round(node), "prompt": prompt, "prompt_images": prompt_images,
                "response": response, "response_images": response_images}

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

    def _add_dialogue(self, state: DialogueState, leaf: TreeNode) -> None:
        record_id = state.seed.metadata.get(RECORD_ID)
        did = str(record_id) if isinstance(record_id, str) and record_id else f"{state.seed.id}/{leaf.id}"
        path = state.path(leaf.id)
        conversations = []
        for node in path:
            conv = self._conv(node)
            conversations.append({
                "round": conv["round"], "prompt": conv["prompt"], "prompt_images": conv["prompt_images"],
                "prompt_uuid": self._uuid(state, node, "prompt"), "response": conv["response"],
                "response_images": conv["response_images"], "response_uuid": self._uuid(state, node, "response"),
            })
        self.dialogues.append({"id": did, "conversations": conversations})
        dialogue_scores = state.dialogue_scores.get(leaf.id, {})
        if not dialogue_scores and not any(n.scores for n in path):
            return
        values, reasons = _annotations(dialogue_scores)
        rounds: list[dict[str, Any]] = [{"round": 0, "annotations": values, "reasons": reasons}]
        for node in path:
            prompt, prompt_images = self._prompt(node, [])
            response, response_images = self._response(node)
            values, reasons = _annotations(node.scores)
            rounds.append({
                "round": self._round(node),
                "round_conversations": {"prompt": prompt, "prompt_images": prompt_images,
                                        "response": response, "response_images": response_images},
                "annotations": values, "reasons": reasons,
            })
        self.scores.append({"id": did, "conversations": rounds})

    def _node(self, state: DialogueState, node_id: str | None, pair: PreferencePair, side: str) -> TreeNode:
        node = state.nodes.get(node_id or "")
        if node is None:
            raise RunDataError(f"pair {pair.id!r} names node {node_id!r}, which is not in the tree",
                               Location(f"dialogues/{state.seed.id}"), field=f"pairs.{side}")
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
        prompt, prompt_images = self._prompt(last_1, _NO_IMAGE)
        response_1, images_1 = self._response(last_1)
        response_2, images_2 = self._response(last_2)
        record: dict[str, Any] = {
            "id": pair.id,
            "front_convs": [self._conv(n) for n in path_1[:shared]],
            "paired_convs": {
                "round": self._round(last_1), "prompt": prompt, "prompt_images": prompt_images,
                "response_1": response_1, "response_1_images": images_1,
                "response_2": response_2, "response_2_images": images_2,
            },
        }
        if pair.level == "local":
            record["local_overall_preference"] = dict(sorted(pair.preference.items()))
        else:
            record["overall_preference"] = dict(sorted(pair.preference.items()))
            record["conversation_1"] = [self._conv(n) for n in tail_1]
            record["conversation_2"] = [self._conv(n) for n in tail_2]
        record.update({"overall": pair.overall, "margin": pair.margin, "reasons": dict(sorted(pair.reasons.items()))})
        (self.local_pairs if pair.level == "local" else self.global_pairs).append(record)


def _dialogue_leaves(state: DialogueState) -> list[TreeNode]:
    """Complete dialogues: alive leaves, and any node the run scored as a whole dialogue."""
    ids = {n.id for n in state.leaves()} | {k for k in state.dialogue_scores if k in state.nodes}
    return [state.nodes[i] for i in sorted(ids)]


def _write_json(path: Path, records: list[dict[str, Any]]) -> None:
    records = sorted(records, key=lambda r: str(r["id"]))
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def export_intermt(reader: RunReader, out: Path) -> str:
    """Write the four InterMT files and ``images/`` under ``out``; returns a one-line report."""
    out = prepare_out_dir(out)
    exporter = _Exporter(reader, out)
    for state in reader.dialogues():
        exporter.add_state(state)
    _write_json(out / DIALOGUES_FILE, exporter.dialogues)
    _write_json(out / SCORES_FILE, exporter.scores)
    _write_json(out / LOCAL_PAIRS_FILE, exporter.local_pairs)
    _write_json(out / GLOBAL_PAIRS_FILE, exporter.global_pairs)
    return (f"intermt: {len(exporter.dialogues)} dialogues, {len(exporter.local_pairs)} local pairs, "
            f"{len(exporter.global_pairs)} global pairs, {len(exporter.scores)} score records, "
            f"{exporter.images.count} images -> {out}")


# -- import -------------------------------------------------------------------------------------


@dataclass
class _Record:
    """One record of an input file and where it came from (for error messages)."""

    data: dict[str, Any]
    path: Path
    line: int | None
    index: int

    def fail(self, message: str, where: str = "") -> InterMTFormatError:
        prefix = "" if self.line is not None else f"[{self.index}]"
        name = f"{prefix}.{where}" if prefix and where else prefix or where
        return InterMTFormatError(message, Location(str(self.path), self.line), field=name or None)


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


def _kind(record: _Record) -> str:
    data = record.data
    if "paired_convs" in data or "front_convs" in data:
        return "global_pair" if "overall_preference" in data else "local_pair"
    convs = data.get("conversations")
    if isinstance(convs, list):
        if any(isinstance(c, dict) and ("round_conversations" in c or "annotations" in c) for c in convs):
            return "scores"
        return "dialogue"
    raise record.fail("not an InterMT record: expected 'conversations' (a dialogue or score record) "
                      "or 'front_convs' and 'paired_convs' (a preference pair)")


@dataclass
class _Round:
    """One round as read: prompt and response with their images already stored."""

    round: int | None
    user: Message
    assistant: Message
    tags: dict[str, Any] = field(default_factory=dict)


class _Importer:
    def __init__(self, writer: RunWriter):
        self.writer = writer
        self._images: dict[Path, ImageRef] = {}
        self.states: dict[str, DialogueState] = {}
        self.by_record_id: dict[str, str] = {}
        self.counts = {"dialogue": 0, "scores": 0, "local_pair": 0, "global_pair": 0}

    # -- fields -------------------------------------------------------------------------------
    @staticmethod
    def _text(record: _Record, obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
        value = obj.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise record.fail(f"'{key}' must be a string, not {type(value).__name__}", f"{where}.{key}".lstrip("."))
        return value

    def _images_of(self, record: _Record, obj: dict[str, Any], key: str, where: str) -> list[ImageRef]:
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
            path = Path(rel) if Path(rel).is_absolute() else record.path.parent / rel
            ref = self._images.get(path)
            if ref is None:
                try:
                    data = path.read_bytes()
                except OSError:
                    raise record.fail(f"image file {rel!r} not found (looked at {path})",
                                      f"{where}.{key}[{n}]".lstrip(".")) from None
                try:
                    ref = self.writer.put_image(data, str(path))
                except ImageDecodeError as exc:
                    raise record.fail(str(exc), f"{where}.{key}[{n}]".lstrip(".")) from None
                self._images[path] = ref
            refs.append(ref)
        return refs

    def _round_of(self, record: _Record, conv: Any, where: str, response_key: str = "response") -> _Round:
        if not isinstance(conv, dict):
            raise record.fail("a round must be a JSON object", where)
        number = conv.get("round")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise record.fail("'round' must be an integer", f"{where}.round")
        prompt = self._text(record, conv, "prompt", where)
        response = self._text(record, conv, response_key, where, required=False)
        user = message_from_marked_text("user", prompt, self._images_of(record, conv, "prompt_images", where))
        assistant = message_from_marked_text(
            "assistant", response, self._images_of(record, conv, f"{response_key}_images", where))
        tags: dict[str, Any] = {}
        if number is not None:
            tags["intermt_round"] = number
        for side in ("prompt", "response"):
            value = conv.get(f"{side}_uuid")
            if isinstance(value, str) and value:
                tags[f"{side}_uuid"] = value
        return _Round(number, user, assistant, tags)

    def _rounds(self, record: _Record, obj: dict[str, Any], key: str, where: str = "") -> list[_Round]:
        convs = obj.get(key)
        if not isinstance(convs, list):
            raise record.fail(f"'{key}' must be a list of rounds", f"{where}.{key}".lstrip("."))
        return [self._round_of(record, c, f"{where}.{key}[{i}]".lstrip(".")) for i, c in enumerate(convs)]

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

    def add_dialogue(self, record: _Record) -> None:
        rounds = self._rounds(record, record.data, "conversations")
        if not rounds:
            raise record.fail("a dialogue needs at least one round", "conversations")
        state = self._new_state(record, "dialogue", rounds[0])
        self._add_chain(state, None, rounds)

    def add_scores(self, record: _Record) -> None:
        convs = record.data.get("conversations")
        assert isinstance(convs, list)
        overall: dict[str, Score] = {}
        turn_scores: list[tuple[int, dict[str, Score], _Round | None]] = []
        for i, conv in enumerate(convs):
            where = f"conversations[{i}]"
            if not isinstance(conv, dict):
                raise record.fail("a round must be a JSON object", where)
            scores = self._scores(record, conv, where)
            inner = conv.get("round_conversations")
            if inner is None:
                overall.update(scores)
                continue
            rnd = self._round_of(record, inner, f"{where}.round_conversations")
            number = conv.get("round")
            if isinstance(number, int) and not isinstance(number, bool):
                rnd.tags["intermt_round"] = number
            turn_scores.append((i, scores, rnd))
        raw_id = record.data.get("id")
        existing = self.by_record_id.get(str(raw_id)) if raw_id is not None else None
        if existing is not None:
            state = self.states[existing]
            path = state.path(state.leaves()[-1].id) if state.leaves() else []
            if len(path) != len(turn_scores):
                raise record.fail(f"{len(turn_scores)} scored rounds, but dialogue {raw_id!r} has {len(path)}",
                                  "conversations")
            self.counts["scores"] += 1
        else:
            state = self._new_state(record, "scores", turn_scores[0][2] if turn_scores else None)
            path = self._add_chain(state, None, [r for _, _, r in turn_scores if r is not None])
        for node, (_, scores, _) in zip(path, turn_scores, strict=True):
            node.scores.update(scores)
        if overall and path:
            state.dialogue_scores[path[-1].id] = overall

    def _scores(self, record: _Record, conv: dict[str, Any], where: str) -> dict[str, Score]:
        values = conv.get("annotations", {})
        reasons = conv.get("reasons", {})
        if not isinstance(values, dict) or not isinstance(reasons, dict):
            raise record.fail("'annotations' and 'reasons' must be objects", f"{where}.annotations")
        out: dict[str, Score] = {}
        for dim, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise record.fail(f"score must be a number, not {value!r}", f"{where}.annotations.{dim}")
            reason = reasons.get(dim, "")
            out[str(dim)] = Score(value=float(value), reason=reason if isinstance(reason, str) else str(reason))
        return out

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
        if isinstance(overall, bool) or overall not in (0, 1, 2):
            raise record.fail(f"'overall' must be 1, 2 or 0, not {overall!r}", "overall")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise record.fail("'margin' must be a number", "margin")
        if not isinstance(reasons, dict) or not all(isinstance(v, str) for v in reasons.values()):
            raise record.fail("'reasons' must be an object of dimension -> text", "reasons")
        return {"overall": int(overall), "margin": float(margin), "reasons": dict(reasons)}

    def _paired(self, record: _Record) -> dict[str, Any]:
        paired = record.data.get("paired_convs")
        if not isinstance(paired, dict):
            raise record.fail("'paired_convs' must be an object", "paired_convs")
        return paired

    def add_local_pair(self, record: _Record) -> None:
        front = self._rounds(record, record.data, "front_convs")
        paired = self._paired(record)
        one = self._round_of(record, paired, "paired_convs", "response_1")
        two = self._round_of(record, paired, "paired_convs", "response_2")
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

    def add_global_pair(self, record: _Record) -> None:
        front = self._rounds(record, record.data, "front_convs")
        paired = self._paired(record)
        tails = []
        for side in (1, 2):
            if f"conversation_{side}" in record.data:
                tail = self._rounds(record, record.data, f"conversation_{side}")
            else:
                tail = [self._round_of(record, paired, "paired_convs", f"response_{side}")]
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
        state.pairs.append(PreferencePair(
            id=str(state.seed.metadata[RECORD_ID]), level="global", response_1=leaves[0].id,
            response_2=leaves[1].id, preference=self._preference(record, "overall_preference"),
            **self._pair_extras(record),
        ))


def _input_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = [source / name for name in EXPORT_FILES if (source / name).is_file()]
        if not found:
            raise InterleafError(f"{source}: no InterMT files ({', '.join(EXPORT_FILES)}) in this folder")
        return found
    if not source.is_file():
        raise InterleafError(f"{source}: no such file")
    return [source]


def import_intermt(file: Path, out: Path) -> str:
    """Read InterMT records (a JSON list or JSONL file, or an export folder) into a new run at ``out``."""
    files = _input_files(Path(file))
    out = Path(out)
    if (out / "manifest.json").exists() or (out / "dialogues").exists():
        raise InterleafError(f"{out}: already holds a run; import into a new folder")
    records = [r for f in files for r in _read_records(f)]
    kinds = [(_kind(r), r) for r in records]
    writer = RunWriter(prepare_out_dir(out))
    importer = _Importer(writer)
    order = {"dialogue": 0, "scores": 1, "local_pair": 2, "global_pair": 3}
    for kind, record in sorted(kinds, key=lambda kr: order[kr[0]]):
        {"dialogue": importer.add_dialogue, "scores": importer.add_scores,
         "local_pair": importer.add_local_pair, "global_pair": importer.add_global_pair}[kind](record)
    for state in importer.states.values():
        writer.write_dialogue(state)
    n = len(importer.states)
    writer.write_manifest("intermt-import", {"done": n, "failed": 0, "finished": n},
                          {"source": [str(f) for f in files]})
    c = importer.counts
    return (f"imported {c['dialogue']} dialogues, {c['scores']} score records, {c['local_pair']} local pairs, "
            f"{c['global_pair']} global pairs ({len(importer._images)} images) from {file} into {out}")
