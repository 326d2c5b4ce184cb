"""Benchmark the HTML report at THUMOS14 size: 213 test videos (drawn) and 200 training videos.

Ground truth: the real THUMOS14 test annotations and video durations from shared/data when
present (``--data``), else a synthetic set with THUMOS14's shape (213 videos, ~15 segments of
~4 s each, durations 30 s to 15 min). Localization outputs are synthetic: attention and class
activation high inside the ground truth, and a Soft-NMS-like list of predictions (8 decaying
jittered copies of every ground-truth segment, plus false positives), so the report does the
work it does on a real run.

    python -m bench.bench_report [--out /tmp/report_bench] [--workers 0] [--data ../shared/data]

Prints the build time of the report (wall), the size of the index page and of what its first
view loads (index + AP chart), and the total size of the report directory. The output stays in
--out for a look in a browser.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from hamnet.evaluate import evaluate_detection
from pipeline.report import Timeline, VideoOutcome, write_report

REPO = Path(__file__).resolve().parent.parent

SPS = 16 / 25  # seconds per snippet: 16 frames at 25 fps
THUMOS_CLASSES = (
    "BaseballPitch BasketballDunk Billiards CleanAndJerk CliffDiving CricketBowling CricketShot Diving "
    "FrisbeeCatch GolfSwing HammerThrow HighJump JavelinThrow LongJump PoleVault Shotput SoccerPenalty "
    "TennisSwing ThrowDiscus VolleyballSpiking"
).split()


def real_ground_truth(data: Path) -> tuple[dict, dict[str, float]] | None:
    """THUMOS14 test ground truth (official kit files) and durations, or None when absent."""
    meta = data / "thumos14" / "derived" / "thumos14_video_meta.csv"
    if not (data / "thumos14" / "cmcs" / "thumos14-test-annotations").is_dir() or not meta.is_file():
        return None
    from bench.bench_evaluator import thumos14_test_ground_truth

    gt = thumos14_test_ground_truth(data)
    with open(meta, newline="") as fh:
        durations = {r["video"]: float(r["duration_s"]) for r in csv.DictReader(fh)}
    return gt, {v: durations[v] for v in gt["database"] if v in durations}


def synthetic_ground_truth(rng: random.Random, n: int = 213) -> tuple[dict, dict[str, float]]:
    db, durations = {}, {}
    for i in range(n):
        vid = f"video_test_{i:07d}"
        d = min(900.0, max(30.0, rng.lognormvariate(math.log(180), 0.7)))
        labels = [rng.choice(THUMOS_CLASSES)] + ([rng.choice(THUMOS_CLASSES)] if rng.random() < 0.15 else [])
        anns, t = [], rng.uniform(0, 10)
        while t < d - 5 and len(anns) < 60:
            length = max(0.5, rng.gauss(4.5, 2.5))
            anns.append({"segment": [round(t, 1), round(min(d, t + length), 1)], "label": rng.choice(labels)})
            t += length + rng.expovariate(1 / 12)
        db[vid], durations[vid] = {"subset": "test", "annotations": anns}, d
    return {"database": db}, durations


def synthetic_timeline(vid: str, duration: float, anns: list[dict], classes: list[str], rng: random.Random) -> Timeline:
    """Localization-like outputs for one video: signals around the ground truth, Soft-NMS-like predictions."""
    T = max(1, int(duration / SPS))
    nrng = np.random.default_rng(rng.randrange(2**31))
    att = 0.05 + 0.05 * nrng.random(T)
    cas = -0.3 + 0.3 * nrng.standard_normal((T, len(classes)))
    preds = []
    for a in anns:
        s, e = float(a["segment"][0]), float(a["segment"][1])
        i0 = min(int(s / SPS), T - 1)
        i1 = min(T, max(i0 + 1, int(e / SPS)))
        att[i0:i1] = 0.6 + 0.35 * nrng.random(i1 - i0)
        if a["label"] in classes:
            cas[i0:i1, classes.index(a["label"])] += 2.5
            score = rng.uniform(0.3, 1.3)
            for k in range(8):  # Soft-NMS keeps decayed near-duplicates
                js, je = s + rng.gauss(0, 0.8), e + rng.gauss(0, 0.8)
                preds.append(
                    {
                        "segment": [round(max(0, js), 2), round(max(js + 0.3, je), 2)],
                        "label": a["label"],
                        "score": round(score * 0.8**k, 4),
                    }
                )
    labels = sorted({a["label"] for a in anns if a["label"] in classes}) or [rng.choice(classes)]
    for _ in range(rng.randint(3, 15)):  # false positives
        s = rng.uniform(0, max(1.0, duration - 5))
        preds.append(
            {
                "segment": [round(s, 2), round(s + rng.uniform(1, 10), 2)],
                "label": rng.choice(labels + [rng.choice(classes)]),
                "score": round(rng.uniform(0.02, 0.7), 4),
            }
        )
    scores = np.full(len(classes), 0.01)
    for lab in labels:
        scores[classes.index(lab)] = 0.5
    cas *= att[:, None]
    return Timeline(vid, SPS, att.astype(np.float32), cas.astype(np.float32), classes, scores.astype(np.float32), preds)


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU time of this process, and of its finished children (the figure workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/report_bench")
    ap.add_argument("--workers", type=int, default=0, help="figure processes; 0 = usable cores")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--train-videos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    real = real_ground_truth(Path(args.data))
    gt, durations = real if real else synthetic_ground_truth(rng)
    print(f"ground truth: {'real THUMOS14 test' if real else 'synthetic'}, {len(gt['database'])} test videos")
    classes = sorted({a["label"] for e in gt["database"].values() for a in e["annotations"]} - {"Ambiguous"})
    timelines, outcomes = [], []
    for vid in sorted(gt["database"]):
        d = durations.get(vid, 200.0)
        timelines.append(synthetic_timeline(vid, d, gt["database"][vid]["annotations"], classes, rng))
        outcomes.append(
            VideoOutcome(
                vid, f"{vid}.mp4", "ok", num_snippets=int(d / SPS), duration=d, num_segments=len(timelines[-1].segments)
            )
        )
    train = []
    for i in range(args.train_videos):
        vid = f"video_validation_{i:07d}"
        lab = rng.choice(classes)
        d = rng.uniform(60, 400)
        timelines.append(synthetic_timeline(vid, d, [{"segment": [10.0, 20.0], "label": lab}], classes, rng))
        outcomes.append(
            VideoOutcome(
                vid, f"{vid}.mp4", "ok", num_snippets=int(d / SPS), duration=d, num_segments=len(timelines[-1].segments)
            )
        )
        train.append(vid)
    outcomes.append(VideoOutcome("video_test_broken", "video_test_broken.mp4", "failed", "no video stream"))
    results = {"results": {t.video_id: t.segments for t in timelines if t.video_id in gt["database"]}}
    thresholds = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    res = evaluate_detection(gt, results, thresholds, mode="activitynet")
    metrics = {
        "tiou_thresholds": [float(x) for x in res.tiou_thresholds],
        "map": [float(x) for x in res.map],
        "average_map": float(res.average_map),
        "classes": list(res.classes),
        "ap": res.ap.tolist(),
        "warnings": list(res.warnings),
        "num_videos": len(gt["database"]),
    }
    print(
        f"predictions: {sum(len(t.segments) for t in timelines)} on {len(timelines)} videos; mAP@0.5 {100 * res.map[4]:.1f}%"
    )

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    info = {
        "config": "bench",
        "mode": "activitynet",
        "subset": "test",
        "class_score_weight": 0.2,
        "backbone": {
            "backbone": "i3d",
            "random_backbone": False,
            "rgb_checkpoint_sha256": "0" * 64,
            "flow_checkpoint_sha256": "1" * 64,
        },
    }
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    write_report(
        out / "report.html",
        title="Report benchmark (synthetic localizations)",
        timelines=timelines,
        outcomes=outcomes,
        metrics=metrics,
        ground_truth=gt,
        info=info,
        train_videos=set(train),
        workers=args.workers,
        progress=True,
    )
    wall = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    main_cpu, worker_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    index = (out / "report.html").stat().st_size
    chart = (out / "ap_per_class.png").stat().st_size
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    pages = len(list((out / "videos").glob("*.html")))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"report build: {wall:.1f} s wall (load average {os.getloadavg()[0]:.1f} on {cores} usable cores), "
        f"{pages} timeline pages"
    )
    workers = args.workers or cores
    print(
        f"CPU: {main_cpu:.1f} s in the main process + {worker_cpu:.1f} s in {workers} figure workers; "
        f"on {workers} idle cores that is about {main_cpu + worker_cpu / workers:.0f} s wall"
    )
    print(f"index page: {index / 1e3:.0f} kB; first view (index + AP chart): {(index + chart) / 1e3:.0f} kB")
    print(f"report directory: {total / 1e6:.1f} MB in {sum(1 for p in out.rglob('*') if p.is_file())} files -> {out}")


if __name__ == "__main__":
    main()
