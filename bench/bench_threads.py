"""Extraction wall time, quiet and next to one busy process: the thread budget against the old
thread setup, measured back to back in one run.

    python -m bench.bench_threads [VIDEO] [--seconds 2] [--flow-backend fused] [--rounds 1]

Configurations (same clip, settings and random-weight I3D):
  budget -- extractors.budget.plan_extraction: flow workers + I3D torch threads = the budget;
  old    -- what extraction did before the budget: a pool of one flow worker per core, and I3D
            with torch's default intra-op threads (one per core), i.e. twice the cores.
Conditions: quiet (whatever else runs on the machine), and with one extra process spinning on
one core for the whole run. Printed: wall seconds per configuration and condition, seconds per
video-second, and the ratio loaded / quiet (target <= 2). Quiet and loaded runs alternate
(--rounds times) so that slow drifts of the machine's other load hit both alike.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_VIDEO = ROOT.parent / "shared/data/videos/mmaction2/tests/data/test.mp4"


def _spin(stop) -> None:
    """The competing load: one pure-Python busy loop (one core)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_once(video: Path, settings, models, mode: str) -> float:
    import torch

    from core.threads import cpu_budget
    from extractors.flow import FlowRunner
    from extractors.video_features import extract_video_features

    t = time.perf_counter()
    if mode == "budget":
        extract_video_features(video, settings, models=models, progress=False)
    else:  # the old setup: one flow worker per core in a pool, torch at its default thread count
        cores = cpu_budget()
        with FlowRunner(settings, workers=cores) as runner:
            extract_video_features(
                video, settings, models=models, runner=runner, progress=False, i3d_threads=torch.get_num_threads()
            )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    ap.add_argument("--seconds", type=float, default=2.0, help="first S seconds of the clip (0 = all)")
    ap.add_argument("--flow-backend", default="fused", choices=["opencv", "fused"])
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=1, help="quiet/loaded alternations per configuration")
    ap.add_argument("--modes", default="budget,old")
    args = ap.parse_args()

    import torch

    from bench.bench_extract import trim
    from core.threads import cpu_budget
    from extractors.budget import plan_extraction
    from extractors.checkpoints import random_i3d
    from extractors.settings import ExtractSettings
    from extractors.video_features import extract_video_features

    tmp = tempfile.TemporaryDirectory()
    video = Path(args.video)
    if args.seconds > 0:
        video = trim(video, args.seconds, Path(tmp.name) / "clip.mp4")
    s = ExtractSettings(crop=args.crop, random_backbone=True, device="cpu", flow_backend=args.flow_backend)
    models = (random_i3d(3, 0), random_i3d(2, 0))
    plan = plan_extraction(s, "cpu")
    print(
        f"budget {cpu_budget()} threads (torch default {torch.get_num_threads()}); plan: {plan.flow_workers} flow "
        f"workers + {plan.i3d_threads} I3D threads; old: {cpu_budget()} flow workers + {torch.get_num_threads()} "
        f"I3D threads; backend {args.flow_backend}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    res = extract_video_features(video, s, models=models, progress=False)  # warm-up: compile, page in
    duration = res.stats.duration
    times: dict[tuple[str, str], list[float]] = {}
    ctx = mp.get_context("spawn")
    for _ in range(args.rounds):
        for mode in args.modes.split(","):
            times.setdefault((mode, "quiet"), []).append(run_once(video, s, models, mode))
            stop = ctx.Event()
            spinner = ctx.Process(target=_spin, args=(stop,), daemon=True)
            spinner.start()
            try:
                time.sleep(0.5)
                times.setdefault((mode, "loaded"), []).append(run_once(video, s, models, mode))
            finally:
                stop.set()
                spinner.join(timeout=10)
            print(
                f"  {mode}: quiet {times[(mode, 'quiet')][-1]:.1f} s, one busy process {times[(mode, 'loaded')][-1]:.1f} s "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    print(f"\nclip {duration:.2f} s at {args.crop}², flow backend {args.flow_backend}")
    print("| threads | quiet s | loaded s | quiet s per video-s | loaded s per video-s | loaded / quiet |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in args.modes.split(","):
        q = min(times[(mode, "quiet")])
        lo = min(times[(mode, "loaded")])
        print(f"| {mode} | {q:.1f} | {lo:.1f} | {q / duration:.2f} | {lo / duration:.2f} | {lo / q:.2f} |")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
