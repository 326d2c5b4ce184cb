"""Fused CPU TV-L1: OpenCV's ``DualTVL1OpticalFlow`` with each iteration as one pass over the pixels.

OpenCV's TV-L1 (``opencv_contrib/modules/optflow/src/tvl1flow.cpp``) runs five separate loops per
iteration (estimateV, divergence ×2, estimateU, forwardGradient ×2, estimateDualVariables), each
reading and writing whole planes, and the error sum of estimateU stops the compiler from
vectorising that loop. Here the iteration is one numba-compiled sweep over the rows:

* row ``r`` of the flow is updated (thresholding step, divergence of p, primal step) with the dual
  variables of rows ``r-1`` and ``r`` still at their old values, then
* the dual variables of row ``r-1`` are updated from the new flow of rows ``r-1`` and ``r``.

Updating p one row behind u lets everything happen in place with the exact data dependencies of
OpenCV's five passes, so the arithmetic is the same, operation for operation, in float32 (no
fused multiply-adds, no reassociation: numba compiles without fast-math), including OpenCV's
single-precision running sum of the squared update in row-major order, which decides when a warp
stops. The per-row work is split into a vectorisable loop and the (inherently sequential) sum.

Everything that is not the iteration (pyramid ``resize``, bicubic ``remap`` of I1 and its
gradient, ``medianBlur``) is done by calling the very same OpenCV functions that tvl1flow.cpp
calls, with OpenCV single-threaded. The result therefore agrees with OpenCV's flow to float
rounding and is usually bit-identical (see docs/performance.md for the measured agreement).

Pairs are independent; ``threads`` > 1 solves several pairs at once in Python threads (numba
kernels and OpenCV release the GIL), so every pair's result is the same whatever the thread count.

numba is a wheel-only PyPI dependency (no compiler needed at install time); the kernels are
compiled on first use (~10-20 s) and cached on disk (``cache=True``) for later processes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["tvl1_fused_batch", "numba_available", "pixel_iterations", "warm_up"]

_MIN_LEVEL_SIZE = 16  # tvl1flow.cpp stops building the pyramid below 16 px


def numba_available() -> bool:
    """True when numba can be imported (the fused backend's only extra dependency)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _require_numba() -> Any:
    try:
        import numba
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "extract.flow_backend=fused needs numba (a wheel-only PyPI package): `pip install numba`, "
            "or set extract.flow_backend=opencv"
        ) from e
    return numba


# --------------------------------------------------------------------------------------------
# numba kernels, built once per process (and cached on disk by numba)

_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """The compiled kernels (imported on first use, so that numba is needed only by this backend)."""
    if not _KERNELS:
        _require_numba()
        from extractors import _tvl1_kernels as kk

        _KERNELS.update(
            centered_gradient=kk.centered_gradient, grad_rho=kk.grad_rho, inner_iterations=kk.inner_iterations
        )
    return _KERNELS


# --------------------------------------------------------------------------------------------
# the solver for one pair (Python glue around the kernels and OpenCV calls)


