"""Pruning quality against a judge that is wrong on purpose: the curve behind "how good must a judge be?".

    python bench/noisy_judge_bench.py                   # 8 seeds, noise 0..0.5, both pruning rules (~10 min on 2 cores)
    python bench/noisy_judge_bench.py --quick           # 2 seeds, noise 0 and 0.3
    python bench/noisy_judge_bench.py --noise 0,0.2 --seeds 4

The built-in ``intermt`` graph (images shrunk to 32 px, 1 step, tiny random-weight
pipelines) runs on the in-process simulator at its default defect rates, once per judge noise
level (the share of judge lines scored wrong, see ``Simulator(judge_noise=...)``) and per
pruning rule: ``rank`` is the built-in as shipped (keep 2 of 3 by weighted score), ``threshold``
adds a minimum of 2 on each weighted dimension. Each run's pruning-quality report
(:mod:`interleaf.datasets.pruning_quality`) gives one row. The defect draws do not depend on
the judge, but which candidates survive does, so later turns' candidates differ between rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import load_average, machine

from interleaf import open_run
from interleaf.datasets.pruning_quality import PruningQuality, pruning_quality
from interleaf.run.reader import RunReader
from interleaf.state import Seed
from interleaf.testing.demo import demo_graph
from interleaf.testing.simulator import Simulator
from interleaf.testing.tiny_pipelines import ensure_tiny_pipeline

WEIGHTED = ("local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence")
PROMPTS = (
    "I want to repaint the front of this house. Which colours would suit it, and can you show me a version?",
    "Design a simple logo for a bakery called Morning Crumb and explain the idea behind it.",
    "Walk me through drawing a cartoon cat in four steps, with a picture for each step.",
    "Explain how tides work and show a diagram of the moon's pull.",
    "Plan a small balcony garden with herbs and show me how it could look.",
    "Show me a cosy reading corner for a small flat.",
    "Draw a lighthouse on a rocky coast at night.",
    "Design a poster for a neighbourhood bike repair day.",
)
SITUATIONS = ("stepwise incremental tasks", "unclear user understanding",
              "repeated attempts after unsatisfying answers", "open-ended companion chat")


def _graph(dest: Path, rule: str) -> Path:
    from ruamel.yaml import YAML

    path = demo_graph("intermt", dest, image_size=32, steps=1)
    if rule == "threshold":
        yaml = YAML(typ="rt", pure=True)
        data: Any = yaml.load(path.read_text(encoding="utf-8"))
        data["nodes"]["prune"]["params"]["thresholds"] = dict.fromkeys(WEIGHTED, 2)
        with path.open("w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
    return path


def _one(work: Path, rule: str, noise: float, seeds: list[Seed]) -> tuple[PruningQuality, float]:
    graph = _graph(work / f"{rule}-{noise}.yaml", rule)
    with Simulator(seed=0, judge_noise=noise) as sim:
        os.environ["INTERLEAF_API_BASE"] = sim.base_url
        started = time.perf_counter()
        run = open_run(graph, work / f"run-{rule}-{noise}")
        try:
            asyncio.run(run.arun_seeds(seeds))
        finally:
            asyncio.run(run.aclose())
            run.release()
        seconds = time.perf_counter() - started
    return pruning_quality(RunReader(run.store).dialogues()), seconds


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    -  "


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, noise 0 and 0.3")
    ap.add_argument("--seeds", type=int, default=None, help=f"seeds per run (max {len(PROMPTS)})")
    ap.add_argument("--noise", default=None, help="comma-separated judge noise levels")
    ap.add_argument("--rules", default="rank,threshold", help="pruning rules: rank, threshold")
    args = ap.parse_args()
    count = args.seeds or (2 if args.quick else 8)
    levels = [float(x) for x in (args.noise or ("0,0.3" if args.quick else "0,0.1,0.2,0.3,0.5")).split(",")]
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    seeds = [Seed(id=f"b{i}", prompt=PROMPTS[i % len(PROMPTS)], situation=SITUATIONS[i % len(SITUATIONS)])
             for i in range(count)]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="interleaf-noisy-judge-") as tmp:
        work = Path(tmp)
        os.environ.update({
            "OPENAI_API_KEY": "sk-bench-local", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "INTERLEAF_T2I_MODEL": str(ensure_tiny_pipeline(work / "models", kind="text2img")),
            "INTERLEAF_EDIT_MODEL": str(ensure_tiny_pipeline(work / "models", kind="instruct_pix2pix")),
        })
        for var, role in (("EXPANDER", "expand"), ("ASSISTANT", "assistant"), ("JUDGE", "judge"), ("USER_SIM", "user")):
            os.environ[f"INTERLEAF_{var}_MODEL"] = f"openai/sim-{role}"
        print(f"{count} seeds x intermt (k=3, keep 2, 4 turns); default defect rates; load {load_average()}")
        print("| rule | judge noise | defective pruned | of prunable | clean kept | pairs cleaner chosen | wall |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for rule in rules:
            for noise in levels:
                r, seconds = _one(work, rule, noise, seeds)
                print(f"| {rule} | {noise:.2f} | {_pct(r.defective_pruned, r.defective_candidates)} "
                      f"({r.defective_pruned}/{r.defective_candidates}) | "
                      f"{_pct(r.defective_pruned, r.defective_prunable)} | "
                      f"{_pct(r.clean_kept, r.clean_candidates)} ({r.clean_kept}/{r.clean_candidates}) | "
                      f"{_pct(r.pairs_cleaner_chosen, r.pairs)} ({r.pairs_cleaner_chosen}/{r.pairs}) | "
                      f"{seconds:.0f} s |", flush=True)
        print(f"load after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
