"""Two-stream I3D (OpenCV TV-L1 + I3D RGB/flow) vs RGB-only backbones on the same clip, one run.

    python -m bench.bench_backbones [VIDEO] [--seconds 2] [--backbones x3d_m,r2plus1d_18,s3d]
                                    [--workers 0] [--demo x3d_m] [--json OUT]

For each backbone it runs the real per-video extractor (extract_video_features for i3d,
pipelined with an N-process TV-L1 pool; extract_rgb_features for the others) on the first
``--seconds`` of the clip and prints wall seconds, CPU seconds (this process plus its
reaped children, i.e. the TV-L1 workers), CPU seconds per second of video, and the speed-up
in CPU time over two-stream I3D measured in the same run. Each network runs at its published
input size (i3d: short side 256, crop 224; the others: their contract, docs/extraction.md)
with seeded random weights, which cost the same as trained ones. Models are built before
the clock starts.

``--demo NAME`` also times the built-in demo (``luigi --module tasks RunAll``, fresh output
directory, 36 videos) with ``extract.backbone=NAME`` and with the default i3d, one after the
other, and prints their wall times and mAP (meaningless as accuracy: random backbones).

Numbers are only comparable within one run: other processes on the shared machine change them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_extract import DEFAULT_VIDEO, trim

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def settings_for(backbone: str, workers: int):
    from extractors.backbones import SPECS
    from extractors.settings import ExtractSettings

    if backbone == "i3d":
        return ExtractSettings(random_backbone=True, flow_workers=workers, device="cpu")
    c = SPECS[backbone].contract
    # Random weights take their geometry from resize_short/crop: set them to the contract's
    # (for a fixed-size resize such as 128x171 the short side gives the same crop cost).
    return ExtractSettings(
        backbone=backbone, random_backbone=True, resize_short=min(c.resize), crop=c.crop, device="cpu"
    )


def time_extraction(video: Path, backbone: str, workers: int) -> dict:
    import warnings

    from extractors.checkpoints import build_backbones
    from extractors.rgb_features import extract_rgb_features
    from extractors.video_features import extract_video_features

    s = settings_for(backbone, workers)
    models = build_backbones(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c0, t0 = cpu_seconds(), time.perf_counter()
        if s.needs_flow:
            res = extract_video_features(video, s, models=models, progress=False)
        else:
            res = extract_rgb_features(video, s, model=models[0], progress=False)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    dur = res.stats.duration
    return {
        "backbone": backbone,
        "snippets": int(res.rgb.shape[0]),
        "video_s": dur,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_s_per_video_s": cpu / dur,
        "wall_s_per_video_s": wall / dur,
    }


def time_demo(backbone: str) -> dict:
    """Wall time of the whole demo (synthesis to report) in a fresh directory, and its mAP."""
    out = Path(tempfile.mkdtemp(prefix=f"demo_{backbone}_"))
    cmd = [sys.executable, "-m", "luigi", "--module", "tasks", "RunAll", "--local-scheduler", "--output-dir", str(out)]
    if backbone != "i3d":
        cmd += ["--overrides", f"extract.backbone={backbone}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    metrics = sorted(out.glob("evaluate/*/metrics.json"))
    m = json.loads(metrics[-1].read_text()) if metrics else {}
    return {
        "backbone": backbone,
        "rc": proc.returncode,
        "wall_s": wall,
        "map": m.get("map"),
        "average_map": m.get("average_map"),
        "flow_files": len(list(out.glob("flow/*/*.h5"))),
        "output_dir": str(out),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    ap.add_argument("--seconds", type=float, default=2.0, help="use only the first S seconds (0 = whole clip)")
    ap.add_argument("--backbones", default="x3d_m,r2plus1d_18,s3d", help="RGB-only backbones to compare")
    ap.add_argument("--workers", type=int, default=0, help="TV-L1 processes for i3d (0 = one per core)")
    ap.add_argument("--demo", default="", help="also time the demo with this RGB-only backbone and with i3d")
    ap.add_argument("--demo-only", action="store_true", help="only the --demo timings, no clip extraction")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.demo_only:
        return print_demos(args.demo or "x3d_m", args.json)

    video = Path(args.video)
    if not video.is_file():
        print(f"error: {video}: no such video", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_backbones_"))
    if args.seconds > 0:
        video = trim(video, args.seconds, tmp / "clip.mp4")
    import torch

    print(
        f"clip {args.video} first {args.seconds or 'all'} s; cores {os.cpu_count()}, torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    rows = [time_extraction(video, "i3d", args.workers)]
    for b in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        rows.append(time_extraction(video, b, args.workers))
    base = rows[0]["cpu_s_per_video_s"]
    print(f"{'backbone':<12} {'snippets':>8} {'wall s':>8} {'CPU s':>8} {'CPU-s/video-s':>14} {'x faster (CPU)':>15}")
    for r in rows:
        r["speedup_cpu"] = base / r["cpu_s_per_video_s"]
        print(
            f"{r['backbone']:<12} {r['snippets']:>8} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
            f"{r['cpu_s_per_video_s']:>14.2f} {r['speedup_cpu']:>15.1f}"
        )
    out = {"video": str(args.video), "seconds": args.seconds, "extraction": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.demo:
        print_demos(args.demo, args.json and f"{args.json}.demo.json")
    return 0


def print_demos(backbone: str, json_path: str | None) -> int:
    """Time the demo with ``backbone`` and with i3d, one after the other, and print both."""
    print(f"demo timings (load average {os.getloadavg()[0]:.1f}):")
    demos = [time_demo(backbone), time_demo("i3d")]
    for d in demos:
        print(
            f"demo {d['backbone']:<10} rc {d['rc']} wall {d['wall_s']:.0f} s, flow files {d['flow_files']}, "
            f"mAP@0.1:0.7 {d['map']} (avg {d['average_map']})"
        )
    print(f"wall-time ratio i3d / {backbone}: {demos[1]['wall_s'] / demos[0]['wall_s']:.1f}")
    if json_path:
        Path(json_path).write_text(json.dumps(demos, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
