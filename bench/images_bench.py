"""Images/s through the micro-batcher, batched vs unbatched.

    python bench/images_bench.py            # tiny pipeline on the CPU (< ~60 s); GPU too if present
    python bench/images_bench.py --quick    # fewer images
    python bench/images_bench.py --gpu-only # only the SD-1.5-shaped UNet on CUDA

Both runs submit the same N concurrent requests through :class:`MicroBatcher`, the way
many dialogues do; "unbatched" is ``max_batch=1`` (one pipeline call an image). The GPU
run builds a full-size SD-1.5-shaped pipeline with random fp16 weights (no download),
so its figures are real throughput for that architecture, not image quality.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

from interleaf.imaging.batcher import MicroBatcher
from interleaf.imaging.jobs import BatchShape, ImageJob
from interleaf.imaging.pool import LoadedPipeline, PipelineKey, PipelinePool
from interleaf.imaging.seeding import derive_image_seed


@dataclass
class Figure:
    label: str
    images: int
    seconds: float
    calls: int

    @property
    def per_second(self) -> float:
        return self.images / self.seconds


async def _serve(loaded: LoadedPipeline, shape: BatchShape, count: int, max_batch: int) -> Figure:
    batcher = MicroBatcher(loaded, max_batch=max_batch, max_wait_s=0.01)
    jobs = [
        ImageJob(prompt=f"a watercolor of harbour number {i}", seed=derive_image_seed(0, f"bench-{i}", "v0.0", 0),
                 shape=shape)
        for i in range(count)
    ]
    before = loaded.calls
    started = time.perf_counter()
    await asyncio.gather(*(batcher.submit(job) for job in jobs))
    seconds = time.perf_counter() - started
    label = "batched" if max_batch > 1 else "unbatched"
    return Figure(f"{label} (max_batch={max_batch})", count, seconds, loaded.calls - before)


def _report(title: str, batched: Figure, unbatched: Figure) -> None:
    print(f"\n== {title}")
    for fig in (unbatched, batched):
        print(f"{fig.label:<26} {fig.images:>4} images  {fig.seconds:8.2f} s  "
              f"{fig.per_second:8.2f} images/s  {fig.calls:>3} pipeline calls")
    print(f"ratio batched/unbatched: {batched.per_second / unbatched.per_second:.2f}x")


async def _compare(title: str, loaded: LoadedPipeline, shape: BatchShape, count: int, max_batch: int) -> None:
    await _serve(loaded, shape, min(count, max_batch), max_batch)  # warm-up: kernels, allocator, caches
    unbatched = await _serve(loaded, shape, count, 1)
    batched = await _serve(loaded, shape, count, max_batch)
    settings = f"{shape.width}x{shape.height}, {shape.steps} steps, guidance {shape.guidance}"
    _report(f"{title}: {settings}", batched, unbatched)


def _sd15_shaped_pipeline(device: str) -> Any:
    import torch

    from interleaf.testing.tiny_pipelines import build_tiny_tokenizer

    torch.manual_seed(0)
    # The published SD-1.5 component configs, with random weights, initialised on the device.
    with torch.device(device):
        return _sd15_components_pipeline(build_tiny_tokenizer())


def _sd15_components_pipeline(tokenizer: Any) -> Any:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        max_position_embeddings=77, vocab_size=49408, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        hidden_act="quick_gelu",
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return pipe.to(dtype=torch.float16)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images (smoke run)")
    parser.add_argument("--gpu-only", action="store_true", help="skip the tiny CPU pipeline")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU run even when CUDA is present")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=None, help="requests per run (default 32, quick 16)")
    parser.add_argument("--gpu-images", type=int, default=None, help="requests per GPU run (default 32, quick 16)")
    parser.add_argument("--gpu-steps", type=int, default=20)
    args = parser.parse_args(argv)

    import torch

    pool = PipelinePool()
    count = args.images or (16 if args.quick else 32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")

    if not args.gpu_only:
        from interleaf.testing.tiny_pipelines import build_tiny_text2img

        loaded = pool.adopt(PipelineKey("tiny-random", "text2img", "cpu", "float32"), build_tiny_text2img())
        await _compare("tiny pipeline on cpu", loaded, BatchShape(64, 64, 2, 7.5), count, args.max_batch)

    if args.cpu_only:
        return 0
    if not torch.cuda.is_available():
        print("\n== SD-1.5-shaped UNet: skipped (no CUDA device)")
        return 1 if args.gpu_only else 0
    gpu_count = args.gpu_images or (16 if args.quick else 32)
    loaded = pool.adopt(PipelineKey("sd15-shaped-random", "text2img", "cuda", "float16"), _sd15_shaped_pipeline("cuda"))
    shape = BatchShape(512, 512, args.gpu_steps, 7.5)
    await _compare("SD-1.5-shaped random UNet on cuda (fp16)", loaded, shape, gpu_count, args.max_batch)
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
