"""Synthetic feature stores with planted action segments, for HAM-Net tests.

Each class c has a non-negative prototype on its own block of dimensions; a snippet inside a
planted segment of class c gets ``signal * prototype_c`` added to |Gaussian| noise (features
like I3D's are non-negative), background snippets get noise only.
Ground truth is returned in ActivityNet form with the same snippet-to-seconds rule as the
localizer (start = i0 * sps, end = (i1 + 1) * sps), so a perfect localizer scores mAP 1.
"""

from __future__ import annotations

import numpy as np

SPS = 16 / 25


def planted_dataset(
    n_videos: int,
    num_classes: int = 4,
    feature_dim: int = 64,
    *,
    seed: int = 0,
    t_range: tuple[int, int] = (60, 120),
    seg_range: tuple[int, int] = (8, 20),
    signal: float = 1.5,
    subset: str = "validation",
    prefix: str = "vid",
    prototypes: np.ndarray | None = None,
):
    """Return (features {vid: T x D float32}, labels {vid: [class]}, classes, ground_truth, prototypes)."""
    rng = np.random.default_rng(seed)
    classes = [f"action{c}" for c in range(num_classes)]
    if prototypes is None:
        # Non-negative, class-specific patterns (I3D features are post-ReLU averages): class c
        # lights up its own block of dimensions, with random strengths inside the block.
        prototypes = np.zeros((num_classes, feature_dim))
        for c, block in enumerate(np.array_split(np.arange(feature_dim), num_classes)):
            prototypes[c, block] = rng.uniform(0.5, 1.5, size=len(block))
        # plus a weaker pattern shared by all actions ("something is moving")
        prototypes += 0.3 * rng.uniform(0.5, 1.5, size=feature_dim)
    features, labels, database = {}, {}, {}
    for v in range(n_videos):
        vid = f"{prefix}{v:03d}"
        T = int(rng.integers(*t_range))
        # neighbouring snippets overlap in content, so the noise is mildly correlated in time
        noise = np.abs(rng.normal(size=(T + 2, feature_dim)))
        x = ((noise[:-2] + noise[1:-1] + noise[2:]) / 3).astype(np.float32)
        # every class is the main action of an equal share of the videos; 30% get a second one
        chosen = [v % num_classes]
        if rng.random() < 0.3:
            chosen.append(int(rng.choice([c for c in range(num_classes) if c != chosen[0]])))
        anns, free = [], np.ones(T, bool)
        for c in chosen:
            for _ in range(int(rng.integers(1, 3))):
                for _try in range(20):
                    L = int(rng.integers(*seg_range))
                    s = int(rng.integers(0, T - L))
                    # keep a gap of 2 snippets between segments so they stay separate instances
                    if free[max(0, s - 2) : s + L + 2].all():
                        free[s : s + L] = False
                        x[s : s + L] += signal * prototypes[c]
                        anns.append({"segment": [s * SPS, (s + L) * SPS], "label": classes[c]})
                        break
        labels[vid] = sorted({a["label"] for a in anns})
        features[vid] = x
        database[vid] = {"subset": subset, "duration": T * SPS, "annotations": anns}
    return features, labels, classes, {"database": database}, prototypes
