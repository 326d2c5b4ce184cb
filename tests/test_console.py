"""What a user sees in the terminal: the pipeline's story in a few lines, ending with the results.

Runs the real ``luigi`` command on a tiny synthetic set (tests/test_tasks.py's settings) with
stderr not a terminal, as in a log-capturing job runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.finish import map_lines, publish_segments
from tests.test_decode import _faststart_copy
from tests.test_tasks import TINY_OVERRIDES, tiny_dataset
from tests.video_synth import moving_square_frames, write_video

REPO = Path(__file__).resolve().parent.parent


def run_luigi(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUIGI")}
    return subprocess.run(
        [sys.executable, "-m", "luigi", "--module", "tasks", *args, "--local-scheduler"],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # about 40 s on the 2-core machine (a whole luigi run)
def test_console_tells_the_story_and_ends_with_results(tmp_path):
    data = tiny_dataset(tmp_path)
    # A damaged file among them: its warning must reach the terminal, summary.txt and its record.
    full = write_video(tmp_path / "src.mp4", moving_square_frames(150, 64, 48), 25)
    raw = _faststart_copy(full, tmp_path / "fs.mp4").read_bytes()
    (data["videos"] / "cut.mp4").write_bytes(raw[: len(raw) // 2 + 2000])
    out = tmp_path / "out"
    r = run_luigi(
        [
            "RunAll",
            "--video-dir", str(data["videos"]), "--labels", str(data["labels"]),
            "--ground-truth", str(data["ground_truth"]), "--output-dir", str(out),
            "--config", "demo", "--overrides", TINY_OVERRIDES,
        ]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    print("\n".join(lines))  # shown by pytest -s, and on failure
    assert len(lines) <= 60, "\n".join(lines)
    text = "\n".join(lines)
    assert "DEBUG" not in text and "Informed scheduler" not in text and "Traceback" not in text
    # The random-backbone warning: once at the start, once in the final block.
    assert sum("RANDOM" in ln for ln in lines) == 2, text
    # The final block: counts, mAP, fixed paths.
    block = lines[[i for i, ln in enumerate(lines) if "HAM-Net run summary" in ln][-1] :]
    assert "videos: 5 ok, 0 failed, 0 files skipped (not videos)" in block
    assert any(ln.startswith("mAP (%) @ tIoU  0.10  0.20") for ln in block), block
    assert f"report:       {out / 'report.html'}" in block
    assert f"segments:     {out / 'segments'}/<video-id>.csv (5 files)" in block
    assert (out / "report.html").is_file() and len(list((out / "segments").glob("*.csv"))) == 5
    damaged = [ln for ln in lines if "of the 150 frames the container claims" in ln]
    assert len(damaged) == 2 and damaged[0].startswith("WARNING: ") and "cut.mp4" in damaged[0]
    assert "WARNING: 1 decoding warnings (damaged or truncated files), e.g.:" in block
    record = json.loads(next((out / "features").rglob("cut.json")).read_text(encoding="utf-8"))
    assert record["status"] == "ok" and any("container claims" in w for w in record["warnings"])
    # summary.txt carries the same numbers.
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert [ln for ln in block if ln.startswith("mAP") or ln.startswith(" " * 15)][0] in summary
    assert block[2] in summary.splitlines()


def test_map_lines_and_segments_folder(tmp_path):
    lines = map_lines(
        {
            "tiou_thresholds": [0.1, 0.5],
            "map": [0.5, 0.25],
            "average_map": 0.375,
            "num_videos": 3,
            "mode": "activitynet",
        }
    )
    assert lines[0] == "mAP (%) @ tIoU  0.10  0.50    avg"
    assert lines[1].split() == ["50.0", "25.0", "37.5"]
    assert map_lines(None) == ["mAP: no ground truth given (--ground-truth), so no evaluation"]
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x", encoding="utf-8")
    dest = tmp_path / "segments"
    dest.mkdir()
    (dest / "old.csv").write_text("from an earlier run", encoding="utf-8")
    assert publish_segments(src, dest) == 1
    assert sorted(p.name for p in dest.iterdir()) == ["a.csv"]
