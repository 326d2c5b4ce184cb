"""A synthetic feature store that poses the completeness problem HAM-Net addresses.

HAM-Net's premise (paper, Introduction): a MIL classifier trained from video-level labels
finds the *most discriminative* snippets of an action and misses its less discriminative
rest, so localizations are too short. This generator builds a feature store with exactly that
structure, at THUMOS14's scale, so that the ablations of the paper (Table 1, Fig. 4) can be
run where the truth is known and cheap to compute:

* every action instance has a short **core** (``core_fraction`` of its snippets, placed at a
  random position inside it) carrying a strong class prototype (``core_strength``) and a
  longer **extent** (the rest of the instance) carrying a weaker but still class-specific
  prototype (``extent_strength``);
* the **background** has its own structure: each video has a few "scenes" drawn from
  ``num_scenes`` shared prototypes, switching with probability ``scene_switch_prob`` per
  snippet, plus temporally correlated AR(1) noise (``temporal_rho``); actions happen on top of
  the current scene;
* white per-snippet noise (``noise_std``) on everything.

All prototypes are random unit vectors and noise is scaled by ``1/sqrt(feature_dim)`` per
dimension, so strengths are vector norms and the difficulty barely depends on
``feature_dim`` (2048 = THUMOS14's I3D RGB+flow; smaller for speed).

Videos, subsets, durations, segments and labels come from real annotations when given (the
W-TALC Thumos14reduced folder: 200 validation + 212 test videos, 6365 segments; or THUMOS14
official txt folders), otherwise they are drawn from distributions matching THUMOS14
(see :func:`draw_thumos_like_annotations`). Everything is seeded. Outputs:
``<out>/features/<video>.h5`` (feature store), ``<out>/gt.json`` (ActivityNet form),
``<out>/labels.csv`` and ``<out>/benchmark.json`` (settings and counts).
docs/completeness_benchmark.md describes the generation step by step.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.activitynet import AMBIGUOUS, video_labels
from core.atomic import write_json_atomic
from storage.annotations import (
    count_segments,
    read_thumos14_annotations,
    read_wtalc_annotations,
    write_ground_truth_json,
)
from storage.featstore import feature_path, safe_video_id, write_features
from storage.labels import write_labels_csv

FPS = 25.0
FRAMES_PER_SNIPPET = 16
SECONDS_PER_SNIPPET = FRAMES_PER_SNIPPET / FPS

THUMOS14_CLASSES = [
    "BaseballPitch",
    "BasketballDunk",
    "Billiards",
    "CleanAndJerk",
    "CliffDiving",
    "CricketBowling",
    "CricketShot",
    "Diving",
    "FrisbeeCatch",
    "GolfSwing",
    "HammerThrow",
    "HighJump",
    "JavelinThrow",
    "LongJump",
    "PoleVault",
    "Shotput",
    "SoccerPenalty",
    "TennisSwing",
    "ThrowDiscus",
    "VolleyballSpiking",
]


@dataclass(frozen=True)
class BenchmarkSettings:
    """How the benchmark is generated; every field is a key of ``benchmark.json``."""

    seed: int = 0
    feature_dim: int = 2048
    core_fraction: float = 0.2  # share of an instance's snippets that form its core
    core_strength: float = 3.0  # norm of the class core prototype added to core snippets
    extent_strength: float = 1.0  # norm of the class extent prototype on the other action snippets
    background_strength: float = 1.5  # norm of the scene prototype on every snippet
    num_scenes: int = 8  # background scene prototypes shared by all videos
    scenes_per_video: int = 3  # scenes a video draws from
    scene_switch_prob: float = 0.02  # per-snippet probability of switching scene
    temporal_rho: float = 0.9  # AR(1) coefficient of the structured background noise
    temporal_noise: float = 0.5  # norm (stationary) of the AR(1) noise
    noise_std: float = 1.0  # norm of the white per-snippet noise
    # Used only when no annotation files are given (drawn THUMOS14-like structure):
    num_train_videos: int = 200
    num_test_videos: int = 212
    num_classes: int = 20

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchmarkSettings:
        known = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise ValueError(f"benchmark settings: unknown key(s) {unknown} (known: {sorted(known)})")
        s = cls(**dict(d))
        if s.feature_dim < 2 or s.feature_dim % 2:
            raise ValueError(f"feature_dim must be an even number >= 2 (rgb and flow halves), got {s.feature_dim}")
        if not 0.0 < s.core_fraction <= 1.0:
            raise ValueError(f"core_fraction must be in (0, 1], got {s.core_fraction}")
        if not 0.0 <= s.temporal_rho < 1.0:
            raise ValueError(f"temporal_rho must be in [0, 1), got {s.temporal_rho}")
        if s.num_scenes < 1 or s.scenes_per_video < 1:
            raise ValueError("num_scenes and scenes_per_video must be >= 1")
        if s.num_classes > len(THUMOS14_CLASSES) or s.num_classes < 1:
            raise ValueError(f"num_classes must be 1..{len(THUMOS14_CLASSES)}, got {s.num_classes}")
        return s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# Structure: which videos, how long, which segments


def draw_thumos_like_annotations(settings: BenchmarkSettings, rng: np.random.Generator) -> dict[str, Any]:
    """Draw ground truth whose statistics follow THUMOS14 (Thumos14reduced).

    Measured on the W-TALC annotations (412 videos): median duration ~170 s (log-normal,
    sigma ~0.6), ~15.4 instances per video (geometric-like, heavy tail), instance length
    median ~3 s (log-normal, sigma ~0.8), one class per video in ~93 % of videos, ~29 % of
    the time covered by actions. Instances do not overlap.
    """
    classes = THUMOS14_CLASSES[: settings.num_classes]
    database: dict[str, Any] = {}
    plan = [("validation", settings.num_train_videos), ("test", settings.num_test_videos)]
    for subset, n in plan:
        for i in range(n):
            vid = f"video_{subset}_{i:07d}"
            duration = float(np.clip(rng.lognormal(math.log(170.0), 0.6), 20.0, 1500.0))
            n_cls = 1 if rng.random() < 0.93 else 2
            labs = list(rng.choice(classes, size=n_cls, replace=False))
            n_inst = int(np.clip(rng.geometric(1 / 15.4), 1, 120))
            lengths = np.clip(rng.lognormal(math.log(3.0), 0.8, size=n_inst), 0.5, 60.0)
            # keep total coverage <= 60 % so instances fit without overlap
            scale = min(1.0, 0.6 * duration / lengths.sum())
            lengths = lengths * scale
            gaps = rng.dirichlet(np.ones(n_inst + 1)) * (duration - lengths.sum())
            t, anns = 0.0, []
            for k in range(n_inst):
                t += gaps[k]
                anns.append(
                    {
                        "segment": [round(t, 1), round(t + lengths[k], 1)],
                        "label": str(labs[k % n_cls] if n_cls == 1 else rng.choice(labs)),
                    }
                )
                t += lengths[k]
            database[vid] = {"subset": subset, "duration": round(duration, 3), "annotations": anns}
    return {"database": database, "classes": classes}


def load_structure(
    *,
    wtalc_annotations: str | os.PathLike | None = None,
    thumos_annotation_dirs: list[str] | None = None,
    thumos_meta: list[str] | None = None,
) -> dict[str, Any]:
    """Real THUMOS14 structure from the W-TALC folder or from official txt folders.

    Official txt folders may lack durations (no meta file): a video then lasts until its
    last segment end plus 10 s. Ambiguous intervals are not actions here (background).
    """
    if wtalc_annotations is not None:
        gt = read_wtalc_annotations(wtalc_annotations)
        gt.pop("order", None)
        return gt
    if not thumos_annotation_dirs:
        raise ValueError("give wtalc_annotations or thumos_annotation_dirs")
    metas: list[str | None] = list(thumos_meta) if thumos_meta else [None] * len(thumos_annotation_dirs)
    if len(metas) != len(thumos_annotation_dirs):
        raise ValueError("give one meta file per THUMOS14 annotation folder (or none)")
    database: dict[str, Any] = {}
    classes: list[str] | None = None
    for d, m in zip(thumos_annotation_dirs, metas):
        gt = read_thumos14_annotations(d, meta_mat=m, include_ambiguous=False)
        classes = classes or gt["classes"]
        for vid, e in gt["database"].items():
            if not e["annotations"]:
                continue  # Ambiguous-only video: no action to place, as in Thumos14reduced
            if e["duration"] is None:
                e = dict(e, duration=max(a["segment"][1] for a in e["annotations"]) + 10.0)
            database[vid] = e
    return {"database": database, "classes": classes}


# --------------------------------------------------------------------------------------
# Features


def snippets_in_duration(duration: float) -> int:
    """Snippets of a video: 16-frame chunks at 25 fps, the last one padded (T = ceil(d*25/16))."""
    return max(1, int(math.ceil(duration * FPS / FRAMES_PER_SNIPPET - 1e-9)))


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Prototypes:
    core: np.ndarray  # C x D
    extent: np.ndarray  # C x D
    scenes: np.ndarray  # S x D


def make_prototypes(settings: BenchmarkSettings, num_classes: int, rng: np.random.Generator) -> Prototypes:
    d = settings.feature_dim
    return Prototypes(_unit(rng, num_classes, d), _unit(rng, num_classes, d), _unit(rng, settings.num_scenes, d))


def snippet_masks(
    annotations: list[dict[str, Any]], classes: list[str], T: int, settings: BenchmarkSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-snippet class index of the core (``-1`` none) and of the extent (``-1`` none).

    Snippet t spans [t, t+1) x 0.64 s; it belongs to an instance when its centre lies inside
    the segment; an instance shorter than a snippet still gets the snippet holding its centre.
    Where instances overlap, the later one in the list wins (THUMOS14 overlaps are rare, and
    CliffDiving/Diving duplicates share one span, so the label listed last owns it).
    """
    core = np.full(T, -1, dtype=np.int64)
    extent = np.full(T, -1, dtype=np.int64)
    centres = (np.arange(T) + 0.5) * SECONDS_PER_SNIPPET
    index = {c: i for i, c in enumerate(classes)}
    for a in annotations:
        if a["label"] == AMBIGUOUS:
            continue
        s, e = a["segment"]
        idx = np.flatnonzero((centres >= s) & (centres <= e))
        if idx.size == 0:
            mid = min(T - 1, max(0, int((s + e) / 2 / SECONDS_PER_SNIPPET)))
            idx = np.array([mid])
        c = index[a["label"]]
        n_core = max(1, int(round(settings.core_fraction * idx.size)))
        start = int(rng.integers(0, idx.size - n_core + 1))
        extent[idx] = c
        core[idx] = -1
        core[idx[start : start + n_core]] = c
        extent[idx[start : start + n_core]] = -1
    return core, extent


