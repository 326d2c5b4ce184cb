"""Fused CPU TV-L1 (extractors/tvl1_fused.py) against OpenCV's DualTVL1 on real and synthetic pairs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from extractors import tvl1_fused
from extractors.flow import compute_flow
from extractors.settings import ExtractSettings, TVL1Params
from extractors.transforms import rgb_to_gray
from extractors.tvl1_fused import tvl1_fused_batch
from tests.test_tvl1_torch import CLIPS, clip_frames, epe, opencv_flow, quantize, shifted_pair
from tests.video_synth import moving_square_frames


def agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(mean end-point error in px, share of identical 8-bit quantised values)."""
    return float(epe(ours, ref).mean()), float((quantize(ours) == quantize(ref)).mean())


def real_pairs(shared_data: Path, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    prev, nxt = [], []
    for clip in CLIPS:
        f = clip_frames(shared_data / clip, count + 1, size, start=40)
        prev.append(f[:-1])
        nxt.append(f[1:])
    return np.concatenate(prev), np.concatenate(nxt)


def test_real_clips_agree_with_opencv(shared_data: Path):
    """The issue's bound: mean EPE <= 0.03 px before quantisation and >= 95 % identical
    quantised values (measured: bit-identical, see docs/performance.md)."""
    prev, nxt = real_pairs(shared_data, 3, 112)
    ours = tvl1_fused_batch(prev, nxt)
    ref = opencv_flow(prev, nxt)
    assert np.sqrt((ref**2).sum(-1)).mean() > 0.2, "clips should contain motion"
    mean_epe, q_equal = agreement(ours, ref)
    assert mean_epe <= 0.03, f"mean EPE {mean_epe:.4f} px"
    assert q_equal >= 0.95, f"quantised agreement {q_equal:.4f}"


@pytest.mark.slow
def test_real_clips_agree_with_opencv_at_224px(shared_data: Path):
    prev, nxt = real_pairs(shared_data, 4, 224)
    mean_epe, q_equal = agreement(tvl1_fused_batch(prev, nxt, threads=2), opencv_flow(prev, nxt))
    assert mean_epe <= 0.03, f"mean EPE {mean_epe:.4f} px"
    assert q_equal >= 0.95, f"quantised agreement {q_equal:.4f}"


@pytest.mark.parametrize("dx,dy", [(1.5, -0.75), (-2.0, 3.0)])
def test_recovers_known_shift(dx: float, dy: float):
    prev, nxt = shifted_pair(80, 96, dx, dy)
    flow = tvl1_fused_batch(prev[None], nxt[None])[0]
    assert flow.shape == (80, 96, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    np.testing.assert_allclose(inner[..., 0].mean(), dx, atol=0.1)
    np.testing.assert_allclose(inner[..., 1].mean(), dy, atol=0.1)


@pytest.mark.parametrize("h,w", [(3, 3), (5, 9), (15, 16), (17, 23), (37, 53)])
def test_odd_and_tiny_sizes_match_opencv(h: int, w: int):
    """Single-level (< 16 px after one step) and odd-sized pyramids, border rows and columns."""
    rng = np.random.default_rng(h * 100 + w)
    prev, nxt = shifted_pair(max(h, 8), max(w, 8), 1.25, -0.5)
    prev, nxt = prev[:h, :w].copy(), nxt[:h, :w].copy()
    prev = np.clip(prev.astype(int) + rng.integers(-3, 4, prev.shape), 0, 255).astype(np.uint8)
    ours = tvl1_fused_batch(prev[None], nxt[None])
    ref = opencv_flow(prev[None], nxt[None])
    assert ours.shape == (1, h, w, 2)
    assert np.isfinite(ours).all()
    assert epe(ours, ref).mean() <= 0.03


def test_constant_frames_give_zero_flow():
    a = np.full((2, 32, 40), 100, np.uint8)
    np.testing.assert_array_equal(tvl1_fused_batch(a, a), np.zeros((2, 32, 40, 2), np.float32))


def test_same_result_whatever_the_thread_count(shared_data: Path):
    prev, nxt = real_pairs(shared_data, 3, 64)
    one = tvl1_fused_batch(prev, nxt, threads=1)
    np.testing.assert_array_equal(tvl1_fused_batch(prev, nxt, threads=2), one)
    np.testing.assert_array_equal(tvl1_fused_batch(prev, nxt, threads=5), one)
    # a pair's flow does not depend on the batch it came in
    np.testing.assert_array_equal(tvl1_fused_batch(prev[2:3], nxt[2:3]), one[2:3])


def test_non_default_params_reach_the_solver(shared_data: Path):
    f = clip_frames(shared_data / CLIPS[0], 2, 64, start=60)
    params = dataclasses.replace(
        TVL1Params(),
        tau=0.2,
        lambda_=0.1,
        theta=0.25,
        nscales=3,
        warps=2,
        epsilon=0.02,
        inner_iterations=7,
        outer_iterations=3,
        scale_step=0.7,
        median_filtering=3,
    )
    ours = tvl1_fused_batch(f[:1], f[1:], params)
    ref = opencv_flow(f[:1], f[1:], params)
    default = opencv_flow(f[:1], f[1:])
    assert epe(ours, ref).mean() <= 0.01
    assert epe(default, ref).mean() > 0.05


def test_float_input_is_scaled_like_opencv():
    prev, nxt = shifted_pair(40, 48, 1.0, 0.5)
    as_u8 = tvl1_fused_batch(prev[None], nxt[None])
    as_float = tvl1_fused_batch(prev[None] / 255.0, nxt[None] / 255.0)
    np.testing.assert_allclose(as_float, as_u8, atol=1e-3)


def test_backend_dispatch_pool_and_serial_agree_with_opencv():
    gray = rgb_to_gray(moving_square_frames(6, 48, 48, square=20, dx=2, dy=1, seed=3))
    params = TVL1Params(nscales=3, warps=3)
    cv = compute_flow(gray, ExtractSettings(flow_workers=1, tvl1=params))
    serial = compute_flow(gray, ExtractSettings(flow_backend="fused", flow_workers=1, tvl1=params))
    pooled = compute_flow(gray, ExtractSettings(flow_backend="fused", flow_workers=2, tvl1=params))
    assert serial.dtype == np.uint8 and serial.shape == cv.shape == (5, 48, 48, 2)
    np.testing.assert_array_equal(pooled, serial)
    assert (serial == cv).mean() >= 0.95


@pytest.mark.parametrize(
    "prev,nxt,match",
    [
        (np.zeros((2, 20, 20), np.uint8), np.zeros((2, 20, 21), np.uint8), "shapes differ"),
        (np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8), r"\[B, H, W\]"),
        (np.zeros((1, 20, 20), np.int32), np.zeros((1, 20, 20), np.int32), "uint8"),
        (np.zeros((1, 2, 20), np.uint8), np.zeros((1, 2, 20), np.uint8), "at least 3"),
    ],
)
def test_invalid_inputs_raise_clear_errors(prev, nxt, match):
    with pytest.raises(ValueError, match=match):
        tvl1_fused_batch(prev, nxt)


def test_invalid_params_and_threads_raise_clear_errors():
    a = np.zeros((1, 20, 20), np.uint8)
    with pytest.raises(ValueError, match="gamma"):
        tvl1_fused_batch(a, a, dataclasses.replace(TVL1Params(), gamma=0.5))
    with pytest.raises(ValueError, match="threads"):
        tvl1_fused_batch(a, a, threads=0)
    assert tvl1_fused_batch(a[:0], a[:0]).shape == (0, 20, 20, 2)


def test_missing_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` fail
    assert not tvl1_fused.numba_available()
    with pytest.raises(ImportError, match="pip install numba"):
        tvl1_fused._require_numba()
