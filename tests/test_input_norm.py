"""model.input_norm: standardising inputs with the training features' statistics, kept in the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig
from hamnet.localize import localize_video
from hamnet.model import build_hamnet
from hamnet.train import load_checkpoint, train_hamnet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(seed: int = 0):
    # Like a random backbone's output: a large shared offset per dimension, small spread, and one
    # dimension that never changes (a dead ReLU unit).
    rng = np.random.default_rng(seed)
    offset = rng.uniform(2.0, 5.0, size=12)
    scale = rng.uniform(0.01, 0.3, size=12)
    feats, labels = {}, {}
    for v in range(6):
        x = offset + scale * rng.normal(size=(int(rng.integers(8, 15)), 12))
        x[:, 3] = 7.0
        feats[f"v{v}"] = x.astype(np.float32)
        labels[f"v{v}"] = ["a" if v % 2 else "b"]
    return feats, labels


def test_config_accepts_only_known_norms():
    assert ModelConfig().input_norm == "none"
    assert ModelConfig.from_dict({"input_norm": "standardize"}).input_norm == "standardize"
    with pytest.raises(ValueError, match="model.input_norm"):
        ModelConfig.from_dict({"input_norm": "zscore"})


def test_none_adds_no_state_and_standardize_adds_buffers():
    cfg = ModelConfig(feature_dim=12, hidden_dim=8, attention_hidden=4)
    plain = build_hamnet(cfg, 2).state_dict()
    assert not any(k.startswith("input_norm") for k in plain)  # THUMOS checkpoints keep their keys
    std = build_hamnet(ModelConfig(feature_dim=12, hidden_dim=8, attention_hidden=4, input_norm="standardize"), 2)
    assert {"input_norm.mean", "input_norm.std"} <= set(std.state_dict())
    with pytest.raises(ValueError, match="shape"):
        std.input_norm.set_statistics(torch.zeros(5), torch.ones(5))


def test_training_stores_statistics_and_localization_uses_them(tmp_path):
    feats, labels = _features()
    cfg = ModelConfig(feature_dim=12, hidden_dim=8, attention_hidden=4, input_norm="standardize")
    ckpt = train_hamnet(
        feats,
        labels,
        ["a", "b"],
        model_cfg=cfg,
        loss_cfg=LossConfig(),
        train_cfg=TrainConfig(epochs=2, batch_size=3, num_snippets=8, device="cpu", lr=1e-3),
        checkpoint_path=tmp_path / "m.pt",
        progress=False,
    )
    model, classes, config = load_checkpoint(ckpt)
    assert config["model"]["input_norm"] == "standardize"
    allx = np.concatenate(list(feats.values())).astype(np.float64)
    np.testing.assert_allclose(model.input_norm.mean.numpy(), allx.mean(0), rtol=1e-5, atol=1e-6)
    expected_std = allx.std(0)
    expected_std[3] = 1.0  # a constant dimension is left unscaled (no division by ~0)
    np.testing.assert_allclose(model.input_norm.std.numpy(), expected_std, rtol=1e-4, atol=1e-6)
    # The normalised training inputs have zero mean and unit spread on every varying dimension.
    z = model.input_norm(torch.from_numpy(allx.astype(np.float32))).numpy()
    varying = np.arange(12) != 3
    assert np.abs(z.mean(0)).max() < 1e-4
    np.testing.assert_allclose(z[:, varying].std(0), 1.0, rtol=1e-3)
    # Localizing raw features with the checkpoint equals running the branches on standardised ones.
    x = feats["v0"]
    loc = localize_video(model, x, classes, LocalizeConfig())
    plain = build_hamnet(ModelConfig(feature_dim=12, hidden_dim=8, attention_hidden=4), 2)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("input_norm")})
    plain.eval()
    with torch.no_grad():
        _, att = plain(torch.from_numpy((x - allx.mean(0).astype(np.float32)) / expected_std.astype(np.float32))[None])
    np.testing.assert_allclose(loc.attention, att[0].double().numpy(), rtol=1e-4, atol=1e-6)
