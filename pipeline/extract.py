"""The two extraction steps the tasks call, each writing one file per video atomically.

* :func:`write_flow_cache` -- decode, resample, crop and compute quantised TV-L1 flow; store it
  (storage.flowcache). This is the expensive part on CPU, so it is cached separately: a
  changed backbone reruns features, not flow.
* :func:`write_video_features` -- I3D RGB + flow features into the feature store
  (storage.featstore.write_features), reading flow from the cache when given, otherwise
  computing it on the fly, pipelined with decoding and I3D.

Both raise extractors.VideoError for unusable videos, and leave no file behind on failure.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from extractors.decode import DecodeStats
from extractors.settings import ExtractSettings, checkpoint_sha256
from extractors.video_features import extract_video_features, iter_snippets
from storage.featstore import write_features
from storage.flowcache import FlowCacheWriter, atomic_h5, open_flow_cache, write_attrs


def write_flow_cache(
    video_path: str | os.PathLike, out_path: str | os.PathLike, settings: ExtractSettings, *, progress: bool = True
) -> Path:
    """Compute the video's quantised flow and store it at ``out_path`` (atomic). Returns the path."""
    from tqdm import tqdm

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
        warnings.warn(
            # No file name in the text: Python then shows it once per process, not once per video.
            f"extracting with a RANDOM I3D backbone (seed {settings.random_seed}); "
            "the features are meaningless outside demos and tests, and the file is marked so",
            stacklevel=2,
        )
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
