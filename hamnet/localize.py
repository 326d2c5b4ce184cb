"""Localization: from a trained HAM-Net and one video's features to scored temporal segments.

The authors' THUMOS inference (docs/hamnet.md, "Localization"), reproduced exactly:

1. Full-length forward pass (batch 1). CAS for scoring: s' = s * a (attention-weighted logits).
2. Video class scores p: softmax over C+1 of the top-k mean of s' (k = max(1, floor(T/topk_ratio))),
   background dropped. Classes with p_c >= class_threshold are kept; none kept -> no proposals.
3. For every attention threshold θ: the mask a > θ (strict), shared by all kept classes; each
   1-D connected run [i0, i1] (inclusive) is a proposal for each kept class, scored
   mean(s'_c inside) - mean(s'_c in the outer margins) + class_score_weight * p_c. Margins:
   L = i1 - i0 + 1, outer region [max(0, int(i0 - r*L)), min(T-1, int(i1 + r*L))] minus the run
   (int truncates toward zero, as Python's int does); its mean is 0 when it is empty.
   Times: start = i0 * seconds_per_snippet, end = (i1 + 1) * seconds_per_snippet, not clipped.
   Unlike the authors' code, a run made of snippet 0 alone does produce a proposal.
4. All thresholds' proposals are pooled per class and passed through Gaussian soft-NMS
   (score *= exp(-iou^2 / sigma)); nothing is removed and there is no top-k cap. The default
   overlap (``nms_iou: authors``) uses lengths end - start + 1 on times in seconds, like the
   authors' code; ``nms_iou: plain`` uses the ordinary temporal IoU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from core.device import resolve_device
from hamnet.config import LocalizeConfig
from hamnet.model import HamNet

SECONDS_PER_SNIPPET = 16 / 25  # 16-frame snippets at 25 fps


@dataclass(frozen=True)
class Segment:
    """One detection: [t_start, t_end] in seconds, a class name and a confidence score."""

    t_start: float
    t_end: float
    label: str
    score: float


@dataclass
class VideoLocalization:
    video_id: str
    segments: list[Segment]
    video_scores: np.ndarray  # [C] softmax class scores (background dropped)
    attention: np.ndarray  # [T]
    cas: np.ndarray  # [T, C] attention-weighted logits s * a (background dropped)
    classes: list[str] = field(default_factory=list)


def softmax_np(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def video_class_scores(weighted_cas: np.ndarray, topk_ratio: int) -> np.ndarray:
    """[T, C+1] attention-weighted logits -> [C] softmax scores of the top-k mean, background dropped."""
    T = weighted_cas.shape[0]
    k = max(1, T // int(topk_ratio))
    # partition puts the k largest values per column in the last k rows (order irrelevant for a mean)
    top = np.partition(weighted_cas, T - k, axis=0)[T - k :]
    return softmax_np(top.mean(axis=0))[:-1]


def runs_above(attention: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (starts, ends) of the maximal runs where attention > threshold (strict)."""
    mask = np.concatenate([[False], attention > threshold, [False]])
    edges = np.flatnonzero(mask[1:] != mask[:-1])
    return edges[0::2], edges[1::2] - 1


def score_runs(
    cas: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    video_scores: np.ndarray,
    outer_ratio: float,
    class_score_weight: float,
) -> np.ndarray:
    """Outer-inner contrastive scores [R, K] of runs on a [T, K] CAS (K = kept classes).

    ``video_scores`` is [K]. Uses a prefix sum, so any number of runs costs O(R * K).
    """
    T = cas.shape[0]
    csum = np.concatenate([np.zeros((1, cas.shape[1])), np.cumsum(cas, axis=0, dtype=np.float64)], axis=0)
    length = ends - starts + 1
    inner = (csum[ends + 1] - csum[starts]) / length[:, None]
    o_start = np.maximum(0, np.trunc(starts - outer_ratio * length)).astype(np.int64)
    o_end = np.minimum(T - 1, np.trunc(ends + outer_ratio * length)).astype(np.int64)
    o_sum = (csum[starts] - csum[o_start]) + (csum[o_end + 1] - csum[ends + 1])
    o_count = (starts - o_start) + (o_end - ends)
    outer = np.where(o_count[:, None] > 0, o_sum / np.maximum(o_count, 1)[:, None], 0.0)
    return inner - outer + class_score_weight * video_scores[None, :]


