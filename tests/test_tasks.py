"""The Luigi graph's incremental rules, inference-only localization and bad input (fast versions).

Tiny synthetic videos (40x32 px, 4-5 s) and tiny settings (crop 32, hidden 32, 2 epochs,
random backbone) so that the whole graph runs in seconds. Which tasks ran is counted with a
SUCCESS event handler.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import luigi
import pytest

import tasks
from pipeline.demo import DemoSpec, synthesize_demo
from pipeline.preflight import EXIT_PREFLIGHT

REPO = Path(__file__).resolve().parent.parent

TINY = DemoSpec(
    num_train=3,
    num_test=1,
    num_classes=2,
    min_seconds=4.0,
    max_seconds=5.0,
    min_action_seconds=1.0,
    max_action_seconds=1.2,
    max_instances=1,
    width=40,
    height=32,
    seed=5,
)
# Cheap TV-L1 (2 scales, 1 warp, few iterations): these tests check the task graph, not flow quality.
TINY_OVERRIDES = (
    "extract.resize_short=32 extract.crop=32 extract.flow_workers=1 extract.device=cpu "
    "extract.tvl1.nscales=2 extract.tvl1.warps=1 extract.tvl1.inner_iterations=5 "
    "extract.tvl1.outer_iterations=2 "
    "model.hidden_dim=32 model.attention_hidden=16 train.epochs=2 train.batch_size=2 "
    "train.num_snippets=8 train.device=cpu"
)

RAN: list[luigi.Task] = []


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def _count_success(task):
    RAN.append(task)


def build(task: luigi.Task) -> tuple[Counter, luigi.execution_summary.LuigiRunResult]:
    RAN.clear()
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    return Counter(t.get_task_family() for t in RAN), result


def ran_videos(family: str) -> list[str]:
    """The videos the shards of ``family`` extracted in the last build (stale ones only)."""
    return sorted(v for t in RAN if t.get_task_family() == family for v in t.result.ran)


def tiny_dataset(root: Path, spec: DemoSpec = TINY) -> dict[str, Path]:
    return synthesize_demo(root / "data", spec, progress=False)


def params(data: dict[str, Path], out: Path, overrides: str = "") -> dict[str, str]:
    return dict(
        video_dir=str(data["videos"]),
        labels=str(data["labels"]),
        ground_truth=str(data["ground_truth"]),
        output_dir=str(out),
        config="demo",
        overrides=(TINY_OVERRIDES + " " + overrides).strip(),
    )


def test_rerun_rules_and_inference_only(tmp_path):
    data = tiny_dataset(tmp_path)
    # Keep one (training) video aside: adding it later must extract it alone.
    extra = data["videos"] / "demo_002.mp4"
    aside = tmp_path / "demo_002.mp4"
    shutil.move(extra, aside)
    out = tmp_path / "out"

    # A labelled video that is not in the directory stops the run before any work (preflight)...
    with pytest.raises(SystemExit) as stop:
        tasks.RunAll(**params(data, out))
    assert stop.value.code == EXIT_PREFLIGHT and not (out / "flow").exists()

    # ...unless the user says to train without it.
    def lenient(overrides: str = "") -> dict:
        return {**params(data, out, overrides), "ignore_unmatched_labels": True}

    ran, res = build(tasks.RunAll(**lenient()))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran == Counter(
        {
            "FlowShard": 3,
            "FeatureShard": 3,
            "FeatureIndex": 1,
            "Train": 1,
            "Localize": 1,
            "Evaluate": 1,
            "Report": 1,
            "RunAll": 1,
        }
    )
    assert (out / "report.html").is_file() and (out / "summary.txt").is_file()
    flow_files = {p: p.stat().st_mtime_ns for p in (out / "flow").rglob("*.h5")}
    assert len(flow_files) == 3

    # 1. nothing changed: nothing runs
    ran, res = build(tasks.RunAll(**lenient()))
    assert ran == Counter() and res.status == luigi.LuigiStatusCode.SUCCESS

    # 2. a training setting: training and what follows, not extraction
    ran, _ = build(tasks.RunAll(**lenient("train.epochs=3")))
    assert ran == Counter({"Train": 1, "Localize": 1, "Evaluate": 1, "Report": 1, "RunAll": 1})

    # 3. a localization setting: localization and what follows, not training
    ran, _ = build(tasks.RunAll(**lenient("localize.class_threshold=0.3")))
    assert ran == Counter({"Localize": 1, "Evaluate": 1, "Report": 1, "RunAll": 1})

    # 4. another backbone (seed of the random backbone): features and after, not flow
    ran, _ = build(tasks.RunAll(**lenient("extract.random_seed=1")))
    assert ran == Counter(
        {"FeatureShard": 3, "FeatureIndex": 1, "Train": 1, "Localize": 1, "Evaluate": 1, "Report": 1, "RunAll": 1}
    )
    assert {p: p.stat().st_mtime_ns for p in (out / "flow").rglob("*.h5")} == flow_files

    # 5. a new video: it alone is extracted; the dataset changed, so training etc. rerun
    shutil.move(aside, extra)
    ran, _ = build(tasks.RunAll(**lenient()))
    assert ran == Counter(
        {
            "FlowShard": 1,
            "FeatureShard": 1,
            "FeatureIndex": 1,
            "Train": 1,
            "Localize": 1,
            "Evaluate": 1,
            "Report": 1,
            "RunAll": 1,
        }
    )
    assert ran_videos("FlowShard") == ran_videos("FeatureShard") == ["demo_002"]
    metrics = json.loads(Path([t for t in RAN if t.get_task_family() == "Evaluate"][0].output().path).read_text())
    assert len(metrics["map"]) == 7 and metrics["num_videos"] == 1

    # 6. a replaced video file (same name, new content) is extracted again
    os.utime(extra, ns=(extra.stat().st_atime_ns, extra.stat().st_mtime_ns + 10**9))
    ran, _ = build(tasks.RunAll(**lenient()))
    assert ran_videos("FlowShard") == ran_videos("FeatureShard") == ["demo_002"] and ran["Train"] == 1

    # Inference only: a trained checkpoint and an unlabelled directory -> CSVs, no training.
    ckpts = sorted((out / "train").glob("*/hamnet.pt"), key=lambda p: p.stat().st_mtime)
    p = lenient()
    del p["labels"], p["ground_truth"]
    ran, res = build(tasks.Localize(checkpoint=str(ckpts[-1]), **p))
    assert res.status == luigi.LuigiStatusCode.SUCCESS
    assert ran == Counter({"Localize": 1})
    loc = Path(RAN[0].output().path).parent
    csvs = sorted(x.name for x in (loc / "csv").glob("*.csv"))
    assert csvs == [f"demo_{i:03d}.csv" for i in range(4)]
    assert (loc / "csv" / "demo_000.csv").read_text().splitlines()[0] == "video-id,t-start,t-end,label,score"
    assert not list(out.rglob("*.partial"))


def test_bad_videos_are_reported_and_the_command_exits_nonzero(tmp_path):
    data = tiny_dataset(tmp_path)
    vids = data["videos"]
    shutil.copy(vids / "demo_000.mp4", vids / "Straße mit Leerzeichen.mp4")  # good, awkward name
    (vids / "empty.mp4").write_bytes(b"")
    (vids / "not a video.mp4").write_text("this is text, not a video\n" * 50)
    good = (vids / "demo_001.mp4").read_bytes()
    (vids / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (vids / "notes.txt").write_text("not a video extension: listed as skipped\n")
    out = tmp_path / "out"

    ran, res = build(tasks.RunAll(**params(data, out)))
    assert res.status == luigi.LuigiStatusCode.FAILED
    assert ran["RunAll"] == 0 and ran["Report"] == 1 and ran["Train"] == 1
    # bad videos get failure records, not task failures
    assert len(ran_videos("FlowShard")) == 8 and len(ran_videos("FeatureShard")) == 8

    index = json.loads(next((out / "index").glob("*.json")).read_text())
    status = {v["source"]: (v["status"], v["reason"]) for v in index["videos"]}
    assert status["Straße mit Leerzeichen.mp4"][0] == "ok"
    for name in ("empty.mp4", "not a video.mp4", "truncated.mp4"):
        assert status[name][0] == "failed" and status[name][1], name
    assert sum(s == "ok" for s, _ in status.values()) == 5
    # no stage output of a bad video looks complete
    ids = {v["source"]: v["video_id"] for v in index["videos"]}
    for name in ("empty.mp4", "not a video.mp4", "truncated.mp4"):
        assert not list(out.rglob(f"{ids[name]}.h5")), name
        assert not list(out.rglob(f"{ids[name]}.csv")), name
    summary = (out / "summary.txt").read_text()
    assert "videos: 8  ok: 5  failed: 3  skipped files: 1" in summary
    assert "SKIPPED notes.txt" in summary
    for name in ("empty.mp4", "not a video.mp4", "truncated.mp4"):
        assert status[name][1] in summary
    assert (out / "report.html").is_file() and "3 of 8 videos failed" in (out / "report.html").read_text()

    # The plain luigi command: shipped luigi.cfg is loaded by `import tasks`, so a failure
    # gives a non-zero exit code (only RunAll reruns: everything else is complete).
    p = params(data, out)
    cmd = [sys.executable, "-m", "luigi", "--module", "tasks", "RunAll", "--local-scheduler"]
    for k, v in p.items():
        cmd += [f"--{k.replace('_', '-')}", v]
    proc = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 30, proc.stderr[-3000:]
    assert "videos failed" in proc.stderr
