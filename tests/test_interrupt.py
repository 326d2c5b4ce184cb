"""SIGTERM / Ctrl-C during TV-L1: every child process ends, one line is printed, nothing partial is left.

The command runs in its own session, so every process it starts (the TV-L1 pool's workers and
multiprocessing's resource tracker, which are re-parented to init if orphaned) can be found
through /proc by session id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.video_synth import moving_square_frames, write_video

REPO = Path(__file__).resolve().parent.parent


def session_members(sid: int) -> list[int]:
    """Pids of live (not zombie) processes in session ``sid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(d.name))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_flow_ends_every_child_and_prints_one_line(tmp_path, sig):
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = moving_square_frames(25 * 20, 160, 120, seed=3)
    write_video(videos / "long.mp4", np.asarray(frames), 25)
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\nlong.mp4,Jump\n", encoding="utf-8")
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "luigi", "--module", "tasks", "RunAll", "--local-scheduler",
        "--video-dir", str(videos), "--labels", str(labels), "--output-dir", str(out), "--config", "demo",
        # The OpenCV backend's process pool is what could be orphaned (the fused default uses threads).
        "--overrides", "extract.flow_backend=opencv extract.flow_workers=2 extract.resize_short=128 extract.crop=112",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        # Parent + resource tracker + two TV-L1 workers, and flow being written.
        while time.time() < deadline and not (
            len(session_members(proc.pid)) >= 4 and list((out / "flow").rglob(".*.partial"))
        ):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert len(session_members(proc.pid)) >= 4, "the TV-L1 pool never started"
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=30)
        time.sleep(10)
        assert session_members(proc.pid) == [], "processes of the run outlived it"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Python ends an uncaught KeyboardInterrupt by re-raising SIGINT (130 in a shell).
    assert proc.returncode == -signal.SIGINT, proc.returncode
    assert "Traceback" not in stderr + stdout, stderr
    lines = [ln for ln in stderr.splitlines() if "interrupted" in ln]
    assert lines == ["interrupted: partial files were removed; run the same command again to resume"], stderr
    assert list(out.rglob("*.partial")) == []
