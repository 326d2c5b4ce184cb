"""Import the public W-TALC-format I3D features into the feature store.

The W-TALC / HAM-Net feature files (``Thumos14reduced-I3D-JOINTFeatures.npy``,
``ActivityNet1.2-I3D-JOINTFeatures.npy``) are NumPy object arrays: one ``T_i x 2048``
float array per video, in the order of the annotation folder's ``videoname.npy``. The first
1024 columns are the RGB stream, the last 1024 the flow stream (the W-TALC convention; the
DESIGN's feature store keeps them as separate ``rgb`` / ``flow`` datasets, and
``FeatureFile.joint()`` concatenates them back in the same order). Snippets are 16 frames
at 25 fps. The file is a pickle, so it is read with :func:`storage.safe_pickle.safe_load_npy`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.activitynet import AnnotationError
from storage.annotations import read_wtalc_annotations
from storage.featstore import FeatureStoreError, feature_path, safe_video_id, write_features
from storage.safe_pickle import safe_load_npy

FPS = 25.0
FRAMES_PER_SNIPPET = 16


class WtalcImportError(ValueError):
    """The features file does not match its annotations; the message names the file."""


def import_wtalc_features(
    features_npy: str | os.PathLike,
    annotation_dir: str | os.PathLike,
    store_dir: str | os.PathLike,
    *,
    video_ids: str = "videoname",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Write one feature-store HDF5 per video from a W-TALC joint features file.

    Video ids come from the annotation folder (``videoname.npy``, or the YouTube id with
    ``video_ids="youtube"``), made file-safe with :func:`safe_video_id`; durations from its
    ``duration.npy``. Existing files are kept unless ``overwrite`` (they are complete:
    the store writes atomically), so an interrupted import resumes.
    Returns ``{video_id: path}`` in file order.
    """
    features_npy = Path(features_npy)
    ann = read_wtalc_annotations(annotation_dir, video_ids=video_ids)
    order: list[str] = ann["order"]
    feats = safe_load_npy(features_npy)
    if (feats.dtype == object and feats.ndim != 1) or (feats.dtype != object and feats.ndim != 3):
        raise WtalcImportError(
            f"{features_npy}: expected a 1-D object array of per-video T x D arrays (or an N x T x D array), "
            f"got {feats.dtype} {feats.shape}"
        )
    if len(feats) != len(order):
        raise WtalcImportError(
            f"{features_npy}: holds {len(feats)} videos but {annotation_dir}/videoname.npy lists {len(order)}"
        )
    ids = [safe_video_id(v) for v in order]
    if len(set(ids)) != len(ids):
        raise WtalcImportError(f"{annotation_dir}: video names collide after making them file-safe")
    out: dict[str, Path] = {}
    for i in tqdm(range(len(order)), desc="import W-TALC features", unit="video", disable=not progress):
        key, vid = order[i], ids[i]
        path = feature_path(store_dir, vid)
        out[vid] = path
        if path.exists() and not overwrite:
            continue
        x = np.asarray(feats[i])
        if x.ndim != 2 or x.shape[1] % 2 or x.shape[0] == 0:
            raise WtalcImportError(
                f"{features_npy}: video {i} ({key}) has features of shape {x.shape}, expected T x 2D with T > 0"
            )
        d = x.shape[1] // 2
        entry = ann["database"][key]
        duration = entry["duration"] if entry["duration"] is not None else x.shape[0] * FRAMES_PER_SNIPPET / FPS
        settings: dict[str, Any] = {
            "source": "wtalc-features",
            "features_file": str(features_npy.resolve()),
            "annotation_dir": str(Path(annotation_dir).resolve()),
            "row": i,
            "layout": f"columns 0..{d - 1} rgb, {d}..{2 * d - 1} flow",
            "backbone": "i3d (Kinetics), as distributed by W-TALC",
        }
        try:
            write_features(
                path,
                x[:, :d],
                x[:, d:],
                video_id=vid,
                fps=FPS,
                frames_per_snippet=FRAMES_PER_SNIPPET,
                n_frames=int(round(duration * FPS)),
                duration=float(duration),
                source=f"{features_npy}#{key}",
                settings=settings,
                random_backbone=False,
                extra_attrs={"subset": entry["subset"], "original_name": key},
            )
        except FeatureStoreError as e:
            raise WtalcImportError(f"{features_npy}: video {i} ({key}): {e}") from e
    return out


__all__ = ["import_wtalc_features", "WtalcImportError", "AnnotationError", "FPS", "FRAMES_PER_SNIPPET"]
