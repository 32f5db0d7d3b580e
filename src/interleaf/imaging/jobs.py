"""One image request as the batcher sees it, and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PipelineKind = Literal["text2img", "img2img", "instruct_pix2pix"]
PIPELINE_KINDS: tuple[PipelineKind, ...] = ("text2img", "img2img", "instruct_pix2pix")


@dataclass(frozen=True)
class BatchShape:
    """Settings that must be equal for requests to share one pipeline call."""

    width: int
    height: int
    steps: int
    guidance: float
    strength: float | None = None
    image_guidance: float | None = None


@dataclass(frozen=True)
class ImageJob:
    """A prompt, its seed and settings; ``init_image`` holds encoded bytes for edits."""

    prompt: str
    seed: int
    shape: BatchShape
    negative_prompt: str | None = None
    init_image: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ImageResult:
    """A finished image as PNG bytes."""

    png: bytes = field(repr=False)
    width: int
    height: int
    flagged_nsfw: bool = False
