"""The two extraction steps the tasks call, each writing one file per video atomically.

* :func:`write_flow_cache` -- decode, resample, crop and compute quantised TV-L1 flow; store it
  (storage.flowcache). This is the expensive part on CPU, so it is cached separately: a
  changed backbone reruns features, not flow.
* :func:`write_video_features` -- I3D RGB + flow features into the feature store
  (storage.featstore.write_features), reading flow from the cache when given, otherwise
  computing it on the fly, pipelined with decoding and I3D; for an RGB-only backbone
  (extractors/backbones.py) its RGB features alone, with no flow at all.

Both raise extractors.VideoError for unusable videos, and leave no file behind on failure.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from extractors.decode import DecodeStats, open_video
from extractors.settings import ExtractSettings, checkpoint_sha256
from extractors.video_features import extract_video_features, iter_snippets
from storage.featstore import write_features
from storage.flowcache import FlowCacheWriter, atomic_h5, open_flow_cache, write_attrs


def write_flow_cache(
    video_path: str | os.PathLike, out_path: str | os.PathLike, settings: ExtractSettings, *, progress: bool = True
) -> Path:
    """Compute the video's quantised flow and store it at ``out_path`` (atomic). Returns the path."""
    from tqdm import tqdm

    # Reject files that are not videos at all (empty, unreadable, no video stream) before
    # creating the output file and the TV-L1 process pool: bad input is common in large sets.
    container, _ = open_video(video_path)
    container.close()
    st = DecodeStats()
    with atomic_h5(out_path) as f:
        writer = FlowCacheWriter(f, settings.crop)
        bar = tqdm(
            desc=f"flow {Path(video_path).name}", unit="snippet", disable=None if progress else True, leave=False
        )
        try:
            for snip in iter_snippets(video_path, settings, stats=st):
                writer.append(snip.flow)
                bar.update(1)
        finally:
            bar.close()
        write_attrs(
            f,
            {
                "flow_key": settings.flow_key(),
                "settings": settings.flow_inputs(),
                "n_frames": st.n_frames,
                "duration": st.duration,
                "fps": float(settings.fps),
                "source": str(video_path),
                "decode": _decode_attrs(st),
            },
        )
    return Path(out_path)


def _decode_attrs(st: DecodeStats) -> dict[str, Any]:
    d = st.to_dict()
    d.pop("finished", None)
    return d


def write_video_features(
    video_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: ExtractSettings,
    *,
    video_id: str,
    flow_cache: str | os.PathLike | None = None,
    progress: bool = True,
    models: tuple[Any, Any] | None = None,
) -> Path:
    """Extract I3D features of one video into a feature-store file (atomic). Returns the path.

    ``models`` (rgb, flow I3D) may be passed to reuse loaded networks across videos; by default
    they are built from ``settings``. Features from a random backbone are flagged in the file.
    """
    if settings.random_backbone:
        kind = "I3D" if settings.needs_flow else settings.backbone
        warnings.warn(
            # No file name in the text: Python then shows it once per process, not once per video.
            f"extracting with a RANDOM {kind} backbone (seed {settings.random_seed}); "
            "the features are meaningless outside demos and tests, and the file is marked so",
            stacklevel=2,
        )
    if not settings.needs_flow:
        if flow_cache is not None:
            raise ValueError(f"backbone {settings.backbone!r} is RGB only: it takes no flow cache ({flow_cache})")
        return _write_rgb_only(video_path, out_path, settings, video_id, progress, models)
    if flow_cache is not None:
        with open_flow_cache(flow_cache, settings.flow_key()) as cached:
            res = extract_video_features(video_path, settings, models=models, cached_flow=cached, progress=progress)
    else:
        res = extract_video_features(video_path, settings, models=models, progress=progress)
    st = res.stats
    rgb_sha = None if settings.random_backbone else checkpoint_sha256(settings.rgb_checkpoint)
    flow_sha = None if settings.random_backbone else checkpoint_sha256(settings.flow_checkpoint)
    recorded = settings.to_dict() | {
        "rgb_checkpoint_sha256": rgb_sha,
        "flow_checkpoint_sha256": flow_sha,
        "flow_key": settings.flow_key(),
        "feature_key": settings.feature_key(),
        "decode": _decode_attrs(st),
    }
    return write_features(
        out_path,
        res.rgb,
        res.flow,
        video_id=video_id,
        fps=settings.fps,
        frames_per_snippet=settings.frames_per_snippet,
        n_frames=st.n_frames,
        duration=st.duration,
        source=str(video_path),
        settings=recorded,
        random_backbone=settings.random_backbone,
        extra_attrs={
            "rgb_checkpoint_sha256": rgb_sha or "",
            "flow_checkpoint_sha256": flow_sha or "",
            "feature_key": settings.feature_key(),
            "flow_key": settings.flow_key(),
            "flow_from_cache": flow_cache is not None,
        },
    )


def _write_rgb_only(
    video_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: ExtractSettings,
    video_id: str,
    progress: bool,
    models: tuple[Any, Any] | None,
) -> Path:
    """The RGB-only branch of :func:`write_video_features`: no flow stream in the file."""
    from extractors.rgb_features import extract_rgb_features

    res = extract_rgb_features(video_path, settings, model=models[0] if models else None, progress=progress)
    st = res.stats
    rgb_sha = None if settings.random_backbone else checkpoint_sha256(settings.rgb_checkpoint)
    recorded = settings.to_dict() | {
        "rgb_checkpoint_sha256": rgb_sha,
        "feature_key": settings.feature_key(),
        "input_contract": res.contract.to_dict(),
        "decode": _decode_attrs(st),
    }
    return write_features(
        out_path,
        res.rgb,
        None,
        video_id=video_id,
        fps=settings.fps,
        frames_per_snippet=settings.frames_per_snippet,
        n_frames=st.n_frames,
        duration=st.duration,
        source=str(video_path),
        settings=recorded,
        random_backbone=settings.random_backbone,
        extra_attrs={
            "backbone": settings.backbone,
            "rgb_checkpoint_sha256": rgb_sha or "",
            "feature_key": settings.feature_key(),
            "input_contract": json.dumps(res.contract.to_dict()),
            "flow_from_cache": False,
        },
    )


def fit_model_to_features(model_cfg: Any, settings: ExtractSettings) -> Any:
    """HAM-Net's ModelConfig with ``feature_dim`` = the width the backbone produces.

    The width is a property of the backbone (2048 = 1024 RGB + 1024 flow for two-stream I3D,
    1024 for s3d, 768 for swin3d_t ...), known before any extraction, so the pipeline derives
    it instead of asking users to keep ``model.feature_dim`` in step with ``extract.backbone``.
    A differing config value is replaced and logged.
    """
    import dataclasses
    import logging

    from extractors.backbones import joint_feature_dim

    width = joint_feature_dim(settings.backbone)
    if model_cfg.feature_dim != width:
        logging.getLogger("hamnet.tasks").info(
            "model.feature_dim %d -> %d: the width of backbone %r features",
            model_cfg.feature_dim,
            width,
            settings.backbone,
        )
        model_cfg = dataclasses.replace(model_cfg, feature_dim=width)
    return model_cfg
