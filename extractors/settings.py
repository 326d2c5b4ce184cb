"""Settings of the video front-end: the ``extract:`` section of a config (defaults here only).

The dataclass fields mirror the YAML keys one to one; :meth:`ExtractSettings.from_dict` is
strict (an unknown or misspelt key is an error naming it) so that a typo can never silently
fall back to a default and produce features under the wrong settings.

Two hashes decide what must be recomputed when settings change:

* :meth:`ExtractSettings.flow_key` covers everything that changes the cached flow (sampling
  rate, geometry, flow backend, bound and TV-L1 parameters);
* :meth:`ExtractSettings.feature_key` adds what changes the features on top of that (snippet
  length, backbone, checkpoint contents by sha256, random-backbone seed, precision). RGB-only
  backbones (extractors/backbones.py) use no flow, so their key leaves the flow settings out
  and holds the network's effective input contract instead.

Batch size, device and worker counts are deliberately not part of either key: they change
speed, not results (up to the stated precision tolerance).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.device import check_device_name
from core.hashing import file_sha256, json_hash
from core.strict import strict_kwargs
from extractors.backbones import RGB_ONLY_BACKBONES, effective_contract, is_rgb_only

FLOW_BACKENDS = ("opencv", "fused", "torch")
BACKBONES = ("i3d", *RGB_ONLY_BACKBONES)  # i3d = two-stream (RGB + TV-L1 flow); the rest RGB only
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV ``DualTVL1OpticalFlow`` parameters; the defaults are OpenCV's own."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TVL1Params:
        kw = strict_kwargs(cls, d, "extract.tvl1")
        out = cls(**kw)
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations", "median_filtering"):
            if int(getattr(out, name)) != getattr(out, name) or getattr(out, name) < 1:
                raise ValueError(f"extract.tvl1.{name} must be a positive integer, got {getattr(out, name)!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExtractSettings:
    """All knobs of decoding, flow and I3D feature extraction (see docs/extraction.md)."""

    fps: float = 25.0
    frames_per_snippet: int = 16
    resize_short: int = 256
    crop: int = 224
    flow_backend: str = "fused"  # bit-identical to OpenCV on the real clips, ~8x faster (docs/performance.md)
    flow_bound: float = 20.0
    flow_workers: int = 0
    tvl1: TVL1Params = field(default_factory=TVL1Params)
    backbone: str = "i3d"
    rgb_checkpoint: str | None = None
    flow_checkpoint: str | None = None
    random_backbone: bool = False
    random_seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"extract.{key}: {why}")

        if not self.fps > 0:
            raise bad("fps", f"must be > 0, got {self.fps!r}")
        if int(self.frames_per_snippet) != self.frames_per_snippet or self.frames_per_snippet < 1:
            raise bad("frames_per_snippet", f"must be a positive integer, got {self.frames_per_snippet!r}")
        if self.crop < 1 or self.resize_short < self.crop:
            raise bad("crop", f"need 1 <= crop <= resize_short, got crop={self.crop} resize_short={self.resize_short}")
        if self.flow_backend not in FLOW_BACKENDS:
            raise bad("flow_backend", f"{self.flow_backend!r} is not one of {FLOW_BACKENDS}")
        if not self.flow_bound > 0:
            raise bad("flow_bound", f"must be > 0, got {self.flow_bound!r}")
        if self.flow_workers < 0:
            raise bad("flow_workers", f"must be >= 0 (0 = one per core), got {self.flow_workers}")
        if self.backbone not in BACKBONES:
            raise bad("backbone", f"{self.backbone!r} is not one of {BACKBONES}")
        if is_rgb_only(self.backbone) and self.flow_checkpoint:
            raise bad("flow_checkpoint", f"backbone {self.backbone!r} is RGB only; unset flow_checkpoint")
        if self.batch_size < 1:
            raise bad("batch_size", f"must be >= 1, got {self.batch_size}")
        check_device_name(self.device, "extract.device")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"{self.precision!r} is not one of {PRECISIONS}")
        if not isinstance(self.tvl1, TVL1Params):
            raise bad("tvl1", f"must be TVL1Params, got {type(self.tvl1).__name__}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExtractSettings:
        """Build from the ``extract:`` mapping; unknown keys raise ValueError naming them."""
        kw = strict_kwargs(cls, d, "extract")
        if "tvl1" in kw and not isinstance(kw["tvl1"], TVL1Params):
            kw["tvl1"] = TVL1Params.from_dict(kw["tvl1"] or {})
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tvl1"] = self.tvl1.to_dict()
        return d

    def replace(self, **changes: Any) -> ExtractSettings:
        return dataclasses.replace(self, **changes)

    @property
    def num_flow_workers(self) -> int:
        """TV-L1 workers when flow is the only stage: ``flow_workers``, or when 0 the whole
        compute-thread budget (core.threads.cpu_budget: the usable cores or $HAMNET_CPU_THREADS)."""
        if self.flow_workers > 0:
            return int(self.flow_workers)
        from core.threads import cpu_budget

        return cpu_budget()

    def flow_inputs(self) -> dict[str, Any]:
        return {
            "fps": float(self.fps),
            "resize_short": int(self.resize_short),
            "crop": int(self.crop),
            "flow_backend": self.flow_backend,
            "flow_bound": float(self.flow_bound),
            "tvl1": self.tvl1.to_dict(),
        }

    def flow_key(self) -> str:
        """Short hash of the settings that change the flow fields (cache key for flow)."""
        return _hash(self.flow_inputs())

    @property
    def needs_flow(self) -> bool:
        """Whether the backbone has a flow stream (two-stream I3D); RGB-only ones skip TV-L1."""
        return not is_rgb_only(self.backbone)

    def feature_inputs(self) -> dict[str, Any]:
        if not self.needs_flow:
            # Flow settings do not touch RGB-only features, so they stay out of the key.
            return {
                "fps": float(self.fps),
                "frames_per_snippet": int(self.frames_per_snippet),
                "backbone": self.backbone,
                "input": effective_contract(self).to_dict(),
                "random_backbone": bool(self.random_backbone),
                "random_seed": int(self.random_seed) if self.random_backbone else None,
                "rgb_checkpoint_sha256": None if self.random_backbone else checkpoint_sha256(self.rgb_checkpoint),
                "precision": self.precision,
            }
        d = self.flow_inputs()
        d.update(
            frames_per_snippet=int(self.frames_per_snippet),
            backbone=self.backbone,
            random_backbone=bool(self.random_backbone),
            random_seed=int(self.random_seed) if self.random_backbone else None,
            rgb_checkpoint_sha256=None if self.random_backbone else checkpoint_sha256(self.rgb_checkpoint),
            flow_checkpoint_sha256=None if self.random_backbone else checkpoint_sha256(self.flow_checkpoint),
            precision=self.precision,
        )
        return d

    def feature_key(self) -> str:
        """Short hash of everything that changes the features (flow inputs included).

        Checkpoints enter by content (sha256), not by path, so moving a file does not rerun
        extraction and replacing one does.
        """
        return _hash(self.feature_inputs())


def _hash(obj: Any) -> str:
    return json_hash(obj, 12)


def checkpoint_sha256(path: str | os.PathLike | None) -> str | None:
    """sha256 of a checkpoint file; None for no path.

    A missing file is not an error here (the key of a config can be computed before the
    weights are in place); it hashes as ``"missing:<path>"`` and loading will fail loudly.
    """
    if path is None:
        return None
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return f"missing:{Path(path)}"
