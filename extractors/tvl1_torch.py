"""Batched TV-L1 optical flow in PyTorch, following OpenCV's ``cv::optflow::DualTVL1OpticalFlow``.

OpenCV's CPU TV-L1 (the Zach/Pock/Bischof primal-dual scheme in the variant of Sánchez Pérez et
al., IPOL 2013) is ~90% of feature-extraction time and the pip build has no CUDA. This module
runs the same algorithm on a batch of frame pairs, on CPU or CUDA, reproducing OpenCV's numerical
choices so that I3D sees the flow distribution it was trained on:

* pyramid: ``cv::resize(INTER_LINEAR)`` by ``scale_step`` per level, sizes rounded to nearest,
  half-pixel-centred sampling with the scale ``1/scale_step`` (not ``W/W'``), edge replication;
  no Gaussian pre-smoothing (OpenCV's tvl1flow.cpp does none); levels smaller than 16 px are
  dropped; the flow starts at zero on the coarsest level and is carried to the next finer level
  by the same bilinear resize (scale ``W_coarse/W_fine``) and multiplied by ``1/scale_step``;
* per level: centred gradient of ``I1`` (one-sided *half* differences on the border rows and
  columns, as OpenCV writes them), then ``warps`` times: ``remap(INTER_CUBIC, BORDER_CONSTANT=0)``
  of ``I1`` and of its gradients at ``x + u`` (exact float positions as in OpenCV 5, cubic
  kernel A = -0.75, taps outside the image read as 0); the dual variables are reset only once
  per level;
* per warp: up to ``outer_iterations`` × ``inner_iterations`` iterations, each one thresholding
  step (v), divergence of p (backward differences, zero outside), primal step (u), forward
  gradient (zero on the last row/column) and dual step; the loop stops as soon as the summed
  squared update of u is <= ``epsilon² · H·W`` (checked after every iteration, as OpenCV does);
* a ``median_filtering``² (5×5) median of u, exact with edge replication like cv::medianBlur,
  at the start of every outer iteration.

Batching: each pair keeps its own stopping state. A pair that has converged in the current warp is
frozen (its u and p are no longer updated), so every pair gets exactly the iterations it would get
alone; converged pairs are dropped from the working batch when the active share falls, and
the device→host sync for "are all converged?" happens only every ``check_every`` iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.device import resolve_device

__all__ = ["tvl1_flow_batch", "pyramid_sizes", "OPENCV_DEFAULTS"]

# OpenCV's DualTVL1OpticalFlow defaults (tvl1flow.cpp constructor); ints and floats, hence Any.
OPENCV_DEFAULTS: dict[str, Any] = dict(
    tau=0.25,
    lambda_=0.15,
    theta=0.3,
    nscales=5,
    warps=5,
    epsilon=0.01,
    inner_iterations=30,
    outer_iterations=10,
    scale_step=0.8,
    gamma=0.0,
    median_filtering=5,
)
_PARAM_NAMES = tuple(OPENCV_DEFAULTS)

_MIN_LEVEL_SIZE = 16  # tvl1flow.cpp stops building the pyramid below 16 px
_FLT_EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class _Params:
    tau: float
    lambda_: float
    theta: float
    nscales: int
    warps: int
    epsilon: float
    inner_iterations: int
    outer_iterations: int
    scale_step: float
    gamma: float
    median_filtering: int


def _resolve_params(params: Any) -> _Params:
    """Read the TV-L1 fields from ``params`` (a ``TVL1Params`` or anything with those attributes);
    ``None`` means OpenCV's defaults."""
    if params is None:
        return _Params(**OPENCV_DEFAULTS)
    missing = [n for n in _PARAM_NAMES if not hasattr(params, n)]
    if missing:
        raise TypeError(f"TV-L1 params object {type(params).__name__} lacks field(s) {', '.join(missing)}")
    ints = ("nscales", "warps", "inner_iterations", "outer_iterations", "median_filtering")
    raw = {n: getattr(params, n) for n in _PARAM_NAMES}
    for name in ints:
        if int(raw[name]) != raw[name]:
            raise ValueError(f"tvl1.{name}={raw[name]!r} must be an integer")
    fields: dict[str, Any] = {n: int(v) if n in ints else float(v) for n, v in raw.items()}
    p = _Params(**fields)
    if p.gamma != 0:
        raise ValueError(f"tvl1.gamma={p.gamma}: only gamma=0 (no illumination term) is implemented")
    if not 0 < p.scale_step < 1:
        raise ValueError(f"tvl1.scale_step={p.scale_step} must be in (0, 1)")
    for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
        if int(getattr(p, name)) < 1:
            raise ValueError(f"tvl1.{name}={getattr(p, name)} must be >= 1")
    if p.median_filtering not in (0, 1, 3, 5):
        # OpenCV's float medianBlur supports only 3 and 5; <= 1 disables the filter.
        raise ValueError(f"tvl1.median_filtering={p.median_filtering} must be 0, 1, 3 or 5")
    if p.tau <= 0 or p.theta <= 0 or p.lambda_ <= 0 or p.epsilon < 0:
        raise ValueError(f"tvl1 tau/theta/lambda_ must be > 0 and epsilon >= 0, got {p}")
    return p


