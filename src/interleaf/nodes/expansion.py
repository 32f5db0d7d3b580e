"""PromptExpansion: turn a seed into multi-turn-ready first questions, each tagged with a situation.

InterMT groups seeds by *why* a conversation goes multi-turn; the expander rewrites the seed so
that it invites that kind of follow-up, and says which situation it aimed for on a
``SITUATION: <name>`` line. Without a model the seed passes through as the only prompt.

With ``levels`` the node makes a *hierarchy* instead: one prompt per level, in order, each
tagged ``level`` (1-based) and ``level_name`` plus the level's own ``tags``. A level with an
``instruction`` asks the model to rewrite the seed that way (say "rest the question on a
false premise"); a level without one keeps the seed question verbatim. A level may also drop
the seed's images (a question about an image that is not there).
"""

from __future__ import annotations

import asyncio
import re
import string
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interleaf.models.client import ModelCallError
from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.nodes.prompting import chat_messages
from interleaf.nodes.registry import node_kinds
from interleaf.seeds import load_seed_images
from interleaf.state import ImageRef, Message, Prompt, Seed, TextPart


class Situation(BaseModel):
    """Why a conversation goes multi-turn."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    description: str = ""


DEFAULT_SITUATIONS: tuple[Situation, ...] = (
    Situation(name="unclear user understanding",
              description="The user does not yet know exactly what to ask and refines it over turns."),
    Situation(name="repeated attempts after unsatisfying answers",
              description="The user asks again, pointing out what was wrong with the last answer."),
    Situation(name="stepwise incremental tasks",
              description="A task done one step at a time, each turn building on the previous result."),
    Situation(name="open-ended companion chat",
              description="Open conversation where the user keeps exploring related ideas."),
    Situation(name="cross-modal mismatch or integrated reasoning",
              description="Text and images must be reconciled or reasoned about together."),
)

DEFAULT_SYSTEM_PROMPT = """\
You turn a seed request into the first user message of a multi-turn conversation with a
multimodal assistant that can read and create images. Keep the seed's intent and any image it
refers to, but phrase it so that a natural follow-up conversation of several turns can grow
from it. Aim for one of these situations:
{situations}
SITUATIONS: {situation_names}

Reply with the rewritten user message only, then a last line `SITUATION: <situation name>`."""

DEFAULT_USER_PROMPT = """\
{situation_hint}Write variant {variant} of {variants}; make it differ from the other variants.

Seed request:
{prompt}"""

DEFAULT_LEVEL_SYSTEM_PROMPT = """\
You rewrite a seed question into one level of a graded set of probe questions for a multimodal
assistant. Keep the seed's subject and any image it refers to, follow the level's instruction
exactly, and write as a real user would, without saying that this is a test.

Reply with the rewritten user message only."""

DEFAULT_LEVEL_USER_PROMPT = """\
Level {level} of {levels} ({name}): {instruction}

Seed question:
{prompt}"""

_LEVEL_SYSTEM_FIELDS = frozenset({"levels"})
_LEVEL_USER_FIELDS = frozenset({"prompt", "level", "levels", "name", "instruction"})
_SYSTEM_FIELDS = frozenset({"situations", "situation_names", "variants"})
_USER_FIELDS = frozenset({"prompt", "situation_hint", "variant", "variants"})
_SITUATION_LINE = re.compile(r"^\s*\**\s*situation\s*\**\s*[:：]\s*(?P<tag>.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_QUESTION_LEAD = re.compile(r"^\s*\**\s*(?:question|user(?: message)?|prompt)\s*\**\s*[:：]\s*", re.IGNORECASE)


def check_template(value: str, allowed: frozenset[str]) -> str:
    """``value`` if it is a ``str.format`` template using only ``allowed`` placeholders."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad template ({exc}); write literal braces as '{{{{' and '}}}}'") from None
    unknown = sorted(f for f in fields if f not in allowed)
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} (allowed: {', '.join(sorted(allowed))})")
    return value


