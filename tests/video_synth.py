"""Synthetic test videos written with PyAV (no external files).

The standard clip is a textured square moving a known number of pixels per frame over a
flat grey background, so decoded frame counts, timing and optical flow can be checked against
exact expectations.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def texture(size: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (uint8, size x size): trackable by TV-L1, not aliasing."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size, size), dtype=np.uint8)
    tex = cv2.GaussianBlur(noise, (0, 0), 1.5).astype(np.float32)
    tex = (tex - tex.mean()) / (tex.std() + 1e-6) * 50 + 128
    return np.clip(tex, 0, 255).astype(np.uint8)


def moving_square_frames(
    n: int,
    width: int = 64,
    height: int = 64,
    square: int = 24,
    dx: float = 2,
    dy: float = 1,
    seed: int = 0,
    static_background: bool = False,
) -> np.ndarray:
    """n RGB frames: the square's top-left corner is at (8 + i*dx, 8 + i*dy) in frame i.
    The background is flat grey, or a fixed texture with ``static_background``."""
    tex = texture(square, seed)
    frames = np.full((n, height, width, 3), 100, np.uint8)
    if static_background:
        frames[:] = (texture(max(width, height), seed + 1000)[:height, :width] // 2 + 64)[None, :, :, None]
    for i in range(n):
        x, y = 8 + int(round(i * dx)), 8 + int(round(i * dy))
        x2, y2 = min(x + square, width), min(y + square, height)
        if x2 > x and y2 > y:
            frames[i, y:y2, x:x2] = tex[: y2 - y, : x2 - x, None]
    return frames


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float | Fraction = 25,
    *,
    codec: str = "libx264",
    pts_seconds: Sequence[float] | None = None,
    rotation: int | None = None,
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
) -> Path:
    """Encode uint8 RGB frames [n, H, W, 3]. ``pts_seconds`` gives variable frame times
    (written with a 1/1000 time base); ``rotation`` sets the display matrix (counter-clockwise)."""
    path = Path(path)
    rate = Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = pix_fmt
        s.options = options or ({"crf": "1"} if codec == "libx264" else {})
        if pts_seconds is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts_seconds is not None:
                vf.pts = int(round(pts_seconds[i] * 1000))
                vf.time_base = Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """A file with one audio stream and no video (AAC in .mp4)."""
    path = Path(path)
    rate = 16000
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        s.layout = "mono"
        n = int(seconds * rate)
        t = np.arange(n) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="fltp", layout="mono")
            fr.sample_rate = rate
            fr.pts = start
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
