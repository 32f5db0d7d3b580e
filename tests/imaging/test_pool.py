import asyncio
import threading
from pathlib import Path

import pytest

from interleaf.imaging.pool import PipelineLoadError, PipelinePool


def test_one_instance_per_key_across_threads(tiny_pipeline_dir: Path) -> None:
    pool = PipelinePool()
    key = pool.key_for(str(tiny_pipeline_dir), "text2img", "auto", "auto")
    assert key.device == "cpu" and key.dtype == "float32"
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(pool.get(key))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in got}) == 1
    assert len(pool.loaded()) == 1


async def test_async_get_normalises_paths(tiny_pipeline_dir: Path) -> None:
    pool = PipelinePool()
    relative = Path(tiny_pipeline_dir) / ".." / Path(tiny_pipeline_dir).name
    a, b = await asyncio.gather(
        pool.aget(str(tiny_pipeline_dir), "text2img"), pool.aget(str(relative), "text2img", "cpu", "float32")
    )
    assert a is b
    assert type(a.pipe).__name__ == "StableDiffusionPipeline"


def test_img2img_shares_weights_but_not_the_scheduler(tiny_pipeline_dir: Path) -> None:
    pool = PipelinePool()
    t2i = pool.get(pool.key_for(str(tiny_pipeline_dir), "text2img"))
    i2i = pool.get(pool.key_for(str(tiny_pipeline_dir), "img2img"))
    assert type(i2i.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert i2i.pipe.unet is t2i.pipe.unet
    assert i2i.pipe.scheduler is not t2i.pipe.scheduler
    assert i2i.lock is t2i.lock


def test_img2img_alone_loads_from_the_folder(tiny_pipeline_dir: Path) -> None:
    pool = PipelinePool()
    i2i = pool.get(pool.key_for(str(tiny_pipeline_dir), "img2img"))
    assert type(i2i.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert i2i.scheduler_name == "DDIMScheduler"


def test_unknown_hub_model_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    pool = PipelinePool()
    with pytest.raises(PipelineLoadError, match=r"interleaf-test/no-such-model.*HF_HUB_OFFLINE"):
        pool.get(pool.key_for("interleaf-test/no-such-model", "text2img"))


def test_pix2pix_kind_requires_a_pix2pix_model(tiny_pipeline_dir: Path, tiny_pix2pix_dir: Path) -> None:
    pool = PipelinePool()
    with pytest.raises(PipelineLoadError, match="not an InstructPix2Pix pipeline"):
        pool.get(pool.key_for(str(tiny_pipeline_dir), "instruct_pix2pix"))
    loaded = pool.get(pool.key_for(str(tiny_pix2pix_dir), "instruct_pix2pix"))
    assert "InstructPix2Pix" in type(loaded.pipe).__name__