class ExpansionLevel(BaseModel):
    """One level of a prompt hierarchy."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    instruction: str | None = Field(
        default=None, description="How the model rewrites the seed for this level; None keeps the seed verbatim."
    )
    images: bool = Field(default=True, description="Attach the seed's images to this level's prompt.")
    tags: dict[str, Any] = Field(default_factory=dict, description="Extra tags on this level's prompt.")


class PromptExpansionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: int = Field(default=1, ge=1, le=64, description="First questions made from each seed.")
    situations: list[Situation] = Field(default_factory=lambda: list(DEFAULT_SITUATIONS), min_length=1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    user_prompt: str = DEFAULT_USER_PROMPT
    levels: list[ExpansionLevel] | None = Field(
        default=None, min_length=1, description="Make one prompt per level instead of 'variants' situated ones."
    )
    level_system_prompt: str = DEFAULT_LEVEL_SYSTEM_PROMPT
    level_prompt: str = DEFAULT_LEVEL_USER_PROMPT

    @field_validator("situations", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("system_prompt")
    @classmethod
    def _system(cls, value: str) -> str:
        return check_template(value, _SYSTEM_FIELDS)

    @field_validator("user_prompt")
    @classmethod
    def _user(cls, value: str) -> str:
        return check_template(value, _USER_FIELDS)

    @field_validator("level_system_prompt")
    @classmethod
    def _level_system(cls, value: str) -> str:
        return check_template(value, _LEVEL_SYSTEM_FIELDS)

    @field_validator("level_prompt")
    @classmethod
    def _level_user(cls, value: str) -> str:
        return check_template(value, _LEVEL_USER_FIELDS)

    @model_validator(mode="after")
    def _levels_or_variants(self) -> PromptExpansionParams:
        if self.levels is not None and self.variants != 1:
            raise ValueError("give 'levels' or 'variants', not both (each level is one prompt)")
        return self


class PromptExpansionInput(NodeIO):
    seed: Seed


class PromptExpansionOutput(NodeIO):
    prompts: list[Prompt]
    records: dict[str, Any]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def match_situation(tag: str, situations: list[Situation]) -> str | None:
    """The situation a free-text tag names: exact, then containment, then a shared leading word."""
    t = _norm(tag)
    if not t:
        return None
    names = [(s.name, _norm(s.name)) for s in situations]
    for name, n in names:
        if n == t:
            return name
    for name, n in names:
        if n in t or t in n:
            return name
    first = t.split()[0]
    hits = [name for name, n in names if n.split()[:1] == [first]]
    return hits[0] if len(hits) == 1 else None


def parse_expansion(text: str) -> tuple[str, str | None]:
    """``(question, situation tag)`` from an expander answer; the tag line is removed from the text."""
    tags = list(_SITUATION_LINE.finditer(text))
    tag = tags[-1]["tag"].strip().strip("*`'\"").strip() if tags else None
    body = _SITUATION_LINE.sub("", text).strip()
    body = _QUESTION_LEAD.sub("", body, count=1).strip()
    return body, tag


@node_kinds.register("prompt_expansion")
class PromptExpansion(NodeKind[PromptExpansionInput, PromptExpansionOutput, PromptExpansionParams]):
    """Seed -> ``variants`` first questions tagged with a situation (seed images attached)."""

    kind = "prompt_expansion"
    Input = PromptExpansionInput
    Output = PromptExpansionOutput
    Params = PromptExpansionParams
    models = "optional"

    async def _seed_images(self, seed: Seed) -> list[ImageRef]:
        if not seed.images:
            return []
        return await load_seed_images(seed, self.ctx.runtime.require_store())

    def _hint(self, seed: Seed, variant: int) -> str:
        situations = self.params.situations
        if seed.situation:
            return f"The seed is marked with the situation: {seed.situation}.\n"
        suggested = situations[variant % len(situations)].name
        return f"Suggested situation for this variant: {suggested}.\n"

    async def _expand(self, seed: Seed, variant: int, images: list[ImageRef]) -> tuple[Prompt, list[Any]]:
        p = self.params
        situations = "\n".join(f"- {s.name}: {s.description}" if s.description else f"- {s.name}"
                               for s in p.situations)
        names = " | ".join(s.name for s in p.situations)
        system = p.system_prompt.format(situations=situations, situation_names=names, variants=p.variants)
        user = p.user_prompt.format(prompt=seed.prompt, situation_hint=self._hint(seed, variant),
                                    variant=variant + 1, variants=p.variants)
        # The expander sees the seed's images so the rewrite can refer to them.
        request = [Message(role="system", parts=[TextPart(text=system)]), Message.user(user, images)]
        fallback_situation = match_situation(seed.situation, p.situations) if seed.situation else None
        client = self.ctx.model()
        try:
            messages = await chat_messages(client, request, self.ctx.runtime.store)
            completion = await client.complete(messages, cache_tag=f"expand:v{variant}")
        except ModelCallError as exc:
            return self._seed_prompt(seed, variant, images, fallback_situation, f"fallback: {exc.reason}"), []
        question, tag = parse_expansion(completion.text or "")
        if not question:
            prompt = self._seed_prompt(seed, variant, images, fallback_situation, "fallback: empty expansion")
            return prompt, [completion.call]
        situation = match_situation(tag, p.situations) if tag else None
        tags: dict[str, Any] = {"expansion": "model", "seed_id": seed.id}
        if tag is not None and situation is None:
            tags["situation_raw"] = tag
        return Prompt(variant=variant, message=Message.user(question, images),
                      situation=situation or fallback_situation, tags=tags), [completion.call]

    @staticmethod
    def _seed_prompt(seed: Seed, variant: int, images: list[ImageRef], situation: str | None, how: str) -> Prompt:
        return Prompt(variant=variant, message=Message.user(seed.prompt, images), situation=situation,
                      tags={"expansion": how, "seed_id": seed.id})

    async def _level(self, seed: Seed, index: int, level: ExpansionLevel,
                     images: list[ImageRef]) -> tuple[Prompt, list[Any]]:
        p = self.params
        assert p.levels is not None
        attached = images if level.images else []
        tags: dict[str, Any] = {**level.tags, "level": index + 1, "level_name": level.name, "seed_id": seed.id}
        situation = seed.situation

        def verbatim(how: str) -> Prompt:
            return Prompt(variant=index, message=Message.user(seed.prompt, attached), situation=situation,
                          tags={**tags, "expansion": how})

        if level.instruction is None or not self.ctx.model_names:
            return verbatim("seed"), []
        system = p.level_system_prompt.format(levels=len(p.levels))
        user = p.level_prompt.format(prompt=seed.prompt, level=index + 1, levels=len(p.levels), name=level.name,
                                     instruction=level.instruction.strip())
        # The rewriter always sees the seed's images, even for a level that will not attach them.
        request = [Message(role="system", parts=[TextPart(text=system)]), Message.user(user, images)]
        client = self.ctx.model()
        try:
            messages = await chat_messages(client, request, self.ctx.runtime.store)
            completion = await client.complete(messages, cache_tag=f"expand:level:{index + 1}")
        except ModelCallError as exc:
            return verbatim(f"fallback: {exc.reason}"), []
        question, _tag = parse_expansion(completion.text or "")
        if not question:
            return verbatim("fallback: empty expansion"), [completion.call]
        return Prompt(variant=index, message=Message.user(question, attached), situation=situation,
                      tags={**tags, "expansion": "model"}), [completion.call]

    async def run(self, inp: PromptExpansionInput) -> PromptExpansionOutput:
        started = time.perf_counter()
        seed = inp.seed
        images = await self._seed_images(seed)
        if self.params.levels is not None:
            done = await asyncio.gather(*(self._level(seed, i, lv, images) for i, lv in enumerate(self.params.levels)))
            calls = [c for _, cs in done for c in cs]
            records: dict[str, Any] = {}
            if self.ctx.model_names:
                prov = self.provenance(started, model=self.ctx.model_names[0], calls=calls)
                records = {self.ctx.name: prov.model_dump(mode="json")}
            return PromptExpansionOutput(prompts=[p for p, _ in done], records=records)
        if not self.ctx.model_names:
            situation = match_situation(seed.situation, self.params.situations) if seed.situation else None
            prompts = [self._seed_prompt(seed, 0, images, situation or seed.situation, "seed")]
            return PromptExpansionOutput(prompts=prompts, records={})
        results = await asyncio.gather(*(self._expand(seed, v, images) for v in range(self.params.variants)))
        prompts = [r[0] for r in results]
        calls = [c for r in results for c in r[1]]
        prov = self.provenance(started, model=self.ctx.model_names[0], calls=calls)
        return PromptExpansionOutput(prompts=prompts, records={self.ctx.name: prov.model_dump(mode="json")})
