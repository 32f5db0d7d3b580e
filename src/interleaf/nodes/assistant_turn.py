"""``assistant_turn``: one answer by a tool-augmented MLLM, as an interleaved message.

Two tool protocols, picked by ``params.protocol``:

- ``markers`` (the InterMT data's way): the model writes ``<Image, a caption>`` where an
  image belongs; each marker becomes a call of ``image_tool`` (or ``edit_tool`` for an edit
  marker) and the image takes the marker's place. If a marker's tool fails, the model is told
  and asked to answer again (bounded by ``max_steps``).
- ``native``: function calling with schemas from each tool's ``Input``. Tool results (and
  errors) go back as tool messages until the model answers without calls. A result image is
  given a placeholder ``[image N]`` to put in the text; placeholders the answer leaves out
  are appended at its end. Arguments that are not valid JSON for the tool's input get one
  repair round (the validation error goes back to the model); a second failure fails the node.

A model call that fails for good (after the client's retries) or an unusable answer marks
the node ``failed`` with the reason instead of crashing the dialogue.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interleaf.errors import InterleafError
from interleaf.models.client import ModelCallError
from interleaf.models.markers import Marker, parse_markers, split_text
from interleaf.models.messages import dialogue_images, image_label, to_openai_messages
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.registry import node_kinds
from interleaf.state import (
    CandidateTask,
    ImagePart,
    ImageRef,
    Message,
    ModelCall,
    Seed,
    TextPart,
    ToolCall,
    TreeNode,
)
from interleaf.tools.base import Tool, ToolContext

DEFAULT_MARKER_PROMPT = (
    "You are a helpful multimodal assistant. Answer with text and images. Wherever an image "
    "belongs, write a marker <Image, a precise caption of the image>; it will be replaced by the "
    "image. To change an earlier image, write <Image, edit of image N: what to change>. "
    "Images in the conversation are labelled [image N]."
)
DEFAULT_NATIVE_PROMPT = (
    "You are a helpful multimodal assistant with tools. Call tools to make or find images when "
    "they help. Each image a tool returns comes with a placeholder like [image 3]; write the "
    "placeholder in your answer where that image belongs."
)
#: The wording the model sees when its tool arguments were invalid (the simulator keys on it too).
INVALID_ARGUMENTS = "invalid arguments"

_IMAGE_REF = re.compile(r"^\s*image\s*#?\s*(\d{1,4})\s*$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\[image (\d{1,4})\]")
_PROMPT_FIELDS = ("prompt", "query", "caption", "text", "description")


class AssistantTurnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: Literal["markers", "native"] = "markers"
    system_prompt: str | None = Field(default=None, description="Default: a prompt for the chosen protocol.")
    max_steps: int = Field(default=4, ge=1, le=32, description="Model calls allowed for one answer.")
    image_tool: str = Field(default="generate_image", description="Tool for <Image, ...> markers.")
    edit_tool: str | None = Field(default="edit_image", description="Tool for edit markers (None: generate).")
    temperatures: list[float] = Field(
        default_factory=list, description="Temperature of candidate i is temperatures[i % len]; empty: model's."
    )
    seed_per_candidate: bool = Field(
        default=True, description="Send a per-candidate 'seed' param so candidates differ and reruns repeat."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Extra completion params for this node.")


class AssistantTurnInput(NodeIO):
    seed: Seed
    nodes: dict[str, TreeNode]
    task: CandidateTask


class AssistantTurnOutput(NodeIO):
    nodes: dict[str, TreeNode]


class TurnFailed(Exception):
    """The answer cannot be used; the node is marked failed with this reason."""


def _history(nodes: dict[str, TreeNode], parent: str | None) -> list[Message]:
    chain: list[TreeNode] = []
    cur = parent
    while cur is not None:
        node = nodes[cur]
        chain.append(node)
        cur = node.parent
    msgs: list[Message] = []
    for n in reversed(chain):
        msgs.append(n.user)
        if n.assistant is not None:
            msgs.append(n.assistant)
    return msgs


def _merge_text(parts: list[TextPart | ImagePart]) -> list[TextPart | ImagePart]:
    out: list[TextPart | ImagePart] = []
    for p in parts:
        if isinstance(p, TextPart):
            if not p.text:
                continue
            if out and isinstance(out[-1], TextPart):
                out[-1] = TextPart(text=out[-1].text + p.text)
                continue
        out.append(p)
    return out


class _Turn:
    """Mutable bookkeeping of one answer in progress."""

    def __init__(self, images_before: list[ImageRef]):
        self.images = list(images_before)
        self.calls: list[ModelCall] = []
        self.tool_calls: list[ToolCall] = []
        self.notes: list[str] = []
        self.tool_index = 0

    def resolve_image(self, ref: str | None) -> str | None:
        """Store URI for ``"image N"`` (None: the latest image); other strings pass through."""
        if ref is None:
            return self.images[-1].uri if self.images else None
        m = _IMAGE_REF.match(ref)
        if m is None:
            return ref
        n = int(m.group(1))
        if not 1 <= n <= len(self.images):
            raise ValueError(f"there is no image {n} (the dialogue has {len(self.images)} images)")
        return self.images[n - 1].uri


@node_kinds.register("assistant_turn")
class AssistantTurn(NodeKind[AssistantTurnInput, AssistantTurnOutput, AssistantTurnParams]):
    """One assistant answer (text + tool-made images) for a candidate slot of the tree."""

    kind = "assistant_turn"
    Input = AssistantTurnInput
    Output = AssistantTurnOutput
    Params = AssistantTurnParams
    models = "many"
    uses_tools = True
    # A first-turn candidate (no parent) has no history to read from the tree.
    optional_reads = frozenset({"nodes"})
    version = "1"

    async def run(self, inp: AssistantTurnInput) -> AssistantTurnOutput:
        started = time.perf_counter()
        task = inp.task
        names = self.ctx.model_names
        index = names.index(task.model) if task.model in names else task.candidate % len(names)
        model_name = names[index]
        client = self.ctx.model(index)
        history = [*_history(inp.nodes, task.parent), task.user]
        turn = _Turn(dialogue_images(history))
        params = self._call_params(inp.seed, task)
        node = TreeNode(id=task.node_id, parent=task.parent, turn=task.turn, candidate=task.candidate,
                        user=task.user, tags={**task.tags, "model": model_name})
        try:
            system = self.params.system_prompt or (
                DEFAULT_NATIVE_PROMPT if self.params.protocol == "native" else DEFAULT_MARKER_PROMPT
            )
            messages = await to_openai_messages(
                history, self.ctx.runtime.store, max_side=client.spec.max_image_side,
                transport=client.spec.image_transport, system=system,
            )
            if self.params.protocol == "native":
                parts = await self._native(client, messages, params, inp.seed, task, turn)
            else:
                parts = await self._markers(client, messages, params, inp.seed, task, turn)
            node.assistant = Message(role="assistant", parts=_merge_text(parts))
        except TurnFailed as exc:
            node.status, node.reason = "failed", str(exc)
        except ModelCallError as exc:  # SystemicFailure is not one: it stops the run instead
            node.status, node.reason = "failed", f"model call failed: {exc.reason}"
        node.provenance.append(
            self.provenance(started, model=model_name, calls=turn.calls, tool_calls=turn.tool_calls,
                            seed=params.get("seed"), notes=turn.notes)
        )
        return AssistantTurnOutput(nodes={node.id: node})

    def _call_params(self, seed: Seed, task: CandidateTask) -> dict[str, Any]:
        params = dict(self.params.params)
        if self.params.temperatures:
            params["temperature"] = self.params.temperatures[task.candidate % len(self.params.temperatures)]
        if self.params.seed_per_candidate:
            basis = f"{self.ctx.runtime.run_seed}|{seed.id}|{task.node_id}".encode()
            params["seed"] = int.from_bytes(hashlib.sha256(basis).digest()[:4], "big") & 0x7FFFFFFF
        return params

    def _cache_tag(self) -> str:
        return f"{self.kind}:{self.version}:{self.params.protocol}"

    def _tool_context(self, seed: Seed, task: CandidateTask, index: int) -> ToolContext:
        return ToolContext(dialogue_id=seed.id, node_id=task.node_id, index=index,
                           run_seed=self.ctx.runtime.run_seed, store=self.ctx.runtime.require_store())

    async def _run_tool(self, tool: Tool[Any, Any, Any], args: dict[str, Any], seed: Seed, task: CandidateTask,
                        turn: _Turn, index: int) -> tuple[BaseModel | None, ToolCall]:
        """Validate and run one tool call; failures come back as an unsuccessful :class:`ToolCall`."""
        started = time.perf_counter()
        record = ToolCall(tool=tool.name, arguments=args)
        try:
            if "image" in tool.Input.model_fields and isinstance(args.get("image"), str):
                args = {**args, "image": turn.resolve_image(args["image"])}
            inp = tool.Input.model_validate(args)
            out = await tool(inp, self._tool_context(seed, task, index))
        except InterleafError:
            # Configuration problems (a bad collection file, say) and SystemicFailure must surface,
            # not be chatted about with the model.
            raise
        except Exception as exc:
            record.ok = False
            record.error = f"{type(exc).__name__}: {exc}"[:1000]
            record.seconds = round(time.perf_counter() - started, 6)
            turn.tool_calls.append(record)
            return None, record
        record.output = out.model_dump(mode="json")
        record.seconds = round(time.perf_counter() - started, 6)
        turn.tool_calls.append(record)
        return out, record

    # -- markers protocol ----------------------------------------------------------------------
    async def _markers(self, client: Any, messages: list[dict[str, Any]], params: dict[str, Any], seed: Seed,
                       task: CandidateTask, turn: _Turn) -> list[TextPart | ImagePart]:
        tools = self.ctx.tools()
        generate = tools.get(self.params.image_tool)
        edit = tools.get(self.params.edit_tool) if self.params.edit_tool else None
        images_before = list(turn.images)
        problems: list[str] = []
        for _step in range(self.params.max_steps):
            completion = await client.complete(messages, params=params, cache_tag=self._cache_tag())
            turn.calls.append(completion.call)
            text = completion.text
            if not text.strip():
                raise TurnFailed(f"the model returned an empty answer (finish_reason={completion.finish_reason})")
            if completion.finish_reason == "length":
                turn.notes.append("answer cut at the token limit")
            markers = parse_markers(text)
            if markers and generate is None:
                turn.notes.append(f"no tool {self.params.image_tool!r} on this node: markers kept as text")
                return [TextPart(text=text)]
            turn.images = list(images_before)
            parts: list[TextPart | ImagePart] = []
            problems = []
            for piece in split_text(text, markers):
                if isinstance(piece, str):
                    parts.append(TextPart(text=piece))
                    continue
                assert generate is not None
                image, error = await self._realize(piece, generate, edit, seed, task, turn)
                if image is None:
                    problems.append(f"{piece.raw}: {error}")
                    parts.append(TextPart(text=piece.raw))
                    continue
                turn.images.append(image)
                parts.append(ImagePart(image=image, caption=piece.caption or None, marker=piece.raw))
            if not problems:
                return parts
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": "These images could not be made:\n" + "\n".join(problems)
                 + "\nPlease answer again; change or drop those image markers."},
            ]
        raise TurnFailed(f"no usable answer within max_steps={self.params.max_steps}: " + "; ".join(problems))

    async def _realize(self, marker: Marker, generate: Tool[Any, Any, Any], edit: Tool[Any, Any, Any] | None,
                       seed: Seed, task: CandidateTask, turn: _Turn) -> tuple[ImageRef | None, str]:
        index = turn.tool_index
        turn.tool_index += 1
        tool, args = generate, self._prompt_args(generate, marker.caption)
        if marker.action == "edit" and edit is not None and turn.images:
            tool = edit
            args = {"image": marker.source or image_label(len(turn.images)), "instruction": marker.instruction}
        elif marker.action == "edit":
            args = self._prompt_args(generate, marker.instruction or marker.caption)
        out, record = await self._run_tool(tool, args, seed, task, turn, index)
        if out is None:
            return None, record.error or "tool failed"
        image = getattr(out, "image", None)
        if not isinstance(image, ImageRef):
            record.ok, record.error = False, f"tool {tool.name!r} returned no image"
            return None, record.error
        return image, ""

    @staticmethod
    def _prompt_args(tool: Tool[Any, Any, Any], text: str) -> dict[str, Any]:
        fields = tool.Input.model_fields
        name = next((f for f in _PROMPT_FIELDS if f in fields), next(iter(fields), "prompt"))
        return {name: text}

    # -- native protocol ------------------------------------------------------------------------
    async def _native(self, client: Any, messages: list[dict[str, Any]], params: dict[str, Any], seed: Seed,
                      task: CandidateTask, turn: _Turn) -> list[TextPart | ImagePart]:
        tools = self.ctx.tools()
        schemas = [t.function_schema() for t in tools.values()] or None
        produced: dict[int, ImagePart] = {}
        repaired = False
        messages = list(messages)
        for _step in range(self.params.max_steps):
            completion = await client.complete(messages, tools=schemas, params=params, cache_tag=self._cache_tag())
            turn.calls.append(completion.call)
            if not completion.tool_calls:
                if not completion.text.strip() and not produced:
                    raise TurnFailed("the model returned an empty answer")
                return self._place(completion.text, produced)
            messages.append(completion.raw_message)
            invalid: list[str] = []
            for call in completion.tool_calls:
                index = turn.tool_index
                turn.tool_index += 1
                tool = tools.get(call.name)
                args, problem = self._parse_arguments(call.arguments, tool, call.name)
                if problem is not None:
                    invalid.append(f"{call.name}: {problem}")
                    turn.tool_calls.append(ToolCall(tool=call.name, arguments={"raw": call.arguments[:2000]},
                                                    ok=False, error=problem))
                    content = {"error": f"{INVALID_ARGUMENTS}: {problem}. Call the tool again with valid JSON."}
                else:
                    assert tool is not None and args is not None
                    out, record = await self._run_tool(tool, args, seed, task, turn, index)
                    content = self._tool_result(out, record, call.name, produced, turn)
                messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": json.dumps(content, ensure_ascii=False)})
            if invalid:
                if repaired:
                    raise TurnFailed("malformed tool call after one repair attempt: " + "; ".join(invalid))
                repaired = True
                turn.notes.append("repair round: " + "; ".join(invalid))
        raise TurnFailed(f"no final answer within max_steps={self.params.max_steps}")

    @staticmethod
    def _parse_arguments(
        raw: str, tool: Tool[Any, Any, Any] | None, name: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        if tool is None:
            return None, f"unknown tool {name!r}"
        try:
            args = json.loads(raw or "{}")
        except ValueError as exc:
            return None, f"arguments are not valid JSON ({exc})"
        if not isinstance(args, dict):
            return None, "arguments must be a JSON object"
        try:
            tool.Input.model_validate(args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            return None, f"{where}: {first['msg']}"
        return args, None

    @staticmethod
    def _tool_result(out: BaseModel | None, record: ToolCall, name: str, produced: dict[int, ImagePart],
                     turn: _Turn) -> dict[str, Any]:
        if out is None:
            return {"error": f"tool {name!r} failed: {record.error}"}
        result = out.model_dump(mode="json")
        image = getattr(out, "image", None)
        if isinstance(image, ImageRef):
            turn.images.append(image)
            n = len(turn.images)
            caption = record.arguments.get("prompt") or record.arguments.get("instruction") or record.arguments.get(
                "query") or getattr(out, "caption", None)
            produced[n] = ImagePart(image=image, caption=str(caption) if caption else None)
            result = {k: v for k, v in result.items() if k != "image"}
            result["placeholder"] = f"[{image_label(n)}]"
        return result

    @staticmethod
    def _place(text: str, produced: dict[int, ImagePart]) -> list[TextPart | ImagePart]:
        parts: list[TextPart | ImagePart] = []
        used: set[int] = set()
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            n = int(m.group(1))
            if n not in produced or n in used:
                continue
            parts.append(TextPart(text=text[pos:m.start()]))
            parts.append(produced[n].model_copy(update={"marker": m.group(0)}))
            used.add(n)
            pos = m.end()
        parts.append(TextPart(text=text[pos:]))
        parts.extend(produced[n] for n in sorted(produced) if n not in used)
        return parts
