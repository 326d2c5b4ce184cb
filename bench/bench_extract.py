"""Benchmark of per-video extraction: each stage alone, their sum, and the pipelined run.

    python -m bench.bench_extract [VIDEO] [--seconds S] [--crop 224] [--workers N] [--device cpu|cuda]

Stages, all on the same (optionally trimmed) clip and settings:
  decode  -- PyAV decode + 25 fps resampling + resize/crop (frames/s)
  flow    -- OpenCV TV-L1, 1 worker (on --flow-pairs-1 pairs) and N workers (all pairs) (pairs/s)
  i3d     -- RGB and flow I3D per stream at each --batch-sizes (snippets/s)
  e2e     -- extractors.video_features.extract_video_features with N flow workers (pipelined)

It prints the sequential sum of stage times (decode + flow[N] + I3D rgb + I3D flow), the
pipelined wall time, seconds per video-second, and the ratio pipelined / slowest stage
(target <= 1.2). Numbers are only comparable within one run: other processes on the machine
change them. The I3D uses a seeded random backbone (same cost as the real weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_VIDEO = ROOT.parent / "shared/data/videos/mmaction2/tests/data/test.mp4"


def trim(video: Path, seconds: float, out: Path) -> Path:
    """Re-encode the first ``seconds`` of ``video`` at its own size and rate (near-lossless)."""
    import av

    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        sv = src.streams.video[0]
        rate = sv.average_rate or Fraction(25)
        ov = dst.add_stream("libx264", rate=rate)
        ov.width, ov.height, ov.pix_fmt = sv.codec_context.width, sv.codec_context.height, "yuv420p"
        ov.options = {"crf": "1"}
        for i, frame in enumerate(src.decode(sv)):
            if i >= int(seconds * rate):
                break
            for p in ov.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                dst.mux(p)
        for p in ov.encode():
            dst.mux(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    ap.add_argument("--seconds", type=float, default=0, help="use only the first S seconds (0 = whole clip)")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--resize-short", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="flow processes for the N-worker runs (0 = cores)")
    ap.add_argument("--flow-pairs-1", type=int, default=12, help="pairs timed with a single worker")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--batch-size", type=int, default=8, help="batch used in the stage sum and pipelined run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--flow-backend", default="opencv", choices=["opencv", "fused", "torch"])
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from extractors.checkpoints import random_i3d
    from extractors.decode import DecodeStats, iter_frames
    from extractors.flow import compute_flow
    from extractors.settings import ExtractSettings
    from extractors.snippets import snippet_arrays
    from extractors.transforms import resize_crop, rgb_to_gray
    from extractors.video_features import I3DRunner, extract_video_features

    video = Path(args.video)
    tmpdir = tempfile.TemporaryDirectory()
    if args.seconds > 0:
        video = trim(video, args.seconds, Path(tmpdir.name) / "clip.mp4")
    s = ExtractSettings(
        crop=args.crop,
        resize_short=args.resize_short,
        random_backbone=True,
        flow_workers=args.workers,
        batch_size=args.batch_size,
        device=args.device,
        flow_backend=args.flow_backend,
    )
    n_workers = s.num_flow_workers
    r: dict[str, float | str | int] = {
        "video": str(args.video),
        "seconds_used": args.seconds or "all",
        "crop": args.crop,
        "device": args.device,
        "workers": n_workers,
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "load_avg_start": os.getloadavg()[0],
    }

    # decode
    st = DecodeStats()
    t = time.perf_counter()
    frames = [f for f in iter_frames(video, s.fps, lambda f: resize_crop(f, s.resize_short, s.crop), st)]
    r["decode_s"] = time.perf_counter() - t
    rgb = np.stack(frames)
    gray = rgb_to_gray(rgb)
    n, dur = len(frames), st.duration
    r.update(n_frames=n, duration_s=dur, decode_fps=n / r["decode_s"])
    print(f"clip: {dur:.2f} s, {n} frames at 25 fps, {args.crop}x{args.crop}; {n_workers} flow workers")
    print(f"decode+resample+crop : {r['decode_s']:7.2f} s   {r['decode_fps']:8.1f} frames/s")

    # flow, 1 worker on a subset, N workers on everything
    k1 = min(args.flow_pairs_1, n - 1)
    t = time.perf_counter()
    compute_flow(gray[: k1 + 1], s.replace(flow_workers=1))
    r["flow1_pairs_per_s"] = k1 / (time.perf_counter() - t)
    print(f"flow, 1 worker       : {r['flow1_pairs_per_s']:7.3f} pairs/s  ({k1} pairs)")
    t = time.perf_counter()
    compute_flow(gray[: k1 + 1], s)  # same pairs, N workers: the speed-up, measured back to back
    r["flowN_subset_pairs_per_s"] = k1 / (time.perf_counter() - t)
    print(
        f"flow, {n_workers} workers      : {r['flowN_subset_pairs_per_s']:7.3f} pairs/s  ({k1} pairs, incl. pool start)"
        f"  speed-up x{r['flowN_subset_pairs_per_s'] / r['flow1_pairs_per_s']:.2f}"
    )
    t = time.perf_counter()
    flow = compute_flow(gray, s)
    r["flow_s"] = time.perf_counter() - t
    r["flowN_pairs_per_s"] = (n - 1) / r["flow_s"]
    print(
        f"flow, {n_workers} workers, all : {r['flowN_pairs_per_s']:7.3f} pairs/s  ({n - 1} pairs, {r['flow_s']:.1f} s)"
    )

    # I3D per stream
    rs, fs = snippet_arrays(rgb, flow, s.frames_per_snippet)
    runners = {
        "rgb": I3DRunner(random_i3d(3, 0), s.device if s.device != "auto" else "cpu", s.precision),
        "flow": I3DRunner(random_i3d(2, 0), s.device if s.device != "auto" else "cpu", s.precision),
    }
    data = {"rgb": rs, "flow": fs}
    sizes = sorted({int(b) for b in args.batch_sizes.split(",")} | {args.batch_size})
    for name, run in runners.items():
        run(data[name][:1])  # warm-up (allocations, cudnn autotune)
        for b in sizes:
            t = time.perf_counter()
            for i in range(0, len(data[name]), b):
                run(data[name][i : i + b])
            if s.device.startswith("cuda"):
                torch.cuda.synchronize()
            el = time.perf_counter() - t
            r[f"i3d_{name}_b{b}_snippets_per_s"] = len(data[name]) / el
            if b == args.batch_size:
                r[f"i3d_{name}_s"] = el
            print(
                f"I3D {name:<4} batch {b:<3}    : {len(data[name]) / el:7.2f} snippets/s  ({len(data[name])} snippets, {el:.1f} s)"
            )

    stages = {"decode": r["decode_s"], "flow": r["flow_s"], "i3d_rgb": r["i3d_rgb_s"], "i3d_flow": r["i3d_flow_s"]}
    r["sequential_sum_s"] = sum(stages.values())
    slowest = max(stages, key=stages.get)

    # pipelined end to end
    t = time.perf_counter()
    res = extract_video_features(video, s, models=(runners["rgb"].model, runners["flow"].model), progress=False)
    r["pipelined_s"] = time.perf_counter() - t
    assert res.n_snippets == len(rs)
    r["pipelined_s_per_video_s"] = r["pipelined_s"] / dur
    r["sequential_s_per_video_s"] = r["sequential_sum_s"] / dur
    r["pipelined_over_slowest"] = r["pipelined_s"] / stages[slowest]
    r["pipelined_over_sum"] = r["pipelined_s"] / r["sequential_sum_s"]
    r["slowest_stage"] = slowest
    r["load_avg_end"] = os.getloadavg()[0]
    print(
        f"sequential sum       : {r['sequential_sum_s']:7.1f} s  ({r['sequential_s_per_video_s']:.2f} s per video-second)"
    )
    print(f"pipelined wall       : {r['pipelined_s']:7.1f} s  ({r['pipelined_s_per_video_s']:.2f} s per video-second)")
    print(
        f"pipelined / slowest stage ({slowest}, {stages[slowest]:.1f} s): {r['pipelined_over_slowest']:.2f}   "
        f"pipelined / sum: {r['pipelined_over_sum']:.2f}"
    )
    print(
        f"load average start/end: {r['load_avg_start']:.1f} / {r['load_avg_end']:.1f} (other processes share the cores)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
