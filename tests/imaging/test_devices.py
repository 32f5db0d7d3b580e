import pytest
import torch

from interleaf.imaging.devices import DeviceUnavailableError, resolve_device, resolve_dtype


def test_auto_picks_the_best_available_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        resolve_device("cuda:0")


def test_bad_device_name() -> None:
    with pytest.raises(ValueError, match="not one of"):
        resolve_device("tpu")


def test_dtype_auto_follows_device() -> None:
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda:1") == "float16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", "cpu")