# --------------------------------------------------------------------------------------------
# pyramid (cv::resize INTER_LINEAR on float images)


def pyramid_sizes(height: int, width: int, nscales: int, scale_step: float) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level, finest first, as OpenCV builds them (cvRound of size·step,
    stop below 16 px)."""
    sizes = [(height, width)]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        # saturate_cast<int>(double) is cvRound: round half to even
        nh, nw = int(np.rint(h * scale_step)), int(np.rint(w * scale_step))
        if nh < _MIN_LEVEL_SIZE or nw < _MIN_LEVEL_SIZE:
            break
        sizes.append((nh, nw))
    return sizes


def _linear_taps(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cv::resize INTER_LINEAR along one axis: for each destination index, the two source
    indices and the float32 weight of the second one; ``scale`` = source px per destination px."""
    i0 = np.zeros(dst, np.int64)
    frac = np.zeros(dst, np.float32)
    for d in range(dst):
        f = np.float32((d + 0.5) * scale - 0.5)  # OpenCV computes this in double, stores float
        s = int(np.floor(f))
        f = np.float32(f - np.float32(s))
        if s < 0:
            s, f = 0, np.float32(0)
        if s >= src - 1:
            s, f = src - 1, np.float32(0)
        i0[d], frac[d] = s, f
    return i0, np.minimum(i0 + 1, src - 1), frac


def _resize(img: torch.Tensor, out_hw: tuple[int, int], scale_yx: tuple[float, float]) -> torch.Tensor:
    """Bilinear resize of [..., H, W] like cv::resize: horizontal pass, then vertical, each
    ``a·(1-f) + b·f`` in float32. Elementwise on purpose: a matmul formulation would run in TF32
    on CUDA wherever a process enables it (torch.set_float32_matmul_precision), a 1e-3 error."""
    out = img
    for dim, (n_out, scale) in ((-1, (out_hw[1], scale_yx[1])), (-2, (out_hw[0], scale_yx[0]))):
        i0, i1, f = _linear_taps(out.shape[dim], n_out, scale)
        shape = (-1, 1) if dim == -2 else (-1,)
        f_t = torch.from_numpy(f).to(img.device).reshape(shape)
        g_t = torch.from_numpy(np.float32(1) - f).to(img.device).reshape(shape)
        a = out.index_select(dim, torch.from_numpy(i0).to(img.device))
        c = out.index_select(dim, torch.from_numpy(i1).to(img.device))
        out = a * g_t + c * f_t
    return out


# --------------------------------------------------------------------------------------------
# finite differences with OpenCV's border conventions


