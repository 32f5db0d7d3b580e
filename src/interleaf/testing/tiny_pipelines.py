"""Tiny random-weight Stable Diffusion pipelines, built in code with no hub access.

They run the real diffusers code path (text encoder, UNet, VAE, scheduler) at toy
size, so tests and the offline demo exercise pipeline loading, batching and
seeding exactly as a full model would, in well under a second an image on a CPU.
The weights are random but deterministic: the same call builds the same pipeline.

``kind`` is one of ``text2img`` (a ``StableDiffusionPipeline``; img2img loads from
the same folder), ``img2img`` (a ``StableDiffusionImg2ImgPipeline``) and
``instruct_pix2pix`` (a UNet with 8 input channels, as InstructPix2Pix needs).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from interleaf.imaging.pool import quiet_library_output

TinyKind = Literal["text2img", "img2img", "instruct_pix2pix"]

TINY_KINDS: tuple[TinyKind, ...] = ("text2img", "img2img", "instruct_pix2pix")
TOKENIZER_MAX_LENGTH = 77
# Bumped whenever the recipe changes, so cached folders built by an older recipe are rebuilt.
RECIPE_VERSION = 1
_MARKER = "interleaf-tiny.json"


def build_tiny_tokenizer() -> Any:
    """A CLIP tokenizer over an in-memory byte-level vocabulary (any text encodes)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    # A byte-level alphabet with and without the end-of-word suffix encodes any text;
    # a handful of merges keep common English a little shorter than one token a byte.
    alphabet = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in ("<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)):
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for left, right in (("t", "h"), ("a", "t</w>"), ("e", "</w>"), ("i", "n"), ("o", "n</w>")):
        merged = left + right
        if left in vocab and right in vocab:
            merges.append((left, right))
            vocab.setdefault(merged, len(vocab))
    # The tokenizers backend wants (left, right) tuples although the signature says strings.
    merge_pairs: Any = merges
    return CLIPTokenizer(vocab=vocab, merges=merge_pairs, model_max_length=TOKENIZER_MAX_LENGTH)


def _components(unet_in_channels: int) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    # Each module is seeded on its own so that changing one never changes another's weights.
    torch.manual_seed(0)
    unet: Any = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=unet_in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )
    torch.manual_seed(1)
    vae: Any = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=TOKENIZER_MAX_LENGTH,
        )
    ).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def build_tiny_pipeline(kind: TinyKind = "text2img") -> Any:
    """A tiny random-weight pipeline of ``kind`` on the CPU in float32."""
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    if kind == "text2img":
        pipe: Any = StableDiffusionPipeline(**_components(4))
    elif kind == "img2img":
        pipe = StableDiffusionImg2ImgPipeline(**_components(4))
    elif kind == "instruct_pix2pix":
        pipe = StableDiffusionInstructPix2PixPipeline(**_components(8))
    else:
        raise ValueError(f"unknown tiny pipeline kind {kind!r} (choose from {', '.join(TINY_KINDS)})")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_text2img() -> Any:
    """A tiny ``StableDiffusionPipeline``."""
    return build_tiny_pipeline("text2img")


def build_tiny_img2img() -> Any:
    """A tiny ``StableDiffusionImg2ImgPipeline`` (same weights as :func:`build_tiny_text2img`)."""
    return build_tiny_pipeline("img2img")


def save_tiny_pipeline(folder: str | os.PathLike[str], kind: TinyKind = "text2img") -> Path:
    """Build a tiny pipeline and ``save_pretrained`` it into ``folder``; returns the folder."""
    quiet_library_output()
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline(kind).save_pretrained(str(target), safe_serialization=True)
    (target / _MARKER).write_text(json.dumps({"kind": kind, "recipe": RECIPE_VERSION}), encoding="utf-8")
    return target


def ensure_tiny_pipeline(cache_dir: str | os.PathLike[str], kind: TinyKind = "text2img") -> Path:
    """The folder ``cache_dir/tiny-<kind>``, built on first use and reused afterwards.

    The folder is written under a temporary name and renamed, so concurrent callers
    (several worker processes starting together) never see a half-written pipeline.
    """
    cache = Path(cache_dir)
    target = cache / f"tiny-{kind}"
    if _is_current(target, kind):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tiny-{kind}-", dir=cache))
    try:
        save_tiny_pipeline(staging, kind)
        if target.exists() and not _is_current(target, kind):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process renamed its copy first; theirs is as good as ours.
            if not _is_current(target, kind):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_current(folder: Path, kind: str) -> bool:
    try:
        info = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(info.get("kind") == kind and info.get("recipe") == RECIPE_VERSION)
