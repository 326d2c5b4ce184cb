"""Per-video features from an RGB-only backbone (extractors/backbones.py): no optical flow.

The snippet grid is the same as for two-stream I3D: frames at ``fps`` (25), T = ceil(N / 16)
rows, row k belongs to frames 16k .. 16k+15 and to time 16k/25 s, so HAM-Net's
``seconds_per_snippet`` is unchanged (0.64 s). What differs is the clip the network sees for
row k: the backbone's own ``frames`` frames taken ``1 / sample_fps`` apart (its published
temporal sampling), **centred on the snippet's centre** (frame 16k + 8). Frame j of the clip is
the 25 fps frame with index ``floor(16k + 8 + (j - (frames - 1) / 2) * fps / sample_fps)``,
clamped to the video (the first frame repeats before the start, the last after the end, as the
I3D padding rule repeats it). A 16-frame clip at 25 fps is therefore exactly the snippet's own
frames. Clips of neighbouring rows overlap when the clip is longer than a snippet
(slow_r50: 8 frames over 2.13 s per 0.64 s row).

Streaming: frames are decoded once, in order, and kept only while a pending clip needs them
(at most one clip span plus a snippet), so memory does not grow with the video's length.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from extractors.backbones import InputContract, effective_contract
from extractors.decode import DecodeStats, iter_frames, open_video
from extractors.errors import VideoError
from extractors.settings import ExtractSettings
from extractors.snippets import num_snippets
from extractors.transforms import resize_crop

log = logging.getLogger(__name__)


@dataclass
class RGBFeatureResult:
    rgb: np.ndarray  # [T, D] float32
    stats: DecodeStats
    contract: InputContract
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_snippets(self) -> int:
        return int(self.rgb.shape[0])


def resize_fixed_crop(frame: np.ndarray, height: int, width: int, crop: int) -> np.ndarray:
    """Resize to exactly ``height`` x ``width`` (bilinear, aspect not kept), then centre-crop
    ``crop`` x ``crop`` with torchvision's offsets (``round((size - crop) / 2)``); one warp."""
    h, w = frame.shape[:2]
    sx, sy = width / w, height / h
    x0, y0 = int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5 - x0], [0.0, sy, 0.5 * sy - 0.5 - y0]], dtype=np.float64)
    return cv2.warpAffine(frame, m, (crop, crop), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def frame_transform(contract: InputContract) -> Callable[[np.ndarray], np.ndarray]:
    """The per-frame geometry of a contract: short-side resize + centre crop, or fixed size + crop."""
    if len(contract.resize) == 1:
        return lambda f: resize_crop(f, contract.resize[0], contract.crop)
    height, width = contract.resize
    return lambda f: resize_fixed_crop(f, height, width, contract.crop)


def clip_indices(k: int, frames_per_snippet: int, fps: float, contract: InputContract) -> np.ndarray:
    """Unclamped 25 fps frame indices of row k's clip (see the module docstring)."""
    step = fps / contract.sample_fps
    centre = k * frames_per_snippet + frames_per_snippet / 2
    pos = centre + (np.arange(contract.frames) - (contract.frames - 1) / 2) * step
    return np.floor(pos + 1e-9).astype(np.int64)


def iter_clips(
    video_path: str | os.PathLike, settings: ExtractSettings, contract: InputContract, stats: DecodeStats
) -> Iterator[np.ndarray]:
    """Yield row k's clip, uint8 [frames, crop, crop, 3], for k = 0 .. ceil(N / 16) - 1."""
    k_len = settings.frames_per_snippet
    buf: dict[int, np.ndarray] = {}
    k, n_seen = 0, 0

    def clip(idx: np.ndarray, last: int) -> np.ndarray:
        return np.stack([buf[int(j)] for j in np.clip(idx, 0, last)])

    for i, frame in enumerate(iter_frames(video_path, settings.fps, frame_transform(contract), stats)):
        buf[i], n_seen = frame, i + 1
        while k * k_len < n_seen:
            idx = clip_indices(k, k_len, settings.fps, contract)
            if idx.max() > i:
                break
            yield clip(idx, i)
            k += 1
            keep_from = min(max(int(clip_indices(k, k_len, settings.fps, contract).min()), 0), i)
            for old in [j for j in buf if j < keep_from]:
                del buf[old]
    if n_seen == 0:
        raise VideoError(video_path, "no decodable video frames")
    while k * k_len < n_seen:  # the clips that reach past the end: the last frame repeats
        yield clip(clip_indices(k, k_len, settings.fps, contract), n_seen - 1)
        k += 1


class ClipRunner:
    """Batched inference of an RGB-only backbone: uint8 clips -> normalised floats -> features."""

    def __init__(self, backbone: Any, contract: InputContract, device: str = "cpu", precision: str = "fp32"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.mean = torch.tensor(contract.mean, device=self.device).view(1, 3, 1, 1, 1)
        self.std = torch.tensor(contract.std, device=self.device).view(1, 3, 1, 1, 1)
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def normalise(self, clips: np.ndarray):
        """uint8 [B, T, H, W, 3] -> float [B, 3, T, H, W], ``(x / 255 - mean) / std``."""
        x = self.torch.from_numpy(np.ascontiguousarray(clips)).to(self.device).permute(0, 4, 1, 2, 3).float()
        return (x / 255.0 - self.mean) / self.std

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = self.normalise(clips)
        with torch.inference_mode():
            ctx = (
                torch.autocast(self.device.type, dtype=self.dtype)
                if self.dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                f = self.backbone.features(x)
        return f.float().cpu().numpy()


def normalise_clips(clips: np.ndarray, contract: InputContract):
    """:meth:`ClipRunner.normalise` without a network (CPU), for checks against the libraries."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float()
    mean = torch.tensor(contract.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(contract.std).view(1, 3, 1, 1, 1)
    return (x / 255.0 - mean) / std


def extract_rgb_features(
    video_path: str | os.PathLike,
    settings: ExtractSettings,
    *,
    model: Any | None = None,
    progress: bool = True,
) -> RGBFeatureResult:
    """Features [T, D] of one video from the RGB-only backbone of ``settings``.

    ``model`` (an extractors.backbones.RGBBackbone) is built from ``settings`` when omitted.
    Raises VideoError for unusable videos (before any weights are loaded).
    """
    from tqdm import tqdm

    from extractors.checkpoints import cached_backbones
    from extractors.flow import resolve_device

    if settings.needs_flow:
        raise ValueError(f"backbone {settings.backbone!r} is two-stream; use extractors.video_features")
    t_start = time.perf_counter()
    container, stream = open_video(video_path)  # fail fast on unusable input, before loading weights
    est = _estimate(stream, settings)
    container.close()
    contract = effective_contract(settings)
    if not settings.random_backbone and (contract.resize, contract.crop) != ((settings.resize_short,), settings.crop):
        log.info(
            "%s: published input contract (resize %s, crop %d) applies; extract.resize_short=%d / crop=%d "
            "are for i3d and random backbones",
            settings.backbone,
            "x".join(map(str, contract.resize)),
            contract.crop,
            settings.resize_short,
            settings.crop,
        )
    backbone = model if model is not None else cached_backbones(settings)[0]
    run = ClipRunner(backbone, contract, resolve_device(settings.device), settings.precision)
    st = DecodeStats()
    feats: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    t_net = 0.0

    def flush() -> None:
        nonlocal t_net
        t0 = time.perf_counter()
        feats.append(run(np.stack(batch)))
        t_net += time.perf_counter() - t0
        batch.clear()

    name = os.path.basename(str(video_path))
    bar = tqdm(total=est, desc=f"{settings.backbone} {name}", unit="snippet", disable=not progress)
    try:
        for c in iter_clips(video_path, settings, contract, st):
            batch.append(c)
            if len(batch) == settings.batch_size:
                flush()
            bar.update(1)
        if batch:
            flush()
    finally:
        bar.close()
    rgb = np.concatenate(feats).astype(np.float32)
    expected = num_snippets(st.n_frames, settings.frames_per_snippet)
    if rgb.shape[0] != expected:
        raise RuntimeError(f"{video_path}: produced {rgb.shape[0]} snippets, expected {expected}")
    if not np.isfinite(rgb).all():
        raise RuntimeError(
            f"{video_path}: {settings.backbone} produced NaN/inf features (precision {settings.precision})"
        )
    return RGBFeatureResult(rgb, st, contract, {"wall_s": time.perf_counter() - t_start, "net_s": t_net})


def _estimate(stream, settings: ExtractSettings) -> int | None:
    """Snippet count from container metadata, for the progress bar only."""
    try:
        dur = float(stream.duration * stream.time_base) if stream.duration else 0.0
        return num_snippets(int(math.ceil(dur * settings.fps)), settings.frames_per_snippet) or None
    except Exception:
        return None