def video_features(
    T: int,
    core: np.ndarray,
    extent: np.ndarray,
    protos: Prototypes,
    settings: BenchmarkSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """T x D features of one video (see the module docstring for the model)."""
    from scipy.signal import lfilter

    d = settings.feature_dim
    # background scenes: a per-video subset, switching as a sticky Markov chain
    own = rng.choice(settings.num_scenes, size=min(settings.scenes_per_video, settings.num_scenes), replace=False)
    switches = rng.random(T) < settings.scene_switch_prob
    picks = rng.integers(0, len(own), size=T)
    scene = np.empty(T, dtype=np.int64)
    cur = int(rng.integers(0, len(own)))
    for t in range(T):
        if switches[t]:
            cur = int(picks[t])
        scene[t] = own[cur]
    x = settings.background_strength * protos.scenes[scene]
    # AR(1) noise with stationary per-dimension std temporal_noise / sqrt(d)
    rho = settings.temporal_rho
    innov = rng.standard_normal((T, d)).astype(np.float32) * (
        settings.temporal_noise * math.sqrt(1 - rho * rho) / math.sqrt(d)
    )
    innov[0] /= math.sqrt(1 - rho * rho)  # start in the stationary distribution
    x += lfilter([1.0], [1.0, -rho], innov, axis=0).astype(np.float32)
    x += rng.standard_normal((T, d)).astype(np.float32) * (settings.noise_std / math.sqrt(d))
    m = core >= 0
    x[m] += settings.core_strength * protos.core[core[m]]
    m = extent >= 0
    x[m] += settings.extent_strength * protos.extent[extent[m]]
    return x.astype(np.float32)


def generate_benchmark(
    out_dir: str | os.PathLike,
    settings: BenchmarkSettings = BenchmarkSettings(),
    *,
    structure: Mapping[str, Any] | None = None,
    max_videos_per_subset: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the benchmark into ``out_dir``; returns the summary also written to benchmark.json.

    ``structure``: ground truth (``{"database", "classes"}``) giving videos and segments, e.g.
    from :func:`load_structure`; None draws a THUMOS14-like one. ``max_videos_per_subset``
    keeps the first N videos of each subset (for tests and quick runs).
    Generation is deterministic for a given seed, structure and settings. A video file that
    already exists is rewritten (the store writes atomically).
    """
    out = Path(out_dir)
    rng_struct = np.random.default_rng([settings.seed, 1])
    gt = dict(structure) if structure is not None else draw_thumos_like_annotations(settings, rng_struct)
    classes = list(gt["classes"])
    database = gt["database"]
    if max_videos_per_subset is not None:
        kept: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for vid, e in database.items():
            if seen.get(e["subset"], 0) < max_videos_per_subset:
                kept[vid] = e
                seen[e["subset"]] = seen.get(e["subset"], 0) + 1
        database = kept
    protos = make_prototypes(settings, len(classes), np.random.default_rng([settings.seed, 2]))
    store = out / "features"
    new_db: dict[str, Any] = {}
    fractions = []
    # Videos in the order of their store ids: snippet_truth() replays the same random streams.
    ordered = sorted(database.items(), key=lambda kv: safe_video_id(kv[0]))
    for i, (vid, e) in enumerate(tqdm(ordered, desc="completeness benchmark", unit="video", disable=not progress)):
        sid = safe_video_id(vid)
        rng = np.random.default_rng([settings.seed, 3, i])
        T = snippets_in_duration(float(e["duration"]))
        core, extent = snippet_masks(e["annotations"], classes, T, settings, rng)
        x = video_features(T, core, extent, protos, settings, rng)
        fractions.append(((core >= 0) | (extent >= 0)).mean())
        half = settings.feature_dim // 2
        write_features(
            feature_path(store, sid),
            x[:, :half],
            x[:, half:],
            video_id=sid,
            fps=FPS,
            frames_per_snippet=FRAMES_PER_SNIPPET,
            n_frames=int(round(float(e["duration"]) * FPS)),
            duration=float(e["duration"]),
            source="synthetic:completeness-benchmark",
            settings={"generator": "studies.completeness", **settings.to_dict()},
            random_backbone=False,
            extra_attrs={"synthetic": True, "subset": e["subset"]},
        )
        new_db[sid] = {
            "subset": e["subset"],
            "duration": float(e["duration"]),
            "annotations": [a for a in e["annotations"] if a["label"] != AMBIGUOUS],
        }
    gt_out = {"database": new_db, "classes": classes}
    write_ground_truth_json(out / "gt.json", gt_out)
    write_labels_csv(out / "labels.csv", video_labels(gt_out))
    subsets = sorted({e["subset"] for e in new_db.values()})
    summary = {
        "settings": settings.to_dict(),
        "classes": classes,
        "videos": {s: sum(1 for e in new_db.values() if e["subset"] == s) for s in subsets},
        "segments": {s: count_segments(gt_out, subset=s) for s in subsets},
        "snippets": int(sum(snippets_in_duration(e["duration"]) for e in new_db.values())),
        "action_fraction": float(np.mean(fractions)) if fractions else 0.0,
        "store": str(store),
    }
    write_json_atomic(out / "benchmark.json", summary)
    return summary


def snippet_truth(bench_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per video of a generated benchmark: (core, extent) class index per snippet, -1 for none.

    Recomputed from ``gt.json`` and ``benchmark.json`` by replaying the generator's seeded
    streams (the masks are drawn first from each video's stream), so nothing extra is stored.
    """
    from core.activitynet import read_ground_truth_json

    bench_dir = Path(bench_dir)
    gt = read_ground_truth_json(bench_dir / "gt.json")
    settings = BenchmarkSettings.from_dict(json.loads((bench_dir / "benchmark.json").read_text())["settings"])
    classes = list(gt["classes"])
    out = {}
    for i, vid in enumerate(sorted(gt["database"])):
        e = gt["database"][vid]
        rng = np.random.default_rng([settings.seed, 3, i])
        out[vid] = snippet_masks(e["annotations"], classes, snippets_in_duration(float(e["duration"])), settings, rng)
    return out


def attention_profile(
    checkpoint: str | os.PathLike, bench_dir: str | os.PathLike, *, subset: str = "test", device: str = "cpu"
) -> dict[str, float]:
    """Mean attention of a trained model on core, extent and background snippets of a subset.

    The mechanism the paper claims shows up here directly: a MIL-only model attends to cores
    and much less to extents; HAL/SSAL should raise the attention on extents.
    """
    import torch

    from core.activitynet import read_ground_truth_json
    from hamnet.train import load_checkpoint
    from storage.featstore import FeatureStore

    bench_dir = Path(bench_dir)
    gt = read_ground_truth_json(bench_dir / "gt.json")
    truth = snippet_truth(bench_dir)
    store = FeatureStore(bench_dir / "features")
    model, _, _ = load_checkpoint(checkpoint, device=device)
    sums = {"core": [0.0, 0], "extent": [0.0, 0], "background": [0.0, 0]}
    with torch.no_grad():
        for vid, e in gt["database"].items():
            if e["subset"] != subset:
                continue
            _, att = model(torch.from_numpy(store[vid]).to(device)[None])
            a = att[0].cpu().numpy()
            core, extent = truth[vid]
            for name, m in (("core", core >= 0), ("extent", extent >= 0), ("background", (core < 0) & (extent < 0))):
                sums[name][0] += float(a[m].sum())
                sums[name][1] += int(m.sum())
    return {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in sums.items()}
