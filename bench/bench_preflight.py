"""Preflight time for a large dataset (target: under 5 s for 1,000 videos).

    python -m bench.bench_preflight [--videos 1000] [--repeats 3]

Builds a folder of ``--videos`` empty ``.mp4`` files (the preflight never decodes), a labels
CSV naming all of them and an ActivityNet-form ground truth with three segments per video,
then times :func:`pipeline.preflight.run_preflight` (config, labels, ground truth, ids, disk
space; the demo config, so no checkpoint is loaded: with real checkpoints add the time of
loading two I3D files, printed separately when ``--checkpoints RGB FLOW`` is given). As a
baseline measured in the same run it prints the time of just listing the folder and reading
the two files, so the ratio says what the checks add.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from core.activitynet import read_ground_truth_json
from pipeline.preflight import check_checkpoints, run_preflight
from pipeline.videos import discover_videos
from storage.labels import read_labels_csv


def build(root: Path, n: int) -> tuple[Path, Path, Path]:
    videos = root / "videos"
    videos.mkdir()
    db = {}
    rows = ["video,label"]
    for i in range(n):
        name = f"video_{i:06d}"
        (videos / f"{name}.mp4").write_bytes(b"")
        rows.append(f"{name}.mp4,Class{i % 20}")
        db[name] = {
            "subset": "test",
            "duration": 180.0,
            "annotations": [{"segment": [10.0 * k, 10.0 * k + 5.0], "label": f"Class{i % 20}"} for k in range(3)],
        }
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    gt = root / "gt.json"
    gt.write_text(json.dumps({"version": "bench", "database": db}), encoding="utf-8")
    return videos, labels, gt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoints", nargs=2, metavar=("RGB", "FLOW"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos, labels, gt = build(root, a.videos)
        base, full = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            discover_videos(videos)
            read_labels_csv(labels)
            read_ground_truth_json(gt)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = run_preflight(
                config_name="demo",
                overrides="",
                output_dir=root / "out",
                video_dir=videos,
                labels=labels,
                ground_truth=gt,
            )
            full.append(time.perf_counter() - t)
            assert not res.errors, res.errors
        print(f"videos: {a.videos}")
        print(f"baseline (list folder, read labels and ground truth): {min(base):.3f} s")
        print(
            f"preflight (all checks, no checkpoints):               {min(full):.3f} s  ({min(full) / min(base):.1f}x baseline)"
        )
        if a.checkpoints:
            import extractors.checkpoints  # noqa: F401 -- torch's import (~2 s) is paid by every run anyway

            t = time.perf_counter()
            problems = check_checkpoints(
                {"random_backbone": False, "rgb_checkpoint": a.checkpoints[0], "flow_checkpoint": a.checkpoints[1]}
            )
            print(f"checkpoints: {time.perf_counter() - t:.3f} s, problems: {problems}")


if __name__ == "__main__":
    main()