def soft_nms(
    starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, sigma: float, iou: str = "authors"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian soft-NMS keeping every proposal; returns (starts, ends, scores) in selection order.

    Each step takes the highest current score, then multiplies the remaining scores by
    exp(-iou^2 / sigma). Ties and the order of the remainder follow the authors' swap-with-first
    procedure, so equal scores come out in the same order as in their code.
    """
    s = np.asarray(starts, dtype=np.float64).copy()
    e = np.asarray(ends, dtype=np.float64).copy()
    sc = np.asarray(scores, dtype=np.float64).copy()
    pad = 1.0 if iou == "authors" else 0.0
    area = e - s + pad
    n = len(sc)
    out_s, out_e, out_sc = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        j = i + int(np.argmax(sc[i:]))
        for arr in (s, e, sc, area):
            arr[i], arr[j] = arr[j], arr[i]
        out_s[i], out_e[i], out_sc[i] = s[i], e[i], sc[i]
        if i + 1 < n:
            inter = np.maximum(np.minimum(e[i], e[i + 1 :]) - np.maximum(s[i], s[i + 1 :]) + pad, 0.0)
            union = area[i] + area[i + 1 :] - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                ov = np.where(union > 0, inter / union, 0.0)
            sc[i + 1 :] *= np.exp(-(ov * ov) / sigma)
    return out_s, out_e, out_sc


def segments_from_cas(
    weighted_cas: np.ndarray,
    attention: np.ndarray,
    classes: Sequence[str],
    cfg: LocalizeConfig,
    *,
    seconds_per_snippet: float = SECONDS_PER_SNIPPET,
) -> tuple[list[Segment], np.ndarray]:
    """Steps 2-4 of the module docstring on numpy arrays: (segments, video scores [C]).

    ``weighted_cas`` is s * a with the background column last ([T, C+1]); ``attention`` is [T].
    Segments come grouped by class (class order), each group in soft-NMS selection order.
    """
    weighted_cas = np.asarray(weighted_cas, dtype=np.float64)
    attention = np.asarray(attention, dtype=np.float64)
    T = weighted_cas.shape[0]
    if T == 0:
        raise ValueError("cannot localize a video with no snippets (T=0)")
    if weighted_cas.shape[1] != len(classes) + 1 or attention.shape != (T,):
        raise ValueError(
            f"shape mismatch: cas {weighted_cas.shape}, attention {attention.shape}, {len(classes)} classes"
        )
    p = video_class_scores(weighted_cas, cfg.topk_ratio)
    kept = np.flatnonzero(p >= cfg.class_threshold)
    if kept.size == 0:
        return [], p
    cas = weighted_cas[:, kept]
    pooled_s, pooled_e, pooled_sc = [], [], []
    for th in cfg.attention_thresholds:
        starts, ends = runs_above(attention, th)
        if starts.size == 0:
            continue
        sc = score_runs(cas, starts, ends, p[kept], cfg.outer_ratio, cfg.class_score_weight)  # [R, K]
        pooled_s.append(starts * seconds_per_snippet)
        pooled_e.append((ends + 1) * seconds_per_snippet)
        pooled_sc.append(sc)
    if not pooled_s:
        return [], p
    t0 = np.concatenate(pooled_s)
    t1 = np.concatenate(pooled_e)
    scores = np.concatenate(pooled_sc, axis=0)
    segments: list[Segment] = []
    for j, c in enumerate(kept):
        s, e, sc = soft_nms(t0, t1, scores[:, j], cfg.nms_sigma, cfg.nms_iou)
        label = classes[int(c)]
        segments.extend(Segment(float(a), float(b), label, float(v)) for a, b, v in zip(s, e, sc))
    return segments, p


@torch.no_grad()
def localize_video(
    model: HamNet,
    features: np.ndarray,
    classes: Sequence[str],
    cfg: LocalizeConfig,
    *,
    seconds_per_snippet: float = SECONDS_PER_SNIPPET,
    video_id: str = "",
) -> VideoLocalization:
    """Run the model on one video's full-length features (T x D) and localize its actions."""
    x = np.asarray(features, dtype=np.float32)
    name = f"video {video_id!r}" if video_id else "video"
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}: features must be T x D with T >= 1, got shape {x.shape}")
    if len(classes) != model.num_classes:
        raise ValueError(f"{name}: {len(classes)} class names for a model with {model.num_classes} classes")
    width = getattr(model.classifier[0], "in_channels", x.shape[1])  # type: ignore[index]  # nn.Sequential
    if x.shape[1] != width:
        raise ValueError(
            f"{name}: features are {x.shape[1]}-D but the model was trained on {width}-D features "
            "(extracted with another extract.backbone?)"
        )
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        logits, att = model(torch.from_numpy(x).to(dev)[None])
    finally:
        model.train(was_training)
    a = att[0].double().cpu().numpy()
    weighted = (logits[0].double() * att[0].double()[:, None]).cpu().numpy()
    segments, p = segments_from_cas(weighted, a, classes, cfg, seconds_per_snippet=seconds_per_snippet)
    return VideoLocalization(
        video_id=video_id, segments=segments, video_scores=p, attention=a, cas=weighted[:, :-1], classes=list(classes)
    )


def localize_videos(
    checkpoint_path: str | os.PathLike,
    features: Mapping[str, np.ndarray],
    cfg: LocalizeConfig,
    *,
    seconds_per_snippet: float | Mapping[str, float] = SECONDS_PER_SNIPPET,
    progress: bool = True,
    device: str = "auto",
) -> dict[str, VideoLocalization]:
    """Localize every video of ``features`` with the model of ``checkpoint_path``.

    ``seconds_per_snippet`` is one value for all videos or a per-video Mapping
    (frames_per_snippet / fps of each feature file).
    """
    from hamnet.train import load_checkpoint

    model, classes, _ = load_checkpoint(checkpoint_path, device=resolve_device(device))
    out: dict[str, VideoLocalization] = {}
    for vid in tqdm(list(features), desc="localizing", unit="video", disable=None if progress else True):
        sps = seconds_per_snippet[vid] if isinstance(seconds_per_snippet, Mapping) else seconds_per_snippet
        out[vid] = localize_video(model, features[vid], classes, cfg, seconds_per_snippet=float(sps), video_id=vid)
    return out
