"""Benchmark hamnet.evaluate against the loop-based reference on a THUMOS14-test-sized input.

Ground truth: the real THUMOS14 test annotations (213 videos, 3358 segments, 99 Ambiguous) from
the official-kit text files in shared/data. Predictions: synthetic, 3/5 jittered copies of
ground-truth segments (sometimes with the wrong class), 2/5 random segments on random videos.

    python -m bench.bench_evaluator [--predictions 50000] [--repeat 5] [--data ../shared/data]

Prints the time of the vectorised evaluator (best and median of --repeat runs, wall and CPU),
the time of the reference (one run), their ratio, and whether the APs agree bit for bit.
Timings are noisy on a shared machine; the ratio is measured within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from hamnet.evaluate import THUMOS14_TIOU_THRESHOLDS, evaluate_detection
from tests.reference_anet_eval import reference_activitynet, reference_thumos_kit

REPO = Path(__file__).resolve().parent.parent


def thumos14_test_ground_truth(data: Path) -> dict:
    """ActivityNet-form ground truth from the official kit files (Ambiguous kept as a label)."""
    folder = data / "thumos14" / "cmcs" / "thumos14-test-annotations"
    classes = [line.split()[1] for line in (folder / "detclasslist.txt").read_text().splitlines() if line.strip()]
    db: dict[str, dict] = {}
    for label in [*classes, "Ambiguous"]:
        for line in (folder / f"{label}_test.txt").read_text().splitlines():
            if not line.strip():
                continue
            video, start, end = line.split()
            entry = db.setdefault(video, {"subset": "test", "annotations": []})
            entry["annotations"].append({"segment": [float(start), float(end)], "label": label})
    return {"database": db}


def synthetic_predictions(gt: dict, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    segs = [
        (v, a["label"], *a["segment"])
        for v, e in gt["database"].items()
        for a in e["annotations"]
        if a["label"] != "Ambiguous"
    ]
    classes = sorted({s[1] for s in segs})
    videos = list(gt["database"])
    horizon = {v: max(a["segment"][1] for a in e["annotations"]) + 30.0 for v, e in gt["database"].items()}
    results: dict[str, list] = {}
    for i in range(n):
        if i % 5 < 3:
            v, label, s, e = rng.choice(segs)
            length = e - s
            s = max(0.0, s + rng.gauss(0, 0.3 * length))
            e = max(s + 0.04, e + rng.gauss(0, 0.3 * length))
            if rng.random() < 0.1:
                label = rng.choice(classes)
            score = min(1.0, max(0.0, rng.gauss(0.6, 0.2)))
        else:
            v, label = rng.choice(videos), rng.choice(classes)
            s = rng.uniform(0, horizon[v])
            e = s + math.exp(rng.uniform(0, 3))
            score = min(1.0, max(0.0, rng.gauss(0.35, 0.2)))
        results.setdefault(v, []).append(
            {"label": label, "score": round(score, 4), "segment": [round(s, 2), round(e, 2)]}
        )
    return {"version": "bench", "results": results, "external_data": {}}


def timed(fn, repeat: int):
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, walls, cpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("HAMNET_SHARED_DATA", REPO.parent / "shared" / "data"))
    )
    ap.add_argument("--predictions", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()

    gt = thumos14_test_ground_truth(args.data)
    # Round-trip through JSON text, as the CLI reads it (json.load also lays the objects out
    # compactly in memory, which makes walking them several times faster than freshly built dicts).
    text = json.dumps(synthetic_predictions(gt, args.predictions, args.seed))
    pred, load_wall, _ = timed(lambda: json.loads(text), 1)
    n_gt = sum(a["label"] != "Ambiguous" for e in gt["database"].values() for a in e["annotations"])
    n_pred = sum(len(x) for x in pred["results"].values())
    thr = list(THUMOS14_TIOU_THRESHOLDS)
    print(
        f"input: {len(gt['database'])} videos, {n_gt} ground-truth segments, {n_pred} predictions, "
        f"{len(thr)} thresholds ({' '.join(thr)}); json.loads of the {len(text) / 1e6:.1f} MB predictions: "
        f"{load_wall[0]:.3f} s (not included below)"
    )

    for mode, ref_fn in (("activitynet", reference_activitynet), ("thumos14", reference_thumos_kit)):
        res, walls, cpus = timed(lambda mode=mode: evaluate_detection(gt, pred, thr, mode=mode), args.repeat)
        print(
            f"\n[{mode}] hamnet.evaluate: best {min(walls):.3f} s, median {statistics.median(walls):.3f} s wall; "
            f"best {min(cpus):.3f} s CPU  (mAP@0.5 = {res.map[thr.index('0.5')]:.4f}, average {res.average_map:.4f})"
        )
        if args.skip_reference:
            continue
        ref, rw, rc = timed(lambda ref_fn=ref_fn: ref_fn(gt, pred, [float(t) for t in thr]), 1)
        same = ref[0] == res.classes and bool((np.array(ref[1]) == res.ap).all())
        print(f"[{mode}] loop reference:  {rw[0]:.3f} s wall, {rc[0]:.3f} s CPU")
        print(
            f"[{mode}] speed-up (reference / ours, best wall): {rw[0] / min(walls):.0f}x; "
            f"AP identical to the reference: {same} (max |diff| {np.abs(np.array(ref[1]) - res.ap).max():.3g})"
        )


if __name__ == "__main__":
    main()
