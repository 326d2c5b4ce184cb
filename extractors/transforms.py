"""Per-frame geometry and value scaling (all numpy/OpenCV, no torch).

Resize-short-side-then-centre-crop is done as ONE affine warp whose output is only the crop.
``cv2.resize`` with bilinear interpolation samples the source at
``(x_dst + 0.5) / scale - 0.5``; the warp below uses exactly that mapping shifted by the crop
offset, so it gives the same pixels (up to OpenCV's fixed-point rounding, <= 1 grey level)
while its cost and memory depend only on the crop size. That matters for degenerate inputs:
a 4 x 4000 frame "resized" to short side 256 would otherwise be a 256 x 256000 image.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_crop_matrix(height: int, width: int, resize_short: int, crop: int) -> np.ndarray:
    """2x3 affine matrix mapping source pixels to the centre crop of the resized frame."""
    if height < 1 or width < 1:
        raise ValueError(f"frame has no pixels ({width}x{height})")
    if height <= width:
        new_h, new_w = resize_short, max(resize_short, int(round(width * resize_short / height)))
    else:
        new_w, new_h = resize_short, max(resize_short, int(round(height * resize_short / width)))
    sx, sy = new_w / width, new_h / height
    x0, y0 = (new_w - crop) // 2, (new_h - crop) // 2
    return np.array([[sx, 0.0, 0.5 * sx - 0.5 - x0], [0.0, sy, 0.5 * sy - 0.5 - y0]], dtype=np.float64)


def resize_crop(frame: np.ndarray, resize_short: int, crop: int) -> np.ndarray:
    """Resize so the short side is ``resize_short`` (bilinear), then centre-crop ``crop`` x ``crop``."""
    h, w = frame.shape[:2]
    m = resize_crop_matrix(h, w, resize_short, crop)
    out = cv2.warpAffine(frame, m, (crop, crop), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2 and frame.ndim == 3:  # OpenCV drops a singleton channel axis
        out = out[:, :, None]
    return out


def apply_rotation(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate a frame counter-clockwise by ``degrees`` (a multiple of 90), as a player would.

    PyAV's ``VideoFrame.rotation`` is the counter-clockwise angle of the stream's display
    matrix; ``np.rot90`` with positive k also rotates counter-clockwise (row 0 at the top).
    Angles that are not multiples of 90 are rounded to the nearest one.
    """
    k = int(round(float(degrees) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def rgb_to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., H, W, 3] -> uint8 grey [..., H, W] (ITU-R 601 weights, as cv2)."""
    if frames.ndim == 3:
        return cv2.cvtColor(frames, cv2.COLOR_RGB2GRAY)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """Map uint8 0..255 to float32 [-1, 1] (RGB pixels, and quantised flow alike)."""
    return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
