"""TV-L1 throughput and agreement: OpenCV (1 thread; N processes) versus extractors.tvl1_torch
and extractors.tvl1_fused (numba, 1..N threads).

Frames are real consecutive frames of the clips under --videos (short side to 256, centre crop
224, gray; other resolutions resized from that crop or, for WxH, from the full frame), the way
the extractor prepares them. Pairs are reused cyclically when --pairs exceeds the clips' frames.
For every backend it prints pairs/s, the ratio to OpenCV single-thread measured in the same run,
and for the torch backends the end-point error (EPE) against OpenCV's flow on the first
--cv-pairs pairs plus the share of pixels whose 8-bit quantised flow (±20 px -> 0..255) agrees
exactly / within ±1.

For the fused backend it also prints the work per pair (pixel-iterations: iterations × pixels
summed over the pyramid, under OpenCV's stopping rule) and the time per pixel-iteration, the
inputs of the roofline estimate in docs/performance.md.

Needs only numpy, opencv-contrib-python-headless and torch (and numba for the fused backend).
    python -m bench.bench_flow --device cuda --resolutions 224 --pairs 512 --batch 256
    python -m bench.bench_flow --device cpu --resolutions 224 --cv-pairs 8 --fused-threads 1,2 --skip-torch
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from extractors.tvl1_torch import OPENCV_DEFAULTS, tvl1_flow_batch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEOS = os.environ.get("SHARED_VIDEOS", str(REPO.parent / "shared" / "data" / "videos"))
BOUND = 20.0


# ------------------------------------------------------------------------------------------------
# frames


def parse_resolution(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '340x256' -> (W=340, H=256). Returns (W, H)."""
    if "x" in text:
        w, h = text.lower().split("x")
        return int(w), int(h)
    return int(text), int(text)


