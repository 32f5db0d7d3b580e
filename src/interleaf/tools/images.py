"""``generate_image`` and ``edit_image``: diffusers pipelines behind the tool contract.

YAML names the backend per tool, e.g.::

    tools:
      draw: {kind: generate_image, backend: diffusers, pipeline: text2img,
             model: stabilityai/sd-turbo, steps: 4, guidance: 0.0, size: 512, dtype: float16}
      retouch: {kind: edit_image, backend: diffusers, pipeline: img2img, model: ./models/tiny}

``model`` is a hub id (loaded from the Hugging Face cache; ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` are honoured) or a local folder; a relative folder is resolved against
the graph file's folder, and ``${VAR}`` references are expanded when the tool is built.

Every image gets a seed derived from (run seed, dialogue id, tree node, marker index),
and the tool's output carries that seed, the model, the scheduler and the settings, so
the caller can put them in provenance. Importing this module imports neither torch nor
diffusers; the pipeline pool does when the first image is requested.

``edit_image`` takes an image reference: a URI in the run's store, a store key, or
``image N`` (the N-th image of the dialogue, 1-based). The assistant-turn node resolves
``image N`` itself and passes a URI; other callers can bind the dialogue's images with
:func:`interleaf.imaging.references.bind_dialogue_images` and pass ``image N`` through.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interleaf.errors import SpecError, SystemicFailure
from interleaf.graphs.spec import resolve_env
from interleaf.imaging.batcher import batcher_for
from interleaf.imaging.devices import DEVICE_PATTERN
from interleaf.imaging.jobs import BatchShape, ImageJob, ImageResult, PipelineKind
from interleaf.imaging.pool import pipeline_pool
from interleaf.imaging.references import ImageReferenceError, load_image_reference, resolve_image_key
from interleaf.imaging.seeding import derive_image_seed
from interleaf.run.totals import record_images
from interleaf.state import ImageRef
from interleaf.tools.base import Tool, ToolContext, ToolError, tool_kinds

if TYPE_CHECKING:
    from interleaf.imaging.pool import LoadedPipeline
    from interleaf.storage.store import ObjectStore

#: Largest side of the one image a preflight makes per tool (the tool's own size when smaller).
PREFLIGHT_SIDE = 64
_SIZE_TEXT = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


class DiffusersToolParams(BaseModel):
    """YAML settings shared by the diffusers image tools."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["diffusers"] = Field(default="diffusers", description="Image backend (only diffusers).")
    model: str = Field(min_length=1, description="Hub id or local folder (relative to the graph file).")
    steps: int = Field(default=25, ge=1, le=1000, description="Denoising steps.")
    guidance: float = Field(default=7.5, ge=0, le=100, description="Classifier-free guidance scale.")
    size: int | tuple[int, int] = Field(default=512, description="Square side, [width, height] or 'WxH'.")
    max_size: int = Field(default=1024, ge=8, le=8192, description="Largest allowed width or height.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field(default="auto", description="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.")
    max_batch: int = Field(default=8, ge=1, le=256, description="Most requests in one pipeline call.")
    max_wait_ms: float = Field(default=20.0, ge=0, le=60_000, description="How long a request waits for company.")
    negative_prompt: str | None = Field(default=None, description="Used when a call gives none.")

    @field_validator("size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _SIZE_TEXT.match(value)
            if match:
                return (int(match.group(1)), int(match.group(2)))
            if value.strip().isdigit():
                return int(value)
            raise ValueError(f"size {value!r} is not N, [W, H] or 'WxH'")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError(f"device {value!r} is not one of auto, cpu, mps, cuda, cuda:N")
        return value

    @model_validator(mode="after")
    def _check_size(self) -> DiffusersToolParams:
        for side, label in ((self.width, "width"), (self.height, "height")):
            if side < 8 or side % 8:
                raise ValueError(f"size: {label} {side} must be a positive multiple of 8")
            if side > self.max_size:
                raise ValueError(f"size: {label} {side} is above max_size {self.max_size}")
        return self

    @property
    def width(self) -> int:
        return self.size if isinstance(self.size, int) else self.size[0]

    @property
    def height(self) -> int:
        return self.size if isinstance(self.size, int) else self.size[1]


class GenerateImageParams(DiffusersToolParams):
    """Settings of ``generate_image``."""

    pipeline: Literal["text2img"] = "text2img"


class EditImageParams(DiffusersToolParams):
    """Edits come out at ``size``; the source image is resized to it first."""

    pipeline: Literal["img2img", "instruct_pix2pix"] = "img2img"
    strength: float = Field(default=0.75, gt=0, le=1, description="img2img: how far the edit may move.")
    image_guidance: float = Field(default=1.5, ge=0, le=100, description="instruct_pix2pix: image guidance scale.")

    @model_validator(mode="after")
    def _check_strength(self) -> EditImageParams:
        if self.pipeline == "img2img":
            check_strength_steps(self.strength, self.steps)
        return self


def check_strength_steps(strength: float, steps: int) -> None:
    """img2img runs ``int(steps * strength)`` steps; zero would fail inside diffusers."""
    if int(steps * strength) < 1:
        raise ValueError(f"strength {strength} with {steps} steps runs no denoising step; raise either")


class GenerateImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, description="What the image should show.")
    negative_prompt: str | None = Field(default=None, description="What the image should not show.")


class EditImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(
        min_length=1, description="The image to edit: its URI, or 'image N' for the N-th image of the dialogue so far."
    )
    instruction: str = Field(min_length=1, description="What to change.")
    strength: float | None = Field(default=None, gt=0, le=1, description="How far the edit may move (img2img).")


class ImageToolOutput(BaseModel):
    """The stored image and what made it (ready for provenance)."""

    image: ImageRef
    seed: int
    model: str
    scheduler: str
    params: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def resolve_model(model: str, spec_dir: Path | None, tool_name: str) -> str:
    """Expand ``${VAR}``s; a path that names a folder (relative to ``spec_dir``) becomes absolute.

    Anything else is taken as a hub id. ``./x``, ``../x`` and absolute paths must exist.
    """
    field = f"tools.{tool_name}.model"
    try:
        text = resolve_env(model)
    except KeyError as exc:
        raise SpecError(f"environment variable {exc.args[0]!r} is not set", field=field) from None
    path = Path(text).expanduser()
    base = spec_dir or Path.cwd()
    candidate = path if path.is_absolute() else base / path
    if candidate.is_dir():
        return str(candidate.resolve())
    if path.is_absolute() or text.startswith(("./", "../", "~")) or text in (".", ".."):
        raise SpecError(f"model folder {str(candidate)!r} does not exist", field=field)
    return text


ParamsT = TypeVar("ParamsT", bound=DiffusersToolParams)
InputT = TypeVar("InputT", bound=BaseModel)


class _DiffusersImageTool(Tool[ParamsT, InputT, ImageToolOutput]):
    pipeline_kind: ClassVar[str]
    Output = ImageToolOutput

    def __init__(self, name: str, params: ParamsT, *, store: ObjectStore | None = None,
                 base_dir: Path | None = None):
        super().__init__(name, params, store=store, base_dir=base_dir)
        self.model_path = resolve_model(params.model, base_dir, name)
        self._loaded: LoadedPipeline | None = None

    @property
    def kind_name(self) -> PipelineKind:
        return self.params.pipeline  # type: ignore[attr-defined, no-any-return]

    async def loaded(self) -> LoadedPipeline:
        """The pooled pipeline this tool uses (loaded on first call)."""
        if self._loaded is None:
            self._loaded = await pipeline_pool().aget(
                self.model_path, self.kind_name, self.params.device, self.params.dtype
            )
        return self._loaded

    def _shape(self, strength: float | None = None) -> BatchShape:
        p = self.params
        return BatchShape(width=p.width, height=p.height, steps=p.steps, guidance=p.guidance, strength=strength)

    async def _render(
        self, ctx: ToolContext, prompt: str, negative: str | None, shape: BatchShape, init_image: bytes | None
    ) -> ImageToolOutput:
        loaded = await self.loaded()
        notes: list[str] = []
        fitted, note = loaded.fit_prompt(prompt)
        if note:
            notes.append(note)
        if negative:
            negative, neg_note = loaded.fit_prompt(negative)
            if neg_note:
                notes.append("negative " + neg_note)
        seed = derive_image_seed(ctx.run_seed, ctx.dialogue_id, ctx.node_id, ctx.index)
        job = ImageJob(prompt=fitted, seed=seed, shape=shape, negative_prompt=negative, init_image=init_image)
        batcher = batcher_for(loaded, self.params.max_batch, self.params.max_wait_ms / 1000.0)
        try:
            result: ImageResult = await batcher.submit(job)
        except ValueError as exc:
            raise ToolError(f"{self.name}: {exc}") from exc
        except SystemicFailure:
            raise  # a stopped run is not this image's failure
        except Exception as exc:
            raise ToolError(f"{self.name}: image pipeline failed: {type(exc).__name__}: {exc}") from exc
        if result.flagged_nsfw:
            notes.append("the pipeline's safety checker flagged this image (it may be blanked)")
        key, sha = await ctx.store.aput_blob(result.png, "png")
        record_images(1)
        image = ImageRef(uri=ctx.store.url(key), sha256=sha, width=result.width, height=result.height)
        params: dict[str, Any] = {
            "pipeline": self.kind_name,
            "prompt": fitted,
            "negative_prompt": negative,
            "steps": shape.steps,
            "guidance": shape.guidance,
            "width": shape.width,
            "height": shape.height,
            "device": loaded.key.device,
            "dtype": loaded.key.dtype,
        }
        return ImageToolOutput(
            image=image, seed=seed, model=self.params.model, scheduler=loaded.scheduler_name, params=params, notes=notes
        )


    def preflight_shape(self) -> BatchShape:
        """The smallest image this tool can make: at most 64 px a side, one denoising step."""
        p = self.params
        return BatchShape(width=min(PREFLIGHT_SIDE, p.width), height=min(PREFLIGHT_SIDE, p.height), steps=1,
                          guidance=p.guidance)

    async def preflight(self, ctx: ToolContext) -> str:
        """Load the pipeline (into the shared pool, so the run reuses it) and make one smallest image."""
        shape = self.preflight_shape()
        source: bytes | None = None
        if self.kind_name != "text2img":
            source = _grey_png(shape.width, shape.height)
            if self.kind_name == "img2img":
                shape = BatchShape(shape.width, shape.height, 1, shape.guidance, strength=1.0)
            else:
                shape = BatchShape(shape.width, shape.height, 1, shape.guidance,
                                   image_guidance=self.params.image_guidance)  # type: ignore[attr-defined]
        out = await self._render(ctx, "a small test image", None, shape, source)
        return (f"{self.kind_name} pipeline {self.params.model} loaded on {out.params['device']}; one "
                f"{shape.width}x{shape.height} image in 1 step")


def _grey_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


@tool_kinds.register("generate_image")
class GenerateImage(_DiffusersImageTool[GenerateImageParams, GenerateImageInput]):
    """Text-to-image with a pooled, micro-batched diffusers pipeline."""

    kind = "generate_image"
    description = "Generate an image from a text description."
    Params = GenerateImageParams
    Input = GenerateImageInput

    async def __call__(self, inp: GenerateImageInput, ctx: ToolContext) -> ImageToolOutput:
        negative = inp.negative_prompt if inp.negative_prompt is not None else self.params.negative_prompt
        out = await self._render(ctx, inp.prompt, negative, self._shape(), None)
        return out


@tool_kinds.register("edit_image")
class EditImage(_DiffusersImageTool[EditImageParams, EditImageInput]):
    """Image editing (img2img or InstructPix2Pix) of an image already in the store."""

    kind = "edit_image"
    description = "Edit an existing image of the dialogue according to an instruction."
    Params = EditImageParams
    Input = EditImageInput

    async def __call__(self, inp: EditImageInput, ctx: ToolContext) -> ImageToolOutput:
        p = self.params
        if p.pipeline == "img2img":
            strength = inp.strength if inp.strength is not None else p.strength
            try:
                check_strength_steps(strength, p.steps)
            except ValueError as exc:
                raise ToolError(f"{self.name}: {exc}") from None
            shape = self._shape(strength)
        else:
            shape = BatchShape(p.width, p.height, p.steps, p.guidance, image_guidance=p.image_guidance)
        try:
            key = resolve_image_key(inp.image, ctx.store)
            source = await load_image_reference(key, ctx.store)
        except ImageReferenceError as exc:
            raise ToolError(f"{self.name}: {exc}") from None
        out = await self._render(ctx, inp.instruction, p.negative_prompt, shape, source)
        out.params["source_image"] = ctx.store.url(key)
        if shape.strength is not None:
            out.params["strength"] = shape.strength
        if shape.image_guidance is not None:
            out.params["image_guidance"] = shape.image_guidance
        return out
