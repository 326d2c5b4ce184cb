"""Cutting the 25 fps frame sequence into 16-frame snippets.

Rule (docs/extraction.md): with N frames at 25 fps, T = ceil(N / 16) snippets; snippet k holds
frames 16k .. 16k+15. The last snippet, when partial, is padded by repeating its last frame.
Flow has one field fewer than frames (field i goes from frame i to frame i+1); field i is
assigned to frame i, and the missing field(s) at the end are filled by repeating the last
field -- so RGB and flow snippets cover the same frames and have the same T. Nothing at the
end of a video is dropped, and T is within one of duration * 25 / 16 (the length of the
public WTAL features). At least two frames are needed (one flow field).
"""

from __future__ import annotations

import math

import numpy as np


def num_snippets(n_frames: int, frames_per_snippet: int = 16) -> int:
    """T = ceil(N / frames_per_snippet); 0 for N = 0."""
    if n_frames < 0 or frames_per_snippet < 1:
        raise ValueError(f"bad n_frames={n_frames} / frames_per_snippet={frames_per_snippet}")
    return math.ceil(n_frames / frames_per_snippet)


def pad_to(frames: np.ndarray, length: int, *, fill: np.ndarray | None = None) -> np.ndarray:
    """Pad [n, ...] to [length, ...] by repeating the last element (or ``fill`` when n = 0)."""
    n = frames.shape[0]
    if n == length:
        return frames
    if n > length:
        raise ValueError(f"cannot pad {n} frames down to {length}")
    last = frames[-1] if n else fill
    if last is None:
        raise ValueError("nothing to pad with: no frames and no fill value")
    reps = np.broadcast_to(last, (length - n, *last.shape))
    return np.concatenate([frames, reps], axis=0) if n else np.ascontiguousarray(reps)


def snippet_arrays(rgb: np.ndarray, flow: np.ndarray, frames_per_snippet: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Whole-video version of the rule: rgb [N, ...] and flow [N-1, ...] ->
    [T, frames_per_snippet, ...] each (used for tests and short clips)."""
    n = rgb.shape[0]
    if n < 2 or flow.shape[0] != n - 1:
        raise ValueError(f"need N >= 2 frames and N-1 flow fields, got {n} and {flow.shape[0]}")
    t = num_snippets(n, frames_per_snippet)
    total = t * frames_per_snippet
    return (
        pad_to(rgb, total).reshape(t, frames_per_snippet, *rgb.shape[1:]),
        pad_to(flow, total).reshape(t, frames_per_snippet, *flow.shape[1:]),
    )
