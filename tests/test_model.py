"""HAM-Net network: shapes, init, smoothing, gradients to both branches, config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig, hamnet_settings
from hamnet.losses import hamnet_losses
from hamnet.model import build_hamnet, count_parameters
from pipeline.config import default_config, load_config

SMALL = ModelConfig(feature_dim=32, hidden_dim=48, attention_hidden=16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shapes_and_ranges():
    torch.manual_seed(0)
    net = build_hamnet(SMALL, num_classes=5)
    logits, att = net(torch.randn(3, 40, 32))
    assert logits.shape == (3, 40, 6) and att.shape == (3, 40)
    assert (att > 0).all() and (att < 1).all()
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        net(torch.randn(40, 32))


def test_full_size_parameter_count():
    # Conv1d(2048,2048,3) x2 + Conv1d(2048,21,1); Conv1d(2048,512,3) + Conv1d(512,512,3) + Conv1d(512,1,1)
    net = build_hamnet(ModelConfig(), num_classes=20)
    want = (2048 * 2048 * 3 + 2048) * 2 + (2048 * 21 + 21) + (2048 * 512 * 3 + 512) + (512 * 512 * 3 + 512) + (512 + 1)
    assert count_parameters(net) == want


def test_kaiming_uniform_init_and_zero_bias():
    torch.manual_seed(0)
    net = build_hamnet(ModelConfig(feature_dim=256, hidden_dim=256, attention_hidden=64), 4)
    conv = net.classifier[0]
    fan_in = 256 * 3
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)  # gain(leaky_relu, a=0) = sqrt(2)
    w = conv.weight.detach()
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.95 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform(-b, b) std
    assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, torch.nn.Conv1d))


def test_activitynet_smoothing_is_avgpool_with_zero_padding():
    torch.manual_seed(0)
    plain = build_hamnet(ModelConfig(feature_dim=8, hidden_dim=8, attention_hidden=8, smooth_kernel=0), 2).eval()
    smooth = build_hamnet(ModelConfig(feature_dim=8, hidden_dim=8, attention_hidden=8, smooth_kernel=5), 2).eval()
    smooth.load_state_dict(plain.state_dict())
    x = torch.randn(1, 12, 8)
    lp, ap = plain(x)
    ls, as_ = smooth(x)
    # by hand: mean over a window of 5 centred on t, zeros outside the video counted in the 5
    t = 0
    assert as_[0, t].item() == pytest.approx(ap[0, 0:3].sum().item() / 5, rel=1e-5)
    t = 6
    assert ls[0, t, 1].item() == pytest.approx(lp[0, 4:9, 1].sum().item() / 5, rel=1e-5)
    assert ls.shape == lp.shape and as_.shape == ap.shape


def test_gradients_flow_to_both_branches():
    torch.manual_seed(0)
    net = build_hamnet(SMALL, 3)
    logits, att = net(torch.randn(2, 30, 32))
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    hamnet_losses(logits, att, y, LossConfig(drop_threshold=0.9))["total"].backward()
    for branch in (net.classifier, net.attention):
        first = branch[0].weight.grad
        assert first is not None and first.abs().sum().item() > 0


def test_eval_mode_is_deterministic_and_dropout_active_in_training():
    torch.manual_seed(0)
    net = build_hamnet(SMALL, 3)
    x = torch.randn(1, 20, 32)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    assert not torch.equal(net(x)[0], net(x)[0])


def test_defaults_round_trip_and_settings_are_strict():
    base = default_config()
    m, l, t, z = hamnet_settings(base)
    # the YAML form of the defaults reads back into the dataclass defaults, key for key
    assert (m, l, t, z) == (ModelConfig(), LossConfig(), TrainConfig(), LocalizeConfig())
    assert m.to_dict() == base["model"] and t.to_dict() == base["train"]
    assert l.to_dict() == base["loss"] and z.to_dict() == base["localize"]
    # THUMOS14 as the authors ran it is exactly the defaults
    assert load_config("thumos14") == base
    # the authors' attention thresholds are numpy's linspace(0.1, 0.9, 10), bit for bit
    assert list(z.attention_thresholds) == np.linspace(0.1, 0.9, 10).tolist()
    with pytest.raises(ValueError, match="model.hidden"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="loss.weights.bc"):
        LossConfig.from_dict({"weights": {"bc": 1}})
    with pytest.raises(ValueError, match="drop_mode"):
        LossConfig.from_dict({"drop_mode": "sometimes"})
    with pytest.raises(ValueError, match="smooth_kernel"):
        ModelConfig.from_dict({"smooth_kernel": 16})
    with pytest.raises(ValueError, match="train.epochs must be an integer"):
        TrainConfig.from_dict({"epochs": "many"})


def test_activitynet_config_values():
    m, l, t, z = hamnet_settings(load_config("activitynet12"))
    assert m.smooth_kernel == 17 and l.topk_ratio == 20 and t.num_snippets == 80 and t.epochs == 20
    # 0.25*(0.5 BCL + 0.5 HAL) + 2*(0.5 SAL + 0.5 SSAL) + 0.5 sparsity + 0.1 guide
    assert l.weights.to_dict() == {"bcl": 0.125, "hal": 0.125, "sal": 1.0, "ssal": 1.0, "sparsity": 0.5, "guide": 0.1}
    paper = hamnet_settings(load_config("thumos14", ["loss.reading=paper", "localize.class_threshold=0.1"]))
    assert paper[1].reading == "paper" and paper[3].class_threshold == 0.1
