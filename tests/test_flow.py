"""TV-L1 flow: known displacement recovered, quantisation round trip, parallel == serial."""

from __future__ import annotations

import numpy as np
import pytest

from extractors.flow import compute_flow, dequantize_flow, quantize_flow
from extractors.settings import ExtractSettings, TVL1Params
from extractors.snippets import num_snippets, pad_to, snippet_arrays
from extractors.transforms import rgb_to_gray
from tests.video_synth import moving_square_frames


def test_quantisation_round_trip_and_clipping():
    rng = np.random.default_rng(0)
    f = rng.uniform(-20, 20, size=(1000, 2)).astype(np.float32)
    q = quantize_flow(f, 20.0)
    assert q.dtype == np.uint8
    assert np.abs(dequantize_flow(q, 20.0) - f).max() <= 20.0 / 255 + 1e-5
    assert quantize_flow(np.array([-100.0, -20.0, 20.0, 100.0]), 20.0).tolist() == [0, 0, 255, 255]
    # Linear map: -20 -> 0, +20 -> 255, a step is 40/255 px.
    np.testing.assert_allclose(dequantize_flow(np.array([0, 255], np.uint8), 20.0), [-20.0, 20.0], atol=1e-5)
    np.testing.assert_allclose(np.diff(dequantize_flow(np.arange(256, dtype=np.uint8), 20.0)), 40 / 255, rtol=1e-4)


@pytest.mark.parametrize("dx, dy", [(2, 1), (-3, 0)])
def test_tvl1_recovers_known_displacement(dx, dy):
    # Square at (8, 8) in frame 0, at (8 + dx, 8 + dy) in frame 1; flow lives on frame 0's grid.
    frames = moving_square_frames(2, 64, 64, square=28, dx=dx, dy=dy, seed=3, static_background=True)
    q = compute_flow(rgb_to_gray(frames), ExtractSettings(flow_workers=1))
    assert q.shape == (1, 64, 64, 2) and q.dtype == np.uint8
    flow = dequantize_flow(q[0], 20.0)
    inner = flow[8 + 5 : 8 + 28 - 5, 8 + 5 : 8 + 28 - 5]
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), axis=0), [dx, dy], atol=0.25)
    # Far from the square the (static, textured) background does not move.
    assert np.abs(np.median(flow[-14:, -14:].reshape(-1, 2), axis=0)).max() < 0.25


def test_parallel_workers_give_identical_flow():
    gray = rgb_to_gray(moving_square_frames(5, 40, 40, square=16, dx=1, dy=1))
    fast = TVL1Params(nscales=2, warps=2)
    serial = compute_flow(gray, ExtractSettings(flow_workers=1, tvl1=fast))
    parallel = compute_flow(gray, ExtractSettings(flow_workers=2, tvl1=fast))
    assert serial.shape == (4, 40, 40, 2)
    np.testing.assert_array_equal(serial, parallel)


def test_compute_flow_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(np.zeros((3, 8, 8), np.float32), ExtractSettings())
    assert compute_flow(np.zeros((1, 8, 8), np.uint8), ExtractSettings()).shape == (0, 8, 8, 2)


def test_torch_backend_is_dispatched_and_agrees(monkeypatch):
    # Imported plainly: the backend is part of the project, so an import error must fail here.
    from extractors import tvl1_torch

    calls = []
    real = tvl1_torch.tvl1_flow_batch

    def recording(prev, nxt, params=None, **kw):
        calls.append((np.asarray(prev).shape, kw.get("device")))
        return real(prev, nxt, params, **kw)

    monkeypatch.setattr(tvl1_torch, "tvl1_flow_batch", recording)
    gray = rgb_to_gray(moving_square_frames(3, 48, 48, square=20, dx=2, dy=1, seed=3))
    params = TVL1Params(nscales=3, warps=3)
    cv = compute_flow(gray, ExtractSettings(flow_workers=1, tvl1=params))
    assert calls == []  # the OpenCV backend never touches the torch one
    th = compute_flow(gray, ExtractSettings(flow_backend="torch", device="cpu", tvl1=params))
    assert calls == [((2, 48, 48), "cpu")]  # one batch of both pairs, on the requested device
    assert th.dtype == np.uint8 and th.shape == cv.shape == (2, 48, 48, 2)
    # What compute_flow returns is the backend's field, quantised with the settings' bound.
    direct = real(gray[:-1], gray[1:], params, device="cpu")
    np.testing.assert_array_equal(th, quantize_flow(np.asarray(direct, np.float32), ExtractSettings().flow_bound))
    cv, th = cv.astype(int), th.astype(int)
    # Same algorithm, different arithmetic: the quantised fields agree closely on average.
    assert np.abs(th - cv).mean() < 2.0


@pytest.mark.parametrize("n, t", [(1, 1), (2, 1), (16, 1), (17, 2), (32, 2), (250, 16), (164, 11)])
def test_snippet_count_rule(n, t):
    assert num_snippets(n, 16) == t


def test_snippet_padding_rule():
    rgb = np.arange(20)[:, None]  # frame index as the "pixel"
    flow = np.arange(19)[:, None] + 100  # field i goes from frame i to i+1
    r, f = snippet_arrays(rgb, flow, 16)
    assert r.shape == (2, 16, 1) and f.shape == (2, 16, 1)
    assert r[1, :, 0].tolist() == [16, 17, 18, 19] + [19] * 12  # last frame repeated
    assert f[1, :, 0].tolist() == [116, 117, 118] + [118] * 13  # last field repeated
    assert f[0, :, 0].tolist() == list(range(100, 116))  # aligned with frames 0..15
    assert pad_to(np.zeros((0, 2)), 3, fill=np.ones(2)).tolist() == [[1, 1]] * 3
