"""Export throughput on a synthetic store, and the cost of the NumPy-1-compatible pickler.

    python -m bench.bench_export [--videos 40] [--snippets 400] [--dim 1024]

Prints seconds and MB/s per format (each run alone, fresh output folder), and the time to
write the W-TALC joint features file with our pickler (storage/export.py) against
``np.save`` of the same object array measured in the same run (the baseline), as a ratio.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from storage.export import _object_array, _save_npy, export_store, plan_export
from storage.featstore import feature_path, write_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--snippets", type=int, default=400)
    ap.add_argument("--dim", type=int, default=1024, help="per stream")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        store = tmp / "store"
        labels = {}
        for i in range(a.videos):
            T = int(a.snippets * rng.uniform(0.5, 1.5))
            x = rng.random((T, 2 * a.dim), dtype=np.float32)
            vid = f"video_{i:04d}"
            write_features(
                feature_path(store, vid), x[:, : a.dim], x[:, a.dim :], video_id=vid, fps=25.0,
                frames_per_snippet=16, n_frames=16 * T, duration=T * 0.64, source=f"{vid}.mp4",
            )  # fmt: skip
            labels[vid] = [f"class{i % 5}"]
        plan = plan_export(store, labels=labels)
        mb = sum(v.num_snippets for v in plan.videos) * 2 * a.dim * 4 / 1e6
        print(f"{a.videos} videos, {mb:.0f} MB of joint float32 features")
        for fmt in ("wtalc", "opentad", "video_features"):
            t0 = time.perf_counter()
            export_store(plan, tmp / f"out_{fmt}", formats=[fmt], progress=False)
            dt = time.perf_counter() - t0
            print(f"  {fmt:15s} {dt:6.2f} s  {mb / dt:6.0f} MB/s")
        joint = _object_array(
            [np.load(tmp / "out_opentad" / "opentad" / "features" / f"{v.video_id}.npy") for v in plan.videos]
        )
        t0 = time.perf_counter()
        with open(tmp / "baseline.npy", "wb") as fh:
            np.save(fh, joint, allow_pickle=True)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        _save_npy(tmp / "ours.npy", joint)
        ours = time.perf_counter() - t0
        print(f"  joint file: np.save {base:.2f} s, ours {ours:.2f} s, ratio ours/np.save = {ours / base:.2f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