def _centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5·(central difference); on the border rows/columns 0.5·(one-sided difference)."""
    dx = torch.empty_like(img)
    dy = torch.empty_like(img)
    dx[..., :, 1:-1] = 0.5 * (img[..., :, 2:] - img[..., :, :-2])
    dx[..., :, 0] = 0.5 * (img[..., :, 1] - img[..., :, 0])
    dx[..., :, -1] = 0.5 * (img[..., :, -1] - img[..., :, -2])
    dy[..., 1:-1, :] = 0.5 * (img[..., 2:, :] - img[..., :-2, :])
    dy[..., 0, :] = 0.5 * (img[..., 1, :] - img[..., 0, :])
    dy[..., -1, :] = 0.5 * (img[..., -1, :] - img[..., -2, :])
    return dx, dy


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero on the last column (x) / last row (y)."""
    ux = torch.zeros_like(u)
    uy = torch.zeros_like(u)
    # out= into views: two kernels per derivative instead of a padded copy
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=ux[..., :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=uy[..., :-1, :])
    return ux, uy


def _divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence with p taken as zero left of / above the image."""
    dpx = px.clone()
    dpx[..., :, 1:] -= px[..., :, :-1]
    dpy = py.clone()
    dpy[..., 1:, :] -= py[..., :-1, :]
    return dpx.add_(dpy)


# --------------------------------------------------------------------------------------------
# cv::remap(INTER_CUBIC, BORDER_CONSTANT 0) with float maps


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """[..., 4] cubic convolution weights (A = -0.75, OpenCV's interpolateCubic) for offsets t."""
    a = -0.75
    t1 = t + 1.0
    s = 1.0 - t
    c0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a
    c1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    c2 = ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0
    return torch.stack([c0, c1, c2, 1.0 - c0 - c1 - c2], -1)


def _remap_cubic(imgs: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """Sample [B, C, H, W] images at (x + u1, y + u2) like cv::remap with INTER_CUBIC and a zero
    constant border: 4×4 taps around floor(position), taps outside the image count as 0.
    (OpenCV 5 samples at the exact float position; 4.x rounded it to 1/32 px.)"""
    b, c, h, w = imgs.shape
    dev = imgs.device
    xs = torch.arange(w, device=dev, dtype=torch.float32)
    ys = torch.arange(h, device=dev, dtype=torch.float32).unsqueeze(-1)
    mx = xs + u1
    my = ys + u2
    fx0 = torch.floor(mx)
    fy0 = torch.floor(my)
    wx = _cubic_weights(mx - fx0)  # [B, H, W, 4]
    wy = _cubic_weights(my - fy0)
    # Four zero pixels around the image. Clamping the first tap to [-4, size] keeps all four taps
    # inside the padded image and changes nothing: a position clamped there had all its taps
    # outside the image, and it still reads only zeros.
    pw = w + 8
    x0 = fx0.clamp(-5, w + 4).to(torch.int64).sub_(1).clamp_(-4, w)
    y0 = fy0.clamp(-5, h + 4).to(torch.int64).sub_(1).clamp_(-4, h)
    base = ((y0 + 4) * pw + (x0 + 4)).reshape(b, 1, h * w)
    padded = F.pad(imgs, (4, 4, 4, 4)).reshape(b, c, (h + 8) * pw)
    out = torch.zeros_like(imgs)
    for i in range(4):
        row = torch.zeros_like(imgs)
        for j in range(4):
            idx = (base + (i * pw + j)).expand(b, c, h * w)
            tap = torch.gather(padded, 2, idx).reshape(b, c, h, w)
            row += tap * wx[..., j].unsqueeze(1)
        out += row * wy[..., i].unsqueeze(1)
    return out


# --------------------------------------------------------------------------------------------
# median filter (cv::medianBlur on float: exact median, replicated border)


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort on n (a power of two) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


Program = tuple[list[tuple[int, bool, int, int]], list[int]]


def _selection_program(
    n_in: int, wires: int, input_wires: list[int], n_low: int, known_le: list[tuple[int, int]], ranks: list[int]
) -> Program:
    """Min/max program that yields the given ranks (0 = smallest) of n_in values.

    A Batcher sorting network on ``wires`` wires (inputs on ``input_wires``, the other wires
    padded with n_low -inf and the rest +inf), simplified: a comparator whose order is already
    implied (by the padding, by ``known_le`` facts about the inputs, or by earlier comparators,
    tracked as a "≤" relation between values) is dropped or becomes a free swap, and only the
    min/max results the requested outputs depend on are kept. Returns ([(dst, is_max, a, b)],
    output value ids); value ids 0..n_in-1 are the inputs."""
    pad = [w for w in range(wires) if w not in input_wires]
    kind: dict[int, tuple] = {}
    on_wire = [0] * wires
    for i, w in enumerate(input_wires):
        kind[i] = ("in",)
        on_wire[w] = i
    for j, w in enumerate(pad):
        kind[n_in + j] = ("lo",) if j < n_low else ("hi",)
        on_wire[w] = n_in + j
    cap = wires + 2 * len(_batcher_pairs(wires))
    le = np.zeros((cap, cap), bool)
    np.fill_diagonal(le, True)
    for v, kv in kind.items():
        if kv[0] == "lo":
            le[v, :] = True
        if kv[0] == "hi":
            le[:, v] = True
    for a, b in known_le:
        le[a, b] = True
    nid = wires
    for i, j in _batcher_pairs(wires):
        a, b = on_wire[i], on_wire[j]
        if le[a, b]:
            continue
        if le[b, a]:
            on_wire[i], on_wire[j] = b, a
            continue
        lo, hi = nid, nid + 1
        nid += 2
        kind[lo], kind[hi] = ("min", a, b), ("max", a, b)
        below_a, below_b = le[:nid, a].copy(), le[:nid, b].copy()
        above_a, above_b = le[a, :nid].copy(), le[b, :nid].copy()
        le[:nid, lo] |= below_a & below_b
        le[:nid, hi] |= below_a | below_b
        le[lo, :nid] |= above_a | above_b
        le[hi, :nid] |= above_a & above_b
        le[lo, lo] = le[hi, hi] = le[lo, hi] = True
        on_wire[i], on_wire[j] = lo, hi
    outs = [on_wire[n_low + r] for r in ranks]
    needed: set[int] = set()
    stack = list(outs)
    while stack:
        v = stack.pop()
        if v in needed:
            continue
        needed.add(v)
        if kind[v][0] in ("min", "max"):
            stack += [kind[v][1], kind[v][2]]
    assert all(kind[v][0] in ("in", "min", "max") for v in needed), "a padding value reached an output"
    ops = [(v, kind[v][0] == "max", kind[v][1], kind[v][2]) for v in sorted(needed) if kind[v][0] != "in"]
    return ops, outs


def _run_program(prog: Program, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Evaluate a min/max program, dropping each intermediate after its last use."""
    ops, outs = prog
    last_use: dict[int, int] = {}
    for t, (_d, _m, a, b) in enumerate(ops):
        last_use[a] = last_use[b] = t
    keep = set(outs)
    vals: dict[int, torch.Tensor] = dict(enumerate(inputs))
    for t, (d, is_max, a, b) in enumerate(ops):
        vals[d] = torch.maximum(vals[a], vals[b]) if is_max else torch.minimum(vals[a], vals[b])
        for v in (a, b):
            if last_use.get(v) == t and v not in keep:
                vals.pop(v, None)
    return [vals[o] for o in outs]


_MEDIAN_PROGRAMS: dict[int, tuple[Program, Program]] = {}


def _median_programs(k: int) -> tuple[Program, Program]:
    """(sort of a k-column, median of k sorted k-columns) programs, built once per k."""
    if k not in _MEDIAN_PROGRAMS:
        n = k * k
        wires = 1 << (n - 1).bit_length()
        col_wires = 1 << (k - 1).bit_length()
        column_sort = _selection_program(k, col_wires, list(range(k)), 0, [], list(range(k)))
        # Inputs in column-major order, each column ascending; for 5×5 this wire layout (found by
        # a small search) leaves 140 min/max operations, against 336 for forgetful selection.
        layout = (
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30]
            if k == 5
            else list(range(n))
        )
        facts = [(c * k + r1, c * k + r2) for c in range(k) for r1 in range(k) for r2 in range(r1 + 1, k)]
        n_low = (wires - n) // 2
        window = _selection_program(n, wires, layout, n_low, facts, [(n - 1) // 2])
        _MEDIAN_PROGRAMS[k] = (column_sort, window)
    return _MEDIAN_PROGRAMS[k]


def _median(u: torch.Tensor, k: int) -> torch.Tensor:
    """k×k median of [B, ..., H, W] with edge replication (k odd), as cv::medianBlur computes it.

    Each vertical run of k pixels is sorted once (shared by the k windows that contain it), then
    a pruned selection network over the k sorted columns of each window picks the median: only
    elementwise min/max on shifted views, no k²-fold copy of the data (``Tensor.median`` over
    unfolded windows was ~17× slower on CPU)."""
    column_sort, window = _median_programs(k)
    return _median_net(u, k, column_sort, window)


def _median_net(u: torch.Tensor, k: int, column_sort: Program, window: Program) -> torch.Tensor:
    r = k // 2
    h, w = u.shape[-2:]
    lead = u.shape[:-2]
    padded = F.pad(u.reshape(-1, 1, h, w), (r, r, r, r), mode="replicate").reshape(*lead, h + 2 * r, w + 2 * r)
    ranked = _run_program(column_sort, [padded[..., i : i + h, :] for i in range(k)])  # [.., H, W+2r] each
    taps = [ranked[rank][..., c : c + w] for c in range(k) for rank in range(k)]
    return _run_program(window, taps)[0].contiguous()


def _median_batched(u: torch.Tensor, k: int, compiled: bool, chunk: int = 128) -> torch.Tensor:
    """The median over a batch; in eager mode in chunks of pairs, which bounds the memory held by
    the network's intermediates (compiled, the network is one fused kernel with none)."""
    column_sort, window = _median_programs(k)
    if compiled:
        return _compiled(_median_net)(u, k, column_sort, window)
    if u.shape[0] <= chunk:
        return _median_net(u, k, column_sort, window)
    return torch.cat([_median_net(u[s : s + chunk], k, column_sort, window) for s in range(0, u.shape[0], chunk)])


# --------------------------------------------------------------------------------------------
# one pyramid level

_STATE = ("u", "px", "py")  # what the iterations update: flow and the dual variables


def _solve_level(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u: torch.Tensor,
    p: _Params,
    check_every: int,
    compiled: bool = False,
) -> torch.Tensor:
    """Run all warps at one level. i0, i1: [B, H, W]; u: [B, 2, H, W] (u1, u2), refined and
    returned. The two flow components travel as channels of one tensor (and the dual variables
    as px = (p11, p21), py = (p12, p22)) so that each step is one kernel for both."""
    iteration = _compiled(_iteration) if compiled else _iteration
    b, h, w = i0.shape
    dev = i0.device
    l_t = float(np.float32(p.lambda_ * p.theta))
    taut = float(np.float32(p.tau / p.theta))
    theta = float(np.float32(p.theta))
    scaled_eps = float(np.float32(p.epsilon * p.epsilon * h * w))
    max_iter = p.outer_iterations * p.inner_iterations
    # With a check after every iteration, converged pairs leave the working set at once, so no
    # iteration ever runs on a converged pair and no masking is needed.
    masked = check_every > 1

    i1x, i1y = _centered_gradient(i1)
    i1_stack = torch.stack([i1, i1x, i1y], 1)  # [B, 3, H, W]
    zeros = torch.zeros_like(u)
    full = dict(u=u, px=zeros, py=zeros)  # the dual variables are reset once per level

    for _warp in range(p.warps):
        warped = _remap_cubic(i1_stack, full["u"][:, 0], full["u"][:, 1])
        i1w, i1wx, i1wy = warped.unbind(1)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * full["u"][:, 0] - i1wy * full["u"][:, 1] - i0
        grad_ok = grad > _FLT_EPSILON
        fixed = dict(
            i1wxy=warped[:, 1:].contiguous(),
            rho_c=rho_c,
            lt_grad=l_t * grad,
            neg_lt_grad=-l_t * grad,
            safe_grad=torch.where(grad_ok, grad, torch.ones_like(grad)),
            grad_ok=grad_ok,
        )
        st = dict(full)
        full = {k: v.clone() for k, v in full.items()}  # results of parked pairs land here
        idx = torch.arange(b, device=dev)  # batch positions of the working set
        active = torch.ones(b, dtype=torch.bool, device=dev)

        for it in range(max_iter):
            if it % p.inner_iterations == 0 and p.median_filtering > 1:
                med = _median_batched(st["u"], p.median_filtering, compiled)
                st["u"] = torch.where(active[:, None, None, None], med, st["u"]) if masked else med
            new, err = iteration(st, fixed, l_t, theta, taut)
            if masked:
                a4 = active[:, None, None, None]
                st = {k: torch.where(a4, new[k], st[k]) for k in _STATE}
                active = active & (err > scaled_eps)
            else:
                st = new
                active = err > scaled_eps
            if (it + 1) % check_every == 0 and it + 1 < max_iter:
                n_active = int(active.sum())
                if n_active == 0:
                    break
                if n_active < active.numel() and (not masked or n_active <= 0.75 * active.numel()):
                    # Park the converged pairs and shrink the working set.
                    # (index_select/index_copy_: boolean-mask indexing is ~20× slower on CPU)
                    done = torch.nonzero(~active).squeeze(1)
                    keep = torch.nonzero(active).squeeze(1)
                    for k in _STATE:
                        full[k].index_copy_(0, idx.index_select(0, done), st[k].index_select(0, done))
                    idx = idx.index_select(0, keep)
                    st = {k: v.index_select(0, keep) for k, v in st.items()}
                    fixed = {k: v.index_select(0, keep) for k, v in fixed.items()}
                    active = active.index_select(0, keep)
        for k in _STATE:
            full[k].index_copy_(0, idx, st[k])
    return full["u"]


def _iteration(
    st: dict[str, torch.Tensor], fx: dict[str, torch.Tensor], l_t: float, theta: float, taut: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One primal-dual iteration, in OpenCV's order: estimateV, divergence, estimateU (with the
    squared-update error), forwardGradient, estimateDualVariables. Returns the new state and the
    per-pair error [B] (float64)."""
    u, i1wxy = st["u"], fx["i1wxy"]
    rho = fx["rho_c"] + (i1wxy[:, 0] * u[:, 0] + i1wxy[:, 1] * u[:, 1])
    fi = torch.where(
        rho < fx["neg_lt_grad"],
        l_t,
        torch.where(rho > fx["lt_grad"], -l_t, torch.where(fx["grad_ok"], -rho / fx["safe_grad"], 0.0)),
    )
    n = (u + fi.unsqueeze(1) * i1wxy) + theta * _divergence(st["px"], st["py"])
    d = n - u
    d = d * d
    err = (d[:, 0] + d[:, 1]).sum(dim=(-2, -1), dtype=torch.float64)
    ux, uy = _forward_gradient(n)
    ng = 1.0 + taut * torch.hypot(ux, uy)
    new = dict(u=n, px=(st["px"] + taut * ux) / ng, py=(st["py"] + taut * uy) / ng)
    return new, err


_COMPILED: dict[Any, Any] = {}


def _compiled(fn: Any) -> Any:
    """``torch.compile`` of an elementwise-heavy step, built once per process. Dynamic shapes,
    because the batch shrinks as pairs converge and every pyramid level has its own size."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


# --------------------------------------------------------------------------------------------
# public entry point


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim != 3:
        raise ValueError(f"{name} must be a [B, H, W] grayscale batch, got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise ValueError(f"{name} must be uint8 (0..255) or floating point (0..1), got {t.dtype}")
    return t


def tvl1_flow_batch(
    prev: np.ndarray | torch.Tensor,
    nxt: np.ndarray | torch.Tensor,
    params: Any = None,
    *,
    device: str | torch.device = "cpu",
    check_every: int | None = None,
    compile: bool = False,
    max_batch: int | None = None,
) -> np.ndarray:
    """TV-L1 flow of B frame pairs, matching ``cv2.optflow.DualTVL1OpticalFlow_create(...).calc``.

    Args:
        prev, nxt: [B, H, W] grayscale frames, uint8 (0..255) or float (0..1, scaled by 255 as
            OpenCV does), numpy or torch, same shape.
        params: a ``TVL1Params`` (or any object with its fields); ``None`` = OpenCV defaults.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        check_every: iterations between checks for "all pairs converged" (a device→host sync);
            affects speed only, never the result. ``None``: 1 on CPU (a check is free there and
            OpenCV's stopping rule typically ends a warp after 5-15 iterations), 2 on CUDA.
        max_batch: pairs solved together; longer inputs (a whole video) are split into chunks of
            this size, which bounds memory (~10 MB per 224² pair in flight). ``None``: 64 on CPU
            (batching gains little there), 512 on CUDA. Never changes the result.
        compile: fuse the per-iteration arithmetic and the median with ``torch.compile``
            (inductor: C++ on CPU, Triton on CUDA). Same algorithm; on CPU the result was
            bit-identical to eager mode and ~2× faster, but the first call compiles for minutes
            on a small CPU (tens of seconds on a GPU host), so it pays off only for long runs.

    Returns:
        [B, H, W, 2] float32 (dx, dy) in pixels with ``prev(x) ≈ nxt(x + flow)``.
    """
    p = _resolve_params(params)
    a = _as_tensor(prev, "prev")
    c = _as_tensor(nxt, "nxt")
    if a.shape != c.shape:
        raise ValueError(f"prev and nxt shapes differ: {tuple(a.shape)} vs {tuple(c.shape)}")
    b, h, w = a.shape
    if h < 3 or w < 3:
        raise ValueError(f"frames must be at least 3×3 pixels, got {h}×{w}")
    if check_every is not None and check_every < 1:
        raise ValueError(f"check_every={check_every} must be >= 1")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch={max_batch} must be >= 1")
    if b == 0:
        return np.zeros((0, h, w, 2), np.float32)
    dev = torch.device(resolve_device(str(device)))
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 2
    if max_batch is None:
        max_batch = 64 if dev.type == "cpu" else 512
    out = np.empty((b, h, w, 2), np.float32)
    for s in range(0, b, max_batch):
        out[s : s + max_batch] = _flow_chunk(a[s : s + max_batch], c[s : s + max_batch], p, dev, check_every, compile)
    return out


def _flow_chunk(
    a: torch.Tensor, c: torch.Tensor, p: _Params, dev: torch.device, check_every: int, compile: bool
) -> np.ndarray:
    b, h, w = a.shape

    def to_float(t: torch.Tensor) -> torch.Tensor:
        t = t.to(dev)
        return t.float() if t.dtype == torch.uint8 else t.float() * 255.0

    with torch.no_grad():
        levels0 = [to_float(a)]
        levels1 = [to_float(c)]
        sizes = pyramid_sizes(h, w, p.nscales, p.scale_step)
        step = 1.0 / p.scale_step
        for hw in sizes[1:]:
            levels0.append(_resize(levels0[-1], hw, (step, step)))
            levels1.append(_resize(levels1[-1], hw, (step, step)))

        ch, cw = sizes[-1]
        u = torch.zeros(b, 2, ch, cw, device=dev, dtype=torch.float32)
        up = float(np.float32(1.0 / p.scale_step))
        for s in range(len(sizes) - 1, -1, -1):
            u = _solve_level(levels0[s], levels1[s], u, p, check_every, compile)
            if s == 0:
                break
            fh, fw = sizes[s - 1]
            u = _resize(u, (fh, fw), (ch / fh, cw / fw)) * up
            ch, cw = fh, fw
        return u.permute(0, 2, 3, 1).contiguous().cpu().numpy()
