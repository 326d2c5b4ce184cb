"""The six HAM-Net losses as one pure function of the network outputs.

Notation: s[b,t,c] are the classifier logits (C classes + background last), a[b,t] the
attention, y[b,c] the multi-hot video labels. Every MIL term scores a video by the mean of
its top-k snippets per class, k = max(1, floor(T / topk_ratio)), and takes the cross-entropy
of the softmax over C+1 against targets with the background entry set to 1 (BCL, HAL) or
0 (SAL, SSAL).

* BCL  (base classification): on s.
* HAL  (hard attention): on s with the "dropped" snippets removed.
* SAL  (soft attention): on a * s.
* SSAL (semi-soft attention): on a * s with the dropped snippets' attention set to 0.
* sparsity: on a.  * guide: |1 - a - softmax(s)_bg|.

Two readings (``LossConfig.reading``), listed in docs/hamnet.md:

``authors`` (default, reproduces the published numbers): targets normalised y / (sum(y) + 1e-4);
snippets are dropped where a >= drop_threshold * max_t a (per video); a dropped snippet takes its
minimum logit over classes, m * (s - min_c s) + min_c s, in HAL and SSAL; sparsity and guide are
means over batch and time.

``paper``: raw targets; snippets are dropped where a >= drop_threshold (absolute); dropped
snippets are zeroed (m * s); sparsity and guide are summed over time (mean over the batch).

Drop modes (``LossConfig.drop_mode``, Fig. 4a of the paper) decide *which* snippets HAL and SSAL
lose; the *number* dropped per video is always n = #{t : a_t >= threshold} of the reading:

* ``selective``: the n snippets at or above the threshold (the most attended).
* ``random``: n snippets drawn uniformly without replacement (``generator`` makes it reproducible).
* ``inverse``: the n least-attended snippets (ties broken by earlier time).

The drop mask is a selection, not a differentiable function of a: gradients reach the attention
through SAL, SSAL (the kept snippets' a), sparsity and guide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hamnet.config import LossConfig

LOSS_NAMES = ("bcl", "hal", "sal", "ssal", "sparsity", "guide")


def topk_k(T: int, ratio: int) -> int:
    """The authors' top-k rule: k = max(1, floor(T / ratio)) (T=500, ratio 10 -> 50)."""
    return max(1, int(T) // int(ratio))


def topk_mean(cas: Tensor, ratio: int) -> Tensor:
    """Mean of the top-k values over time: [B, T, K] -> [B, K]."""
    k = topk_k(cas.shape[1], ratio)
    return cas.topk(k, dim=1).values.mean(dim=1)


def mil_loss(cas: Tensor, labels: Tensor, *, background: float, ratio: int, normalise: bool) -> Tensor:
    """Per-video cross-entropy of softmax(top-k mean) against the labels (+ background entry)."""
    bg = torch.full_like(labels[:, :1], background)
    target = torch.cat([labels, bg], dim=1)
    if normalise:
        target = target / (target.sum(dim=1, keepdim=True) + 1e-4)
    return -(target * F.log_softmax(topk_mean(cas, ratio), dim=1)).sum(dim=1)


def drop_mask(attention: Tensor, cfg: LossConfig, generator: torch.Generator | None = None) -> Tensor:
    """Boolean [B, T]: True where a snippet is dropped for HAL and SSAL (see module docstring)."""
    a = attention.detach()
    if cfg.reading == "authors":
        threshold = cfg.drop_threshold * a.max(dim=1, keepdim=True).values
    else:
        threshold = torch.full_like(a[:, :1], cfg.drop_threshold)
    selective = a >= threshold
    if cfg.drop_mode == "selective":
        return selective
    n = selective.sum(dim=1, keepdim=True)
    if cfg.drop_mode == "random":
        key = torch.rand(a.shape, generator=generator, device=a.device)
    else:  # inverse: lowest attention first
        key = a
    order = key.argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order).contiguous())
    return rank < n


def hamnet_losses(
    logits: Tensor, attention: Tensor, labels: Tensor, cfg: LossConfig, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """All six loss terms (scalars, batch means) and their weighted sum under ``total``.

    logits [B, T, C+1] (background last), attention [B, T] in (0, 1), labels [B, C] multi-hot.
    A term with weight 0 is still computed and reported but does not enter ``total``.
    """
    if (
        logits.dim() != 3
        or attention.shape != logits.shape[:2]
        or labels.shape != (logits.shape[0], logits.shape[2] - 1)
    ):
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)} (want [B,T,C+1]), attention "
            f"{tuple(attention.shape)} (want [B,T]), labels {tuple(labels.shape)} (want [B,C])"
        )
    labels = labels.to(logits.dtype)
    authors = cfg.reading == "authors"
    r = cfg.topk_ratio
    a = attention.unsqueeze(-1)
    kept = (~drop_mask(attention, cfg, generator)).to(logits.dtype).unsqueeze(-1)

    if authors:
        # Dropped snippets fall to their lowest class logit rather than to 0, so they never win
        # the top-k of a class whose logits are all negative.
        s_min = logits.min(dim=-1, keepdim=True).values
        hal_cas = kept * (logits - s_min) + s_min
        ssal_cas = (a * kept) * (logits - s_min) + s_min
    else:
        hal_cas = kept * logits
        ssal_cas = (a * kept) * logits
    sal_cas = a * logits

    terms = {
        "bcl": mil_loss(logits, labels, background=1.0, ratio=r, normalise=authors).mean(),
        "hal": mil_loss(hal_cas, labels, background=1.0, ratio=r, normalise=authors).mean(),
        "sal": mil_loss(sal_cas, labels, background=0.0, ratio=r, normalise=authors).mean(),
        "ssal": mil_loss(ssal_cas, labels, background=0.0, ratio=r, normalise=authors).mean(),
    }
    guide = (1.0 - attention - logits.softmax(dim=-1)[..., -1]).abs()
    if authors:
        terms["sparsity"] = attention.mean()
        terms["guide"] = guide.mean()
    else:
        terms["sparsity"] = attention.sum(dim=1).mean()
        terms["guide"] = guide.sum(dim=1).mean()

    weights = cfg.weights.to_dict()
    total = sum(weights[k] * terms[k] for k in LOSS_NAMES if weights[k] != 0)
    terms["total"] = total
    return terms
