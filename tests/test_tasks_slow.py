"""Slow pipeline tests: every kind of bad input, SIGKILL at several points then rerun, and two
workers sharing one luigid scheduler. Run with ``pytest -m slow tests/test_tasks_slow.py``.

They drive the real ``luigi`` command line in subprocesses, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from pipeline.demo import DemoSpec, synthesize_demo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SPEC = DemoSpec(
    num_train=4,
    num_test=2,
    num_classes=2,
    min_seconds=4.0,
    max_seconds=5.0,
    min_action_seconds=1.0,
    max_action_seconds=1.2,
    max_instances=1,
    width=40,
    height=32,
    seed=11,
)
# flow_workers left at its default (one process per core): the real, forking code path.
OVERRIDES = (
    "extract.resize_short=32 extract.crop=32 model.hidden_dim=32 model.attention_hidden=16 "
    "train.batch_size=2 train.num_snippets=8"
)


def luigi_cmd(task: str, data: dict[str, Path], out: Path, overrides: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "luigi",
        "--module",
        "tasks",
        task,
        "--video-dir",
        str(data["videos"]),
        "--labels",
        str(data["labels"]),
        "--ground-truth",
        str(data["ground_truth"]),
        "--output-dir",
        str(out),
        "--config",
        "demo",
        "--overrides",
        overrides,
        *extra,
    ]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def results_of(out: Path) -> tuple[dict, dict]:
    return (
        json.loads((out / "results.json").read_text()),
        json.loads(next((out / "evaluate").glob("*/metrics.json")).read_text()),
    )


def features_of(out: Path) -> dict[str, np.ndarray]:
    feats = {}
    for p in sorted((out / "features").rglob("*.h5")):
        with h5py.File(p, "r") as f:
            feats[p.name] = np.concatenate([f["rgb"][()], f["flow"][()]], axis=1)
    return feats


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".partial") or "-luigi-tmp-" in p.name]


# --------------------------------------------------------------------------- bad input


def _write_audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        t = np.arange(16000 * 2) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, i : i + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i
            frame.time_base = Fraction(1, 16000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _write_short(path: Path, n_frames: int) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 40, 32, "yuv420p"
        for i in range(n_frames):
            img = np.full((32, 40, 3), 40 * i % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_bad_input_directory_completes_for_every_good_video(tmp_path):
    data = synthesize_demo(tmp_path / "data", SPEC, progress=False)
    vids = data["videos"]
    good = (vids / "demo_000.mp4").read_bytes()
    (vids / "zero.mp4").write_bytes(b"")
    (vids / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (vids / "text.avi").write_text("not a video at all\n" * 100)
    _write_audio_only(vids / "audio only.mp4")
    _write_short(vids / "tiny.mp4", 1)  # one frame: no flow possible
    corrupt = bytearray(good)
    mid = len(corrupt) // 2
    corrupt[mid : mid + 400] = os.urandom(400)
    (vids / "corrupt middle.mp4").write_bytes(bytes(corrupt))
    (vids / "ünïcödé ñame.mp4").write_bytes(good)
    # two names that collide after sanitising, and one that is only punctuation
    (vids / "a b.mp4").write_bytes(good)
    (vids / "a_b.mp4").write_bytes(good)
    (vids / "%%%.mp4").write_bytes(good)  # sanitises to the fallback id "video"...
    (vids / "&&&.mp4").write_bytes(good)  # ...and so does this one
    (vids / ".hidden.mp4").write_bytes(good)  # hidden: skipped, and listed as such
    out = tmp_path / "out"

    proc = run(luigi_cmd("RunAll", data, out, OVERRIDES + " train.epochs=2", "--local-scheduler"), tmp_path)
    assert proc.returncode == 30, proc.stderr[-4000:]
    index = json.loads(next((out / "index").glob("*.json")).read_text())
    by_src = {v["source"]: v for v in index["videos"]}
    for name in ("zero.mp4", "truncated.mp4", "text.avi", "audio only.mp4", "tiny.mp4"):
        assert by_src[name]["status"] == "failed" and by_src[name]["reason"], name
        assert by_src[name]["reason"] in proc.stderr, name
    for name in ("ünïcödé ñame.mp4", "a b.mp4", "a_b.mp4", "%%%.mp4", "&&&.mp4") + tuple(
        f"demo_{i:03d}.mp4" for i in range(6)
    ):
        assert by_src[name]["status"] == "ok", (name, by_src[name])
    # corrupted frames mid-stream: either decoded around (ok) or rejected with a reason
    assert by_src["corrupt middle.mp4"]["status"] in ("ok", "failed") and (
        by_src["corrupt middle.mp4"]["status"] == "ok" or by_src["corrupt middle.mp4"]["reason"]
    )
    ids = [v["video_id"] for v in index["videos"]]
    assert len(set(ids)) == len(ids)
    assert by_src["a b.mp4"]["video_id"] != by_src["a_b.mp4"]["video_id"]
    assert by_src["%%%.mp4"]["video_id"] != by_src["&&&.mp4"]["video_id"]
    assert ".hidden.mp4" not in by_src
    feature_dir = Path(index["feature_dir"])
    for v in index["videos"]:
        path = feature_dir / f"{v['video_id']}.h5"
        assert path.resolve().parent == feature_dir.resolve()  # nothing escapes the store
        assert path.is_file() == (v["status"] == "ok"), v
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {v["video_id"] for v in index["videos"] if v["status"] == "ok"}
    summary = (out / "summary.txt").read_text()
    for v in index["videos"]:
        assert v["video_id"] in summary
    assert "SKIPPED .hidden.mp4: hidden file" in summary
    assert not leftovers(out)


# --------------------------------------------------------------------------- kill and rerun


def _start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen, cond, timeout: float = 300) -> bool:
    """SIGKILL the run's whole process group (it and its flow workers) once ``cond()`` holds."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if cond():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError("condition never held")


