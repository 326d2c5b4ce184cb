"""The HAM-Net network: a classification branch (C classes + background) and an attention branch.

Shapes follow the authors' implementation (docs/hamnet.md, "Paper versus the authors' implementation"): both branches are temporal
1-D convolutions over the snippet sequence of one joint RGB+flow feature vector per snippet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hamnet.config import ModelConfig


class InputStandardize(nn.Module):
    """``(x - mean) / std`` per feature dimension; the statistics are buffers, so they are saved
    in (and restored from) the checkpoint with the weights. Starts as the identity (0, 1)."""

    # Registered as buffers in __init__; declared here so that they type as tensors, not Module.
    mean: Tensor
    std: Tensor

    def __init__(self, feature_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, std: Tensor, eps: float = 1e-6) -> None:
        """Set the statistics; dimensions with (near) zero spread keep std 1 (they are constant)."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(
                f"input statistics must have shape {tuple(self.mean.shape)}, "
                f"got mean {tuple(mean.shape)} and std {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("input statistics contain NaN or inf")
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > eps, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class HamNet(nn.Module):
    """``forward(x[B,T,D]) -> (logits[B,T,C+1], attention[B,T])``; the last logit is background."""

    def __init__(
        self,
        classifier: nn.Module,
        attention: nn.Module,
        smooth: nn.Module,
        num_classes: int,
        input_norm: nn.Module | None = None,
    ):
        super().__init__()
        self.input_norm = input_norm if input_norm is not None else nn.Identity()
        self.classifier = classifier
        self.attention = attention
        self.smooth = smooth
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 3:
            raise ValueError(f"HamNet expects features shaped [B, T, D], got {tuple(x.shape)}")
        h = self.input_norm(x).transpose(1, 2)  # Conv1d wants [B, D, T]
        logits = self.smooth(self.classifier(h))
        attention = self.smooth(self.attention(h))
        return logits.transpose(1, 2), attention[:, 0, :]


def _kaiming_init(module: nn.Module) -> None:
    # The authors' init: kaiming_uniform(fan_in, leaky_relu with a=0) on every conv, zero bias.
    if isinstance(module, nn.Conv1d):
        nn.init.kaiming_uniform_(module.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_hamnet(cfg: ModelConfig, num_classes: int) -> HamNet:
    """Build HAM-Net for ``num_classes`` action classes (plus one background output).

    Classifier: Conv1d(D, H, 3) - LeakyReLU - Conv1d(H, H, 3) - LeakyReLU - Dropout - Conv1d(H, C+1, 1).
    Attention: Conv1d(D, A, 3) - LeakyReLU - Conv1d(A, A, 3) - LeakyReLU - Conv1d(A, 1, 1) - Sigmoid.
    With ``cfg.smooth_kernel`` > 0 (ActivityNet), an AvgPool1d(k, stride 1, padding k//2,
    zero padding counted) follows both branches, in training and at test time.
    With ``cfg.input_norm == "standardize"`` the input first passes an :class:`InputStandardize`
    (identity until ``train_hamnet`` sets the training features' statistics).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    D, H, A, slope = cfg.feature_dim, cfg.hidden_dim, cfg.attention_hidden, cfg.leaky_slope
    classifier = nn.Sequential(
        nn.Conv1d(D, H, 3, padding=1),
        nn.LeakyReLU(slope),
        nn.Conv1d(H, H, 3, padding=1),
        nn.LeakyReLU(slope),
        nn.Dropout(cfg.dropout),
        nn.Conv1d(H, num_classes + 1, 1),
    )
    attention = nn.Sequential(
        nn.Conv1d(D, A, 3, padding=1),
        nn.LeakyReLU(slope),
        nn.Conv1d(A, A, 3, padding=1),
        nn.LeakyReLU(slope),
        nn.Conv1d(A, 1, 1),
        nn.Sigmoid(),
    )
    k = cfg.smooth_kernel
    smooth: nn.Module = nn.AvgPool1d(k, stride=1, padding=k // 2, count_include_pad=True) if k > 0 else nn.Identity()
    norm = InputStandardize(D) if cfg.input_norm == "standardize" else None
    net = HamNet(classifier, attention, smooth, num_classes, input_norm=norm)
    net.apply(_kaiming_init)
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