def prepare(bgr: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    w, h = wh
    if w != h:  # non-square: the whole frame resized, as a 340x256 pipeline would
        return cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    fh, fw = bgr.shape[:2]
    s = 256 / min(fh, fw)
    bgr = cv2.resize(bgr, (round(fw * s), round(fh * s)), interpolation=cv2.INTER_LINEAR)
    fh, fw = bgr.shape[:2]
    y, x = (fh - 224) // 2, (fw - 224) // 2
    gray = cv2.cvtColor(bgr[y : y + 224, x : x + 224], cv2.COLOR_BGR2GRAY)
    if w != 224:
        gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    return gray


def clip_pairs(
    videos: Path, wh: tuple[int, int], max_pairs_per_clip: int = 64
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Consecutive-frame pairs from every readable clip under ``videos``."""
    paths = sorted(p for p in videos.rglob("*") if p.suffix.lower() in {".mp4", ".avi", ".mkv", ".webm", ".mov"})
    prev, nxt, used = [], [], []
    for path in paths:
        cap = cv2.VideoCapture(str(path))
        frames = []
        while len(frames) < max_pairs_per_clip + 1:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(prepare(bgr, wh))
        cap.release()
        if len(frames) >= 2:
            f = np.stack(frames)
            prev.append(f[:-1])
            nxt.append(f[1:])
            used.append(path.name)
    if not prev:
        raise SystemExit(f"no readable video clips under {videos} (set --videos or SHARED_VIDEOS)")
    # Interleave the clips (round robin) so that the first few pairs already cover every clip.
    order = sorted(((i, c) for c, p in enumerate(prev) for i in range(len(p))), key=lambda ic: (ic[0], ic[1]))
    return np.stack([prev[c][i] for i, c in order]), np.stack([nxt[c][i] for i, c in order]), used


def take(prev: np.ndarray, nxt: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n pairs, cycling through all pairs again when n exceeds them."""
    idx = np.arange(n) % len(prev)
    return prev[idx], nxt[idx]


# ------------------------------------------------------------------------------------------------
# backends


def _cv_algo():
    p = OPENCV_DEFAULTS
    # positional: OpenCV's Python keyword for inner iterations is misspelt ("innnerIterations")
    return cv2.optflow.DualTVL1OpticalFlow_create(
        p["tau"],
        p["lambda_"],
        p["theta"],
        p["nscales"],
        p["warps"],
        p["epsilon"],
        p["inner_iterations"],
        p["outer_iterations"],
        p["scale_step"],
        p["gamma"],
        p["median_filtering"],
    )


def opencv_serial(prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, float]:
    cv2.setNumThreads(1)
    algo = _cv_algo()
    algo.calc(prev[0], nxt[0], None)  # warm-up (allocations)
    t = time.perf_counter()
    out = np.stack([algo.calc(a, b, None) for a, b in zip(prev, nxt)])
    return out, time.perf_counter() - t


_WORKER_ALGO = None


def _init_worker() -> None:
    global _WORKER_ALGO
    cv2.setNumThreads(1)
    _WORKER_ALGO = _cv_algo()


def _worker(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return _WORKER_ALGO.calc(pair[0], pair[1], None)


def opencv_processes(prev: np.ndarray, nxt: np.ndarray, procs: int) -> float:
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs, initializer=_init_worker) as pool:
        pool.map(_worker, [(prev[0], nxt[0])] * procs)  # start and warm every worker
        t = time.perf_counter()
        pool.map(_worker, list(zip(prev, nxt)), chunksize=1)
        return time.perf_counter() - t


def fused_run(prev: np.ndarray, nxt: np.ndarray, threads: int) -> tuple[np.ndarray, float]:
    from extractors.tvl1_fused import tvl1_fused_batch, warm_up

    warm_up()  # numba compilation (or its on-disk cache), outside the timing
    t = time.perf_counter()
    out = tvl1_fused_batch(prev, nxt, threads=threads)
    return out, time.perf_counter() - t


def torch_run(prev: np.ndarray, nxt: np.ndarray, device: str, batch: int, compile: bool) -> tuple[np.ndarray, float]:
    # warm-up: CUDA context, allocator, kernels (and the compilation, with --compile)
    t = time.perf_counter()
    tvl1_flow_batch(prev[: min(batch, 4)], nxt[: min(batch, 4)], device=device, compile=compile)
    if compile:  # a batch of one is a separate specialisation for torch.compile: compile it now
        tvl1_flow_batch(prev[:1], nxt[:1], device=device, compile=compile)
    print(f"  (torch {device} warm-up: {time.perf_counter() - t:.1f}s)", flush=True)
    outs = []
    t = time.perf_counter()
    for s in range(0, len(prev), batch):
        outs.append(
            tvl1_flow_batch(prev[s : s + batch], nxt[s : s + batch], device=device, compile=compile, max_batch=batch)
        )
    return np.concatenate(outs), time.perf_counter() - t


# ------------------------------------------------------------------------------------------------
# agreement


def quantize(flow: np.ndarray) -> np.ndarray:
    return np.round((np.clip(flow, -BOUND, BOUND) + BOUND) * (255.0 / (2 * BOUND))).astype(np.int16)


def agreement(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    e = np.sqrt(((ours - ref) ** 2).sum(-1))
    dq = np.abs(quantize(ours) - quantize(ref))
    return dict(
        epe_mean=float(e.mean()),
        epe_p95=float(np.percentile(e, 95)),
        q_exact=float((dq == 0).mean()),
        q_pm1=float((dq <= 1).mean()),
    )


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="torch device for the main run: auto | cpu | cuda[:N]")
    ap.add_argument("--pairs", type=int, default=8, help="pairs timed on the torch device")
    ap.add_argument("--batch", default="8", help="pairs per tvl1_flow_batch call; a comma list runs each")
    ap.add_argument("--resolutions", default="112,224,340x256", help="comma list: 224 (square) or WxH")
    ap.add_argument(
        "--cv-pairs", type=int, default=8, help="pairs for OpenCV single-thread timing and as EPE reference"
    )
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="processes for the OpenCV pool (0 = skip)")
    ap.add_argument(
        "--cpu-pairs", type=int, default=2, help="pairs timed on torch CPU when --device is cuda (0 = skip)"
    )
    ap.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the iteration (see tvl1_flow_batch)")
    ap.add_argument("--skip-torch", action="store_true", help="do not time the torch backend")
    ap.add_argument(
        "--fused-threads", default="1", help="comma list of thread counts for the fused backend ('' or 0 = skip)"
    )
    ap.add_argument("--fused-pairs", type=int, default=16, help="pairs timed per fused run")
    ap.add_argument("--videos", default=DEFAULT_VIDEOS, help="folder searched for clips (env SHARED_VIDEOS)")
    args = ap.parse_args(argv)

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "-"
    print(
        f"torch {torch.__version__} (CPU threads {torch.get_num_threads()}), OpenCV {cv2.__version__}, "
        f"{os.cpu_count()} CPUs, GPU {gpu}"
    )
    print("TV-L1 parameters: OpenCV defaults " + ", ".join(f"{k}={v}" for k, v in OPENCV_DEFAULTS.items()))

    rows = []
    for res in args.resolutions.split(","):
        wh = parse_resolution(res.strip())
        label = f"{wh[0]}x{wh[1]}"
        prev_all, nxt_all, used = clip_pairs(Path(args.videos), wh)
        print(f"\n[{label}] {len(prev_all)} real pairs from {len(used)} clips ({', '.join(used)})", flush=True)

        cvp, cvn = take(prev_all, nxt_all, args.cv_pairs)
        ref, t_cv = opencv_serial(cvp, cvn)
        cv_rate = len(cvp) / t_cv
        rows.append((label, "opencv, 1 thread", len(cvp), 1, t_cv, cv_rate, None))
        print(f"  opencv 1 thread: {cv_rate:.2f} pairs/s", flush=True)

        if args.procs > 0:
            pp, pn = take(prev_all, nxt_all, max(args.procs * 2, args.cv_pairs))
            t = opencv_processes(pp, pn, args.procs)
            rows.append((label, f"opencv, {args.procs} processes", len(pp), 1, t, len(pp) / t, None))
            print(f"  opencv {args.procs} processes: {len(pp) / t:.2f} pairs/s", flush=True)

        for threads in [int(x) for x in str(args.fused_threads).split(",") if x.strip() and int(x) > 0]:
            fp, fn = take(prev_all, nxt_all, args.fused_pairs)
            out, t = fused_run(fp, fn, threads)
            k = min(len(out), len(ref))
            ag = agreement(out[:k], ref[:k])
            same = sum(bool(np.array_equal(out[i], ref[i])) for i in range(k))
            name = f"fused, {threads} thread{'s' if threads > 1 else ''}"
            rows.append((label, name, len(fp), 1, t, len(fp) / t, (ag, k)))
            print(
                f"  {name}: {len(fp) / t:.2f} pairs/s; EPE vs OpenCV on {k} pairs: mean {ag['epe_mean']:.2e} px, "
                f"quantised equal {100 * ag['q_exact']:.3f}%; bit-identical pairs {same}/{k}",
                flush=True,
            )
            if threads == 1:
                from extractors.tvl1_fused import pixel_iterations

                work = pixel_iterations(fp, fn)
                print(
                    f"  fused work: {work.mean() / 1e6:.2f} M pixel-iterations per pair (min {work.min() / 1e6:.2f}, "
                    f"max {work.max() / 1e6:.2f}); {t / work.sum() * 1e9:.2f} ns per pixel-iteration on one thread",
                    flush=True,
                )

        runs = (
            [] if args.skip_torch else [(device, max(args.pairs, int(b)), int(b)) for b in str(args.batch).split(",")]
        )
        if device.startswith("cuda") and args.cpu_pairs > 0 and not args.skip_torch:
            runs.append(("cpu", args.cpu_pairs, args.cpu_pairs))
        for dev, n, batch in runs:
            tp, tn = take(prev_all, nxt_all, max(n, 1))
            out, t = torch_run(tp, tn, dev, batch, args.compile)
            # EPE on the pairs OpenCV computed (the torch run starts with the same pairs)
            k = min(len(out), len(ref))
            ag = agreement(out[:k], ref[:k])
            name = f"torch {dev}" + (" compiled" if args.compile else "")
            rows.append((label, name, len(tp), batch, t, len(tp) / t, (ag, k)))
            print(
                f"  {name} (batch {batch}): {len(tp) / t:.2f} pairs/s; EPE vs OpenCV on {k} pairs: "
                f"mean {ag['epe_mean']:.4f} px, p95 {ag['epe_p95']:.4f} px; quantised equal "
                f"{100 * ag['q_exact']:.2f}%, within ±1 {100 * ag['q_pm1']:.3f}%",
                flush=True,
            )

    print(
        "\n| resolution | backend | pairs | batch | seconds | pairs/s | × opencv 1 thread | EPE mean px | EPE p95 px | q8 equal | q8 ±1 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = {}
    for label, name, n, batch, t, rate, ag in rows:
        if name == "opencv, 1 thread":
            base[label] = rate
        ratio = rate / base[label]
        if ag is None:
            acc = "| - | - | - | - |"
        else:
            a, _k = ag
            acc = f"| {a['epe_mean']:.4f} | {a['epe_p95']:.4f} | {100 * a['q_exact']:.2f}% | {100 * a['q_pm1']:.3f}% |"
        print(f"| {label} | {name} | {n} | {batch} | {t:.2f} | {rate:.2f} | {ratio:.2f} {acc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
