"""GPU end to end, in one go: extraction per video-second and the flow backend with and without
torch.compile. Meant for a machine with a CUDA GPU and this repo ``pip install -e .``-ed (needs
nothing else); finishes within --budget seconds (default 450, i.e. under 8 minutes).

    python -m bench.bench_gpu_e2e [--videos DIR] [--out DIR] [--budget 450] [--device cuda]

Parts, each in its own subprocess under a timeout taken from what is left of the budget (a part
that fails or times out is reported and the next one still runs):

1. ``flow``    -- torch TV-L1 pairs/s on real 224² pairs at batch 256 and 1024 (eager), and the
   fused CPU backend with one thread per core on the same pairs, both against OpenCV single-thread
   timed in the same part (ratios), with EPE / quantised agreement against OpenCV.
2. ``e2e``     -- a real clip (test.mp4 under --videos): decode alone, flow alone (the whole clip
   in one batch), I3D RGB + flow alone (batch 8, random weights: same cost as real ones), and the
   pipelined ``extract_video_features`` with (a) flow_backend=torch on the GPU and (b)
   flow_backend=fused on the CPU cores with I3D on the GPU; seconds per video-second for each.
3. ``compile`` -- torch TV-L1 with ``compile=True`` at batch 1024: compilation time (first call)
   reported separately from the steady-state pairs/s.

Everything printed also goes to ``OUT/gpu_e2e.json`` (one object per part) and
``OUT/gpu_e2e.md`` (tables ready for docs/performance.md). On a CPU-only machine
``--device cpu --pairs 8 --batches 4`` runs the same code paths as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEOS = os.environ.get("SHARED_VIDEOS", str(ROOT.parent / "shared" / "data" / "videos"))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def part_flow(args: argparse.Namespace) -> dict:
    import numpy as np

    from bench.bench_flow import agreement, clip_pairs, opencv_serial, take
    from core.threads import usable_cores
    from extractors.tvl1_fused import tvl1_fused_batch, warm_up
    from extractors.tvl1_torch import tvl1_flow_batch

    prev_all, nxt_all, used = clip_pairs(Path(args.videos), (args.size, args.size))
    out: dict = {"clips": used, "real_pairs": len(prev_all)}
    cvp, cvn = take(prev_all, nxt_all, args.cv_pairs)
    ref, t_cv = opencv_serial(cvp, cvn)
    out["opencv_1thread_pairs_s"] = cv_rate = len(cvp) / t_cv
    print(f"opencv 1 thread: {cv_rate:.2f} pairs/s ({len(cvp)} pairs)", flush=True)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        n = max(args.pairs, batch)
        tp, tn = take(prev_all, nxt_all, n)
        tvl1_flow_batch(tp[: min(batch, 8)], tn[: min(batch, 8)], device=args.device)  # warm-up
        _sync(args.device)
        t = time.perf_counter()
        flows = [
            tvl1_flow_batch(tp[s : s + batch], tn[s : s + batch], device=args.device, max_batch=batch)
            for s in range(0, n, batch)
        ]
        _sync(args.device)
        el = time.perf_counter() - t
        k = min(len(ref), n)
        ag = agreement(np.concatenate(flows)[:k], ref[:k])
        rows.append(dict(backend=f"torch {args.device}", batch=batch, pairs=n, seconds=el, pairs_s=n / el, **ag))
        print(f"torch {args.device} batch {batch}: {n / el:.1f} pairs/s = {n / el / cv_rate:.1f}x opencv", flush=True)
    threads = usable_cores()
    warm_up()
    n = max(args.cv_pairs, 4 * threads)
    fp, fn = take(prev_all, nxt_all, n)
    t = time.perf_counter()
    fused = tvl1_fused_batch(fp, fn, threads=threads)
    el = time.perf_counter() - t
    k = min(len(ref), n)
    ag = agreement(fused[:k], ref[:k])
    rows.append(dict(backend=f"fused CPU, {threads} threads", batch=1, pairs=n, seconds=el, pairs_s=n / el, **ag))
    print(f"fused, {threads} threads: {n / el:.1f} pairs/s = {n / el / cv_rate:.1f}x opencv", flush=True)
    out["rows"] = rows
    return out


def part_compile(args: argparse.Namespace) -> dict:
    from bench.bench_flow import clip_pairs, take
    from extractors.tvl1_torch import tvl1_flow_batch

    prev_all, nxt_all, _ = clip_pairs(Path(args.videos), (args.size, args.size))
    batch = int(args.batches.split(",")[-1])
    tp, tn = take(prev_all, nxt_all, max(args.pairs, batch))
    t = time.perf_counter()
    tvl1_flow_batch(tp[:batch], tn[:batch], device=args.device, compile=True, max_batch=batch)
    _sync(args.device)
    first = time.perf_counter() - t  # compilation + one run
    second = float("inf")
    for _ in range(2):  # the batch shrinks as pairs converge: later calls may still specialise
        t = time.perf_counter()
        tvl1_flow_batch(tp[:batch], tn[:batch], device=args.device, compile=True, max_batch=batch)
        _sync(args.device)
        second = min(second, time.perf_counter() - t)
    print(f"compile: first call {first:.1f} s, steady {batch / second:.1f} pairs/s (batch {batch})", flush=True)
    return dict(batch=batch, first_call_s=first, compile_s=max(first - second, 0.0), steady_pairs_s=batch / second)


def part_e2e(args: argparse.Namespace) -> dict:
    import numpy as np

    from extractors.checkpoints import random_i3d
    from extractors.decode import DecodeStats, iter_frames
    from extractors.flow import compute_flow
    from extractors.settings import ExtractSettings
    from extractors.snippets import snippet_arrays
    from extractors.transforms import resize_crop, rgb_to_gray
    from extractors.tvl1_fused import warm_up
    from extractors.video_features import I3DRunner, extract_video_features

    clips = sorted(Path(args.videos).rglob("test.mp4")) or sorted(Path(args.videos).rglob("*.mp4"))
    if not clips:
        raise SystemExit(f"no .mp4 under {args.videos}")
    video = clips[0]
    s = ExtractSettings(
        random_backbone=True,
        device=args.device,
        flow_backend="torch",
        batch_size=8,
        crop=args.size,
        resize_short=max(args.size, 256 if args.size == 224 else args.size),
    )
    st = DecodeStats()
    t = time.perf_counter()
    frames = list(iter_frames(video, s.fps, lambda f: resize_crop(f, s.resize_short, s.crop), st))
    decode_s = time.perf_counter() - t
    dur = st.duration
    rgb = np.stack(frames)
    gray = rgb_to_gray(rgb)
    out: dict = {"video": str(video), "duration_s": dur, "frames": len(frames), "decode_s": decode_s}
    compute_flow(gray[:9], s)  # warm-up
    _sync(args.device)
    t = time.perf_counter()
    flow = compute_flow(gray, s)
    _sync(args.device)
    out["flow_torch_whole_clip_s"] = time.perf_counter() - t
    models = (random_i3d(3, 0), random_i3d(2, 0))
    run_rgb, run_flow = (I3DRunner(m, args.device, s.precision) for m in models)
    rs, fs = snippet_arrays(rgb, flow, s.frames_per_snippet)
    run_rgb(rs[:1]), run_flow(fs[:1])  # warm-up (cudnn autotune)
    _sync(args.device)
    t = time.perf_counter()
    for i in range(0, len(rs), s.batch_size):
        run_rgb(rs[i : i + s.batch_size])
        run_flow(fs[i : i + s.batch_size])
    _sync(args.device)
    out["i3d_s"] = time.perf_counter() - t
    out["snippets"] = len(rs)
    for name, settings in (("pipelined_torch_flow", s), ("pipelined_fused_flow", s.replace(flow_backend="fused"))):
        if settings.flow_backend == "fused":
            warm_up()
        t = time.perf_counter()
        res = extract_video_features(video, settings, models=(run_rgb.model, run_flow.model), progress=False)
        out[f"{name}_s"] = time.perf_counter() - t
        out[f"{name}_timings"] = res.timings
    for key in [k for k in out if k.endswith("_s") and k != "duration_s"]:
        out[key[:-2] + "_s_per_video_s"] = out[key] / dur
    print(json.dumps(out, indent=1), flush=True)
    return out


PARTS = {"flow": part_flow, "e2e": part_e2e, "compile": part_compile}
# Seconds a part may take at most, in running order; compile goes last (it took 103 s on an H100).
LIMITS = {"flow": 150, "e2e": 120, "compile": 240}


def markdown(results: dict) -> str:
    lines = []
    f = results.get("flow", {})
    if "rows" in f:
        cv = f["opencv_1thread_pairs_s"]
        lines += [
            f"TV-L1 at {results.get('size', 224)}² ({f['real_pairs']} real pairs from {len(f['clips'])} clips); OpenCV 1 thread {cv:.2f} pairs/s",
            "",
            "| backend | batch | pairs | pairs/s | × OpenCV 1 thread | EPE mean px | q8 equal |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in f["rows"]:
            lines.append(
                f"| {r['backend']} | {r['batch']} | {r['pairs']} | {r['pairs_s']:.1f} | {r['pairs_s'] / cv:.1f} | "
                f"{r['epe_mean']:.4f} | {100 * r['q_exact']:.2f}% |"
            )
    c = results.get("compile", {})
    if "steady_pairs_s" in c:
        lines += [
            "",
            f"torch.compile, batch {c['batch']}: first call {c['first_call_s']:.1f} s "
            f"(compilation ≈ {c['compile_s']:.1f} s), then {c['steady_pairs_s']:.1f} pairs/s",
        ]
    e = results.get("e2e", {})
    if "duration_s" in e:
        lines += [
            "",
            f"End to end, {Path(e['video']).name} ({e['duration_s']:.2f} s, {e['snippets']} snippets):",
            "",
            "| stage | seconds | seconds per video-second |",
            "|---|---:|---:|",
        ]
        for key, name in (
            ("decode_s", "decode + resample + crop"),
            ("flow_torch_whole_clip_s", "torch TV-L1, whole clip in one batch"),
            ("i3d_s", "I3D RGB + flow, batch 8"),
            ("pipelined_torch_flow_s", "pipelined, torch flow (GPU) + I3D (GPU)"),
            ("pipelined_fused_flow_s", "pipelined, fused flow (CPU cores) + I3D (GPU)"),
        ):
            if key in e:
                lines.append(f"| {name} | {e[key]:.2f} | {e[key] / e['duration_s']:.3f} |")
    for name, r in results.items():
        if isinstance(r, dict) and "error" in r:
            lines.append(f"\n{name}: {r['error']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default=DEFAULT_VIDEOS, help="folder searched for real clips (env SHARED_VIDEOS)")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_e2e"))
    ap.add_argument("--budget", type=float, default=450, help="seconds for all parts together")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pairs", type=int, default=1024, help="pairs per torch flow timing")
    ap.add_argument("--batches", default="256,1024")
    ap.add_argument("--cv-pairs", type=int, default=16)
    ap.add_argument("--size", type=int, default=224, help="crop size (smaller only for a CPU smoke run)")
    ap.add_argument("--parts", default="flow,e2e,compile")
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)  # internal: run one part here
    args = ap.parse_args()

    if args.part:  # child: run one part, print its JSON on the last line
        result = PARTS[args.part](args)
        print("RESULT " + json.dumps(result))
        return 0

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch.cuda.is_available() is False (use --device cpu for a smoke run)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "-"
    print(f"torch {torch.__version__}, GPU {gpu}, {os.cpu_count()} CPUs, budget {args.budget:.0f} s", flush=True)
    start = time.monotonic()
    results: dict = {"env": {"torch": torch.__version__, "gpu": gpu, "cpus": os.cpu_count()}, "size": args.size}
    base = [a for a in sys.argv[1:]]
    for name in args.parts.split(","):
        left = args.budget - (time.monotonic() - start)
        limit = min(LIMITS[name], left - 5)
        if limit < 20:
            results[name] = {"error": f"skipped: {left:.0f} s of the budget left"}
            print(f"=== {name}: skipped ({left:.0f} s left)", flush=True)
            continue
        print(f"\n=== {name} (timeout {limit:.0f} s)", flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, __file__, *base, "--part", name],
                capture_output=True,
                text=True,
                timeout=limit,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            print(proc.stdout + proc.stderr[-3000:], flush=True)
            last = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            results[name] = json.loads(last[-1][7:]) if last else {"error": f"rc={proc.returncode}, no result"}
        except subprocess.TimeoutExpired as e:
            so = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            print(so, flush=True)
            results[name] = {"error": f"timed out after {limit:.0f} s"}
        results[name]["wall_s"] = time.monotonic() - t
    (out_dir / "gpu_e2e.json").write_text(json.dumps(results, indent=1))
    md = markdown(results)
    (out_dir / "gpu_e2e.md").write_text(md)
    print("\n" + md, flush=True)
    print(f"done in {time.monotonic() - start:.0f} s; results in {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
