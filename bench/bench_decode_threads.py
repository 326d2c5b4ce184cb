"""Decode speed with slice threading against frame threading ("AUTO", the pipeline's choice).

    python -m bench.bench_decode_threads [VIDEO] [--repeats 5]

Times ``extractors.decode.iter_frames`` (decode + 25 fps resampling + resize/crop to 224, the
decode figure of bench/bench_extract.py) on the same clip with ``THREAD_TYPE`` set to each
mode, alternating runs so machine load hits both alike; prints the best time of each and the
ratio SLICE / AUTO. Frame threading silently loses the frames it holds when the last packet
is damaged (extractors/decode.py); SLICE does not, at a cost this measures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import extractors.decode as decode
from extractors.transforms import resize_crop

DEFAULT = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos" / "mmaction2" / "demo" / "demo.mp4"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    best: dict[str, float] = {}
    frames = 0
    for _ in range(a.repeats):
        for mode in ("AUTO", "SLICE"):
            decode.THREAD_TYPE = mode
            t = time.perf_counter()
            frames = sum(1 for _ in decode.iter_frames(a.video, 25, lambda f: resize_crop(f, 256, 224)))
            best[mode] = min(best.get(mode, float("inf")), time.perf_counter() - t)
    for mode, s in best.items():
        print(f"{mode:5s}: {s:.3f} s  ({frames / s:.1f} frames/s, {frames} frames)")
    print(f"SLICE / AUTO = {best['SLICE'] / best['AUTO']:.3f}")


if __name__ == "__main__":
    main()
