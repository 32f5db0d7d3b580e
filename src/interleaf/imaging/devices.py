"""Device and dtype choice: ``auto`` means cuda > mps > cpu, and float16 on accelerators."""

from __future__ import annotations

import re
from typing import Literal

DTypeName = Literal["auto", "float32", "float16", "bfloat16"]
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceUnavailableError(RuntimeError):
    """A device named in the graph file is not present on this machine."""


def resolve_device(requested: str) -> str:
    """Concrete torch device string for ``auto|cpu|mps|cuda|cuda:N`` (imports torch)."""
    import torch

    if not DEVICE_PATTERN.match(requested):
        raise ValueError(f"device {requested!r} is not one of auto, cpu, mps, cuda, cuda:N")
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {requested!r} requested but torch sees no CUDA device")
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError("device 'mps' requested but torch reports MPS unavailable")
    return requested


def resolve_dtype(requested: DTypeName | str, device: str) -> str:
    """Concrete dtype name; ``auto`` is float16 on cuda/mps and float32 on the CPU."""
    if requested == "auto":
        return "float32" if device == "cpu" else "float16"
    if requested not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype {requested!r} is not one of auto, float32, float16, bfloat16")
    return requested
