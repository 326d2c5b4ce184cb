"""Roofline of the fused TV-L1 iteration on this CPU: the kernel against three floors measured
in the same run, one thread.

    python -m bench.bench_roofline [--size 224] [--iters 60]

* ``iteration``  -- extractors._tvl1_kernels.inner_iterations on one pyramid level of random
  data (epsilon 0, so exactly --iters iterations): ns per pixel-iteration of the real kernel,
  without the warps and medians around it.
* ``stream``     -- the same bytes moved (10 float32 planes read, 6 written per pixel) with one
  addition per value: the cache/memory floor for a 224² level (~3 MB of planes).
* ``div+sqrt``   -- only the iteration's 5 float32 divisions and 2 float64 square roots per pixel
  (exact IEEE operations, which OpenCV's results depend on), on cache-resident data: the floor
  set by the divider units.
* ``fma peak``   -- float32 fused multiply-adds on registers (16 independent chains): the
  arithmetic peak the issue's estimate ("60 operations at FMA peak") refers to.

Prints ns per pixel-iteration for each and the iteration's achieved GFLOP/s (~72 float
operations per pixel-iteration, counted from the kernel) against the FMA peak.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numba
import numpy as np

from extractors import _tvl1_kernels as kk

OPS_PER_PIXEL_ITERATION = 72  # counted in docs/performance.md, "Roofline"


@numba.njit(nogil=True, boundscheck=False, error_model="numpy")
def stream(u1, u2, p11, p12, p21, p22, a, b, c, d, iters):
    h, w = u1.shape
    one = np.float32(1.0)
    for _ in range(iters):
        for y in range(h):
            for x in range(w):
                s = a[y, x] + b[y, x] + c[y, x] + d[y, x]
                u1[y, x] = u1[y, x] + s
                u2[y, x] = u2[y, x] + one
                p11[y, x] = p11[y, x] + s
                p12[y, x] = p12[y, x] + one
                p21[y, x] = p21[y, x] + s
                p22[y, x] = p22[y, x] + one


@numba.njit(nogil=True, boundscheck=False, error_model="numpy")
def divsqrt(row, out, reps):
    w = row.shape[0]
    one = np.float32(1.0)
    for _ in range(reps):
        for x in range(w):
            v = row[x]
            g1 = np.float32(math.sqrt(np.float64(v) * np.float64(v) + 1.0))
            g2 = np.float32(math.sqrt(np.float64(v) * np.float64(v) + 2.0))
            out[x] = (v / (one + g1) + v / (one + g2) + (v + one) / (one + g1) + (v - one) / (one + g2)) + one / v
    return out


@numba.njit(nogil=True, boundscheck=False, fastmath=True)
def fma(n):
    acc = np.zeros(16 * 16, np.float32)  # 16 chains of 16 lanes
    m = np.float32(0.999999)
    c = np.float32(1e-6)
    for _ in range(n):
        for j in range(acc.shape[0]):
            acc[j] = acc[j] * m + c
    return acc.sum()


def best(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=60)
    args = ap.parse_args()
    h = w = args.size
    rng = np.random.default_rng(0)
    planes = lambda: rng.standard_normal((h, w)).astype(np.float32)  # noqa: E731
    u1, u2, p11, p12, p21, p22 = (planes() * 0.1 for _ in range(6))
    i1wx, i1wy, rho_c = planes() * 10, planes() * 10, planes() * 5
    grad = i1wx * i1wx + i1wy * i1wy
    f32 = np.float32
    args_it = (u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, f32(0.045), f32(0.3), f32(0.25 / 0.3), f32(0))
    kk.inner_iterations(*args_it, 1)
    stream(u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, 1)
    row = rng.uniform(1, 2, w).astype(np.float32)
    out = np.empty_like(row)
    divsqrt(row, out, 1)
    fma(1)

    px = h * w * args.iters
    t_it = best(lambda: kk.inner_iterations(*args_it, args.iters))
    t_st = best(lambda: stream(u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, args.iters))
    t_ds = best(lambda: divsqrt(row, out, h * args.iters))
    n_fma = 20000
    t_fma = best(lambda: fma(n_fma))
    fma_gflops = n_fma * 256 * 2 / t_fma / 1e9
    achieved = OPS_PER_PIXEL_ITERATION * px / t_it / 1e9
    print(f"numba {numba.__version__}, level {h}×{w}, {args.iters} iterations, one thread")
    print("| kernel | ns per pixel-iteration | × iteration |")
    print("|---|---:|---:|")
    for name, t in (("iteration (fused TV-L1)", t_it), ("stream floor (64 B)", t_st), ("div+sqrt floor", t_ds)):
        print(f"| {name} | {t / px * 1e9:.2f} | {t / t_it:.2f} |")
    print(
        f"\niteration: {achieved:.1f} GFLOP/s at {OPS_PER_PIXEL_ITERATION} ops per pixel-iteration; "
        f"float32 FMA peak measured {fma_gflops:.1f} GFLOP/s -> {100 * achieved / fma_gflops:.1f}% of peak; "
        f"bytes moved {64 * px / t_it / 1e9:.1f} GB/s (stream floor {64 * px / t_st / 1e9:.1f} GB/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