def test_sigkill_at_any_point_then_rerun_gives_identical_results(tmp_path):
    data = synthesize_demo(tmp_path / "data", SPEC, progress=False)
    overrides = OVERRIDES + " train.epochs=150 train.checkpoint_every=5"
    ref = tmp_path / "ref"
    proc = run(luigi_cmd("RunAll", data, ref, overrides, "--local-scheduler"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    out = tmp_path / "killed"
    cmd = luigi_cmd("RunAll", data, out, overrides, "--local-scheduler")
    log = tmp_path / "killed.log"
    # Kill points: during flow of the first video, after some flow files, during features,
    # during training (a resume file exists), and during localization/report.
    points = [
        lambda: any((out / "flow").rglob(".*.partial")) if (out / "flow").is_dir() else False,
        lambda: len(list((out / "flow").rglob("*.h5"))) >= 3 if (out / "flow").is_dir() else False,
        lambda: len(list((out / "features").rglob("*.h5"))) >= 2 if (out / "features").is_dir() else False,
        lambda: any((out / "train").rglob("*.resume")) if (out / "train").is_dir() else False,
        lambda: (out / "localize").is_dir() or (out / "evaluate").is_dir(),
    ]
    kills = 0
    for cond in points:
        kills += _kill_when(_start(cmd, tmp_path, log), cond)
    assert kills >= 4, log.read_text()[-3000:]
    proc = run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    assert results_of(out) == results_of(ref)
    fa, fb = features_of(out), features_of(ref)
    assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert not leftovers(out), leftovers(out)
    assert not list(out.rglob("*.resume"))


# --------------------------------------------------------------------------- two workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_a_scheduler_and_extract_each_video_once(tmp_path):
    data = synthesize_demo(tmp_path / "data", SPEC, progress=False)
    overrides = OVERRIDES + " train.epochs=3"
    port = _free_port()
    # The documented way to start the scheduler: loopback only, state in a private folder.
    sched_cmd = [sys.executable, "-m", "cli.scheduler"]
    sched_args = ["--state-dir", str(tmp_path / "sched"), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = subprocess.run(sched_cmd + ["start", *sched_args], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert f"listening on 127.0.0.1:{port};" in started.stdout, started.stdout
    try:
        shared = tmp_path / "shared"
        # --no-lock: Luigi refuses a second identical command on one host unless told otherwise.
        cmd = luigi_cmd(
            "RunAll",
            data,
            shared,
            overrides,
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            str(port),
            "--no-lock",
            "--worker-keep-alive",
            "--worker-wait-interval",
            "0.5",
            # three shards of two videos per stage, so the workers share multi-video shards
            "--shards-videos-per-shard",
            "2",
            "--shards-min-shards",
            "1",
            "--log-level",  # Luigi's own summary (parsed below) is off the terminal by default
            "INFO",
        )
        workers = [
            subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for _ in range(2)
        ]
        outs = [w.communicate(timeout=600)[0] for w in workers]
        # A worker's exit code describes its own share: 25 (not_run) / 10 (already_running)
        # when the scheduler gave tasks to the other worker. Nothing may have failed.
        assert all(w.returncode in (0, 10, 25) for w in workers), [o[-3000:] for o in outs]
        assert all("failed" not in o.split("Luigi Execution Summary")[-2] for o in outs), outs
    finally:
        stopped = subprocess.run(sched_cmd + ["stop", *sched_args], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and "stopped luigid" in stopped.stdout, stopped.stderr
    # The whole graph is complete: the same command with a local scheduler has nothing to do.
    check = run(
        luigi_cmd(
            "RunAll",
            data,
            shared,
            overrides,
            "--local-scheduler",
            "--shards-videos-per-shard",
            "2",
            "--shards-min-shards",
            "1",
            "--log-level",
            "INFO",
        ),
        tmp_path,
    )
    assert check.returncode == 0 and "Luigi Execution Summary" in check.stderr, check.stderr[-3000:]
    assert "ran successfully" not in check.stderr, check.stderr[-3000:]

    # each video's flow and features were computed exactly once, across both workers' logs
    logs = [p.read_text() for p in (shared / "logs").glob("run-*.log")]
    assert len(logs) == 3  # two workers and the check
    for vid in [f"demo_{i:03d}" for i in range(6)]:
        assert sum(text.count(f"computing flow for {vid} ") for text in logs) == 1, vid
        assert sum(text.count(f"extracting features for {vid} ") for text in logs) == 1, vid
    # both workers did some of the work
    assert sum("computing flow for" in text for text in logs) == 2, "one worker did everything"
    # [resources] gpu=1: feature shards (device auto claims the gpu) never overlapped in time, so
    # neither did any two videos' feature extraction
    recs = [json.loads(p.read_text()) for p in (shared / "features").rglob("*.json")]
    spans = sorted((r["started"], r["finished"]) for r in recs)
    assert all(a_end <= b_start + 1e-3 for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans

    single = tmp_path / "single"
    proc = run(luigi_cmd("RunAll", data, single, overrides, "--local-scheduler"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results_of(shared) == results_of(single)
