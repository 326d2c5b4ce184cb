"""Inception-v1 I3D: exact parameter counts, both checkpoint layouts, rejection, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extractors.checkpoints import (
    CheckpointError,
    load_i3d_checkpoint,
    piergiaj_key_to_hassony2,
    random_i3d,
)
from extractors.i3d import _same_pad, build_i3d, count_parameters
from extractors.video_features import I3DRunner


@pytest.mark.parametrize(
    "cin, classes, expected",
    [(3, 400, 12_697_264), (2, 400, 12_675_312), (3, 0, 12_287_264), (2, 0, 12_265_312)],
)
def test_parameter_counts_match_reference(cin, classes, expected):
    assert count_parameters(build_i3d(cin, classes)) == expected


def test_tf_same_padding():
    # TF: out = ceil(in / s); total pad = max((out - 1) * s + k - in, 0); the extra goes last.
    assert _same_pad(224, 7, 2) == (2, 3)
    assert _same_pad(16, 7, 2) == (2, 3)
    assert _same_pad(112, 3, 2) == (0, 1)
    assert _same_pad(8, 3, 1) == (1, 1)
    assert _same_pad(8, 1, 1) == (0, 0)
    assert _same_pad(4, 2, 2) == (0, 0)


@pytest.fixture(scope="module")
def model():
    return random_i3d(3, seed=0)


@pytest.fixture(scope="module")
def clip():
    # Smooth random clip in [-1, 1], 2 snippets of 16 frames at 32 x 32.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(16, 32, 32), mode="trilinear", align_corners=False)
    return x * 2 - 1


def test_features_shape_finite_and_deterministic(model, clip):
    with torch.inference_mode():
        a = model.features(clip)
        b = random_i3d(3, seed=0).features(clip)
        c = random_i3d(3, seed=1).features(clip)
    assert a.shape == (2, 1024) and torch.isfinite(a).all()
    assert torch.equal(a, b)  # same seed -> same backbone -> same features
    assert not torch.allclose(a, c)
    assert a.std() > 1e-2  # activations survive the 60 layers (no vanishing random init)


@pytest.mark.parametrize("size", [24, 56])
def test_small_crops_work_with_adaptive_pooling(model, size):
    x = torch.zeros(1, 3, 16, size, size)
    with torch.inference_mode():
        assert model.trunk(x).shape[1] == 1024
        assert model.features(x).shape == (1, 1024)


def _plain_state(model) -> dict[str, torch.Tensor]:
    # Like the published files: no num_batches_tracked.
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_loads_piergiaj_and_hassony2_layouts(tmp_path, model, clip):
    state = _plain_state(model)
    assert len(state) == 287
    assert {
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_mean",
        "Mixed_3b.b0.conv3d.weight",
        "Mixed_3b.b1a.conv3d.weight",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    } <= set(state)
    torch.save(state, tmp_path / "rgb_imagenet.pt")
    hass = {piergiaj_key_to_hassony2(k): v for k, v in state.items()}
    assert {
        "conv3d_1a_7x7.conv3d.weight",
        "conv3d_1a_7x7.batch3d.running_var",
        "mixed_3b.branch_1.0.conv3d.weight",
        "mixed_3b.branch_3.1.batch3d.bias",
        "conv3d_0c_1x1.conv3d.bias",
    } <= set(hass)
    torch.save(hass, tmp_path / "model_rgb.pth")
    with torch.inference_mode():
        ref = model(clip)
        for name in ("rgb_imagenet.pt", "model_rgb.pth"):
            loaded = load_i3d_checkpoint(tmp_path / name, 3)
            assert torch.equal(loaded(clip), ref), name  # logits: every tensor took part


def test_rejects_checkpoints_that_do_not_fit(tmp_path, model):
    state = _plain_state(model)
    bad = dict(state)
    del bad["Mixed_4c.b2b.bn.running_var"]
    bad["Mixed_4c.extra.weight"] = torch.zeros(3)
    bad["Mixed_5c.b0.conv3d.weight"] = torch.zeros(384, 832, 1, 1, 2)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as ei:
        load_i3d_checkpoint(tmp_path / "bad.pt", 3)
    msg = str(ei.value)
    assert str(tmp_path / "bad.pt") in msg
    assert "missing: Mixed_4c.b2b.bn.running_var" in msg
    assert "unexpected: Mixed_4c.extra.weight" in msg
    assert "wrong shape: Mixed_5c.b0.conv3d.weight (384, 832, 1, 1, 2)" in msg
    # An RGB checkpoint is not a flow checkpoint: the first conv has 3 input channels, not 2.
    torch.save(state, tmp_path / "rgb.pt")
    with pytest.raises(CheckpointError, match=r"Conv3d_1a_7x7\.conv3d\.weight \(64, 3, 7, 7, 7\)"):
        load_i3d_checkpoint(tmp_path / "rgb.pt", 2)
    (tmp_path / "junk.pt").write_bytes(b"not a zip or pickle")
    with pytest.raises(CheckpointError, match="not a loadable PyTorch weights file"):
        load_i3d_checkpoint(tmp_path / "junk.pt", 3)
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an Inception-v1 I3D checkpoint"):
        load_i3d_checkpoint(tmp_path / "other.pt", 3)


def test_bf16_within_stated_tolerance(model):
    # docs/extraction.md: reduced precision is allowed when features stay within 3 % relative
    # L2 error (cosine >= 0.999) of fp32, per snippet.
    rng = np.random.default_rng(0)
    import cv2

    small = rng.integers(0, 256, (2, 16, 8, 8, 3), dtype=np.uint8)
    clips = np.stack([np.stack([cv2.resize(f, (48, 48)) for f in c]) for c in small])
    a = I3DRunner(model, "cpu", "fp32")(clips)
    b = I3DRunner(model, "cpu", "bf16")(clips)
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert b.dtype == np.float32 and (rel < 0.03).all() and (cos > 0.999).all(), (rel, cos)


@pytest.mark.slow
def test_full_size_clip_224():
    m = random_i3d(2, seed=0)
    x = torch.rand(1, 2, 16, 224, 224) * 2 - 1
    with torch.inference_mode():
        assert m.trunk(x).shape == (1, 1024, 2, 7, 7)  # what the fixed 2x7x7 pool expected
        f = m.features(x)
    assert f.shape == (1, 1024) and torch.isfinite(f).all()