def _solve_pair(i0: np.ndarray, i1: np.ndarray, p: Any, k: dict[str, Any]) -> tuple[np.ndarray, int]:
    """TV-L1 flow [H, W, 2] of one float32 pair in OpenCV's order; also the pixel-iterations run
    (iterations × pixels, summed over the pyramid: the unit of work of the roofline estimate)."""
    import cv2

    i0s, i1s = [i0], [i1]
    for _ in range(1, p.nscales):
        a = cv2.resize(i0s[-1], None, fx=p.scale_step, fy=p.scale_step, interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(i1s[-1], None, fx=p.scale_step, fy=p.scale_step, interpolation=cv2.INTER_LINEAR)
        if a.shape[0] < _MIN_LEVEL_SIZE or a.shape[1] < _MIN_LEVEL_SIZE:
            break
        i0s.append(a)
        i1s.append(b)
    h, w = i0s[-1].shape
    u1 = np.zeros((h, w), np.float32)
    u2 = np.zeros((h, w), np.float32)
    l_t = np.float32(p.lambda_ * p.theta)
    taut = np.float32(p.tau / p.theta)
    theta = np.float32(p.theta)
    up = np.float32(1.0 / p.scale_step)
    total = 0
    for s in range(len(i0s) - 1, -1, -1):
        total += _solve_level(i0s[s], i1s[s], u1, u2, p, l_t, theta, taut, k)
        if s == 0:
            break
        fh, fw = i0s[s - 1].shape
        u1 = cv2.resize(u1, (fw, fh), interpolation=cv2.INTER_LINEAR) * up
        u2 = cv2.resize(u2, (fw, fh), interpolation=cv2.INTER_LINEAR) * up
    return np.stack([u1, u2], -1), total


def _solve_level(i0, i1, u1, u2, p, l_t, theta, taut, k) -> int:
    """tvl1flow.cpp procOneScale: refines u1, u2 in place; returns the pixel-iterations run."""
    import cv2

    h, w = i0.shape
    scaled_eps = np.float32(p.epsilon * p.epsilon * h * w)
    i1x = np.empty_like(i1)
    i1y = np.empty_like(i1)
    k["centered_gradient"](i1, i1x, i1y)
    zeros = lambda: np.zeros((h, w), np.float32)  # noqa: E731
    p11, p12, p21, p22 = zeros(), zeros(), zeros(), zeros()  # reset once per level
    grad, rho_c = np.empty_like(i0), np.empty_like(i0)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    total = 0
    for _warp in range(p.warps):
        map1 = xs + u1
        map2 = ys + u2
        i1w = cv2.remap(i1, map1, map2, cv2.INTER_CUBIC)
        i1wx = cv2.remap(i1x, map1, map2, cv2.INTER_CUBIC)
        i1wy = cv2.remap(i1y, map1, map2, cv2.INTER_CUBIC)
        k["grad_rho"](i0, i1w, i1wx, i1wy, u1, u2, grad, rho_c)
        error = np.float32(np.inf)
        n_outer = 0
        while error > scaled_eps and n_outer < p.outer_iterations:
            if p.median_filtering > 1:
                u1[...] = cv2.medianBlur(u1, p.median_filtering)
                u2[...] = cv2.medianBlur(u2, p.median_filtering)
            error, n = k["inner_iterations"](
                u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, l_t, theta, taut, scaled_eps, p.inner_iterations
            )
            total += int(n) * h * w
            n_outer += 1
    return total


# --------------------------------------------------------------------------------------------
# public entry point


def _as_float_frames(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"{name} must be a [B, H, W] grayscale batch, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        return (a * 255.0).astype(np.float32)  # OpenCV scales float input by 255
    raise ValueError(f"{name} must be uint8 (0..255) or floating point (0..1), got {a.dtype}")


def tvl1_fused_batch(prev: Any, nxt: Any, params: Any = None, *, threads: int = 1) -> np.ndarray:
    """TV-L1 flow of B frame pairs, matching ``cv2.optflow.DualTVL1OpticalFlow_create(...).calc``.

    Args:
        prev, nxt: [B, H, W] grayscale frames, uint8 (0..255) or float (0..1, scaled by 255 as
            OpenCV does), same shape.
        params: a ``TVL1Params`` (or any object with its fields); ``None`` = OpenCV's defaults.
        threads: pairs solved at the same time (Python threads; the kernels release the GIL).
            Changes speed only: every pair is solved alone, so the result never depends on it.

    Returns:
        [B, H, W, 2] float32 (dx, dy) in pixels with ``prev(x) ≈ nxt(x + flow)``.
    """
    from extractors.tvl1_torch import _resolve_params  # one validation for both backends

    p = _resolve_params(params)
    a = _as_float_frames(prev, "prev")
    c = _as_float_frames(nxt, "nxt")
    if a.shape != c.shape:
        raise ValueError(f"prev and nxt shapes differ: {a.shape} vs {c.shape}")
    b, h, w = a.shape
    if h < 3 or w < 3:
        raise ValueError(f"frames must be at least 3×3 pixels, got {h}×{w}")
    if int(threads) < 1:
        raise ValueError(f"threads={threads} must be >= 1")
    out = np.empty((b, h, w, 2), np.float32)
    if b == 0:
        return out
    k = _kernels()
    _single_thread_opencv()

    def one(i: int) -> None:
        out[i] = _solve_pair(np.ascontiguousarray(a[i]), np.ascontiguousarray(c[i]), p, k)[0]

    n_threads = min(int(threads), b)
    if n_threads == 1:
        for i in range(b):
            one(i)
    else:
        with ThreadPoolExecutor(n_threads, thread_name_prefix="tvl1-fused") as pool:
            list(pool.map(one, range(b)))
    return out


def pixel_iterations(prev: Any, nxt: Any, params: Any = None) -> np.ndarray:
    """Iterations × pixels summed over the pyramid, per pair [B] (int64): how much work each
    pair took under OpenCV's stopping rule (benchmarks divide time by it)."""
    from extractors.tvl1_torch import _resolve_params

    p = _resolve_params(params)
    a, c = _as_float_frames(prev, "prev"), _as_float_frames(nxt, "nxt")
    k = _kernels()
    _single_thread_opencv()
    return np.array([_solve_pair(np.ascontiguousarray(x), np.ascontiguousarray(y), p, k)[1] for x, y in zip(a, c)])


def _single_thread_opencv() -> None:
    """OpenCV's own thread pool would add threads beyond the caller's budget (remap, resize and
    medianBlur are parallel_for_ loops); the fused backend's parallelism is over pairs instead."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now, e.g. before timing."""
    tvl1_fused_batch(np.zeros((1, 20, 20), np.uint8), np.zeros((1, 20, 20), np.uint8))
