"""Per-video work in shards of K videos per Luigi task (pipeline/shards.py, tasks/shards.py).

The pure functions are checked on small files; the Luigi tasks on tiny synthetic videos with
one shard holding good and bad videos together. Exactly-once extraction with two workers and
a central scheduler is in tests/test_tasks_slow.py (it needs luigid and minutes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import luigi
import pytest

import tasks
from extractors.errors import VideoError
from pipeline.shards import (
    ShardError,
    UpstreamFailed,
    VideoJob,
    is_fresh,
    plan_shards,
    read_record,
    run_shard,
    shard_size,
    stale_jobs,
)
from tests.test_tasks import RAN, build, params, ran_videos, tiny_dataset

# --------------------------------------------------------------------------- grouping


def test_shard_size_caps_large_sets_and_spreads_small_ones():
    assert shard_size(20_000, 100, 16) == 100  # large: capped, 200 shards
    assert shard_size(413, 100, 16) == 26  # THUMOS14: 16 shards for several workers
    assert shard_size(36, 100, 16) == 3
    assert shard_size(5, 100, 16) == 1
    assert shard_size(0, 100, 16) == 1
    assert shard_size(650_000, 100, 16, 500) == 1300  # Kinetics-sized: at most 500 shards
    assert shard_size(20_000, 100, 16, 500) == 100
    with pytest.raises(ValueError, match="videos_per_shard"):
        shard_size(10, 0, 16)


def test_plan_covers_every_video_once_in_id_order():
    videos = [(f"name {i}.mp4", f"v{i:03d}") for i in (7, 3, 9, 1, 5, 2, 8)]
    plan = plan_shards(videos, 3)
    assert [len(s) for s in plan] == [3, 3, 1]
    assert [vid for s in plan for _, vid in s] == sorted(vid for _, vid in videos)
    assert plan_shards([], 3) == []


# --------------------------------------------------------------------------- records and runs


def make_jobs(tmp_path: Path, n: int) -> list[VideoJob]:
    src, data = tmp_path / "videos", tmp_path / "stage"
    src.mkdir()
    data.mkdir()
    jobs = []
    for i in range(n):
        (src / f"clip {i}.mp4").write_bytes(b"x" * (i + 1))
        jobs.append(VideoJob(f"clip {i}.mp4", f"clip_{i}", src / f"clip {i}.mp4", data / f"clip_{i}.h5"))
    return jobs


def fake_work(bad: set[str] = frozenset(), broken: set[str] = frozenset(), calls: list | None = None):
    """Writes a data file like a real stage; ``bad`` raise VideoError, ``broken`` a bug."""

    def work(job: VideoJob):
        if calls is not None:
            calls.append(job.video_id)
        if job.video_id in broken:
            raise ZeroDivisionError("a bug")
        job.data.write_bytes(b"partial result")  # written before the input turns out bad
        if job.video_id in bad:
            raise VideoError(job.source, "no decodable video frames")
        return {"num_snippets": 3}

    return work


def test_one_bad_video_is_recorded_and_the_others_finish(tmp_path):
    jobs = make_jobs(tmp_path, 4)
    res = run_shard(jobs, "flow", fake_work(bad={"clip_1"}))
    assert res.ran == ["clip_0", "clip_1", "clip_2", "clip_3"]
    assert res.ok == ["clip_0", "clip_2", "clip_3"] and res.failed == ["clip_1"]
    recs = {j.video_id: read_record(j.record) for j in jobs}
    assert recs["clip_1"]["status"] == "failed" and recs["clip_1"]["reason"] == "no decodable video frames"
    assert not jobs[1].data.exists()  # a bad video never keeps a data file
    for j in (jobs[0], jobs[2], jobs[3]):
        assert recs[j.video_id]["status"] == "ok" and recs[j.video_id]["num_snippets"] == 3 and j.data.is_file()
        assert recs[j.video_id]["source"] == j.name and recs[j.video_id]["stage"] == "flow"
    assert all(is_fresh(j) for j in jobs)  # a failed record is an outcome: not redone


def test_an_unexpected_error_fails_the_shard_after_its_other_videos(tmp_path):
    jobs = make_jobs(tmp_path, 3)
    with pytest.raises(ShardError, match="clip_0: ZeroDivisionError: a bug"):
        run_shard(jobs, "features", fake_work(broken={"clip_0"}))
    assert read_record(jobs[0].record) is None  # no record: retried on the next run
    assert all(read_record(j.record)["status"] == "ok" for j in jobs[1:])
    calls: list[str] = []
    res = run_shard(jobs, "features", fake_work(calls=calls))
    assert calls == res.ran == ["clip_0"]


def test_upstream_failure_carries_the_reason(tmp_path):
    (job,) = make_jobs(tmp_path, 1)

    def work(j):
        raise UpstreamFailed("empty file (0 bytes)", "flow")

    run_shard([job], "features", work)
    rec = read_record(job.record)
    assert rec["status"] == "failed" and rec["reason"] == "empty file (0 bytes)" and rec["failed_stage"] == "flow"


def test_rerun_redoes_only_stale_videos(tmp_path):
    jobs = make_jobs(tmp_path, 5)
    run_shard(jobs, "flow", fake_work())
    assert stale_jobs(jobs) == []
    jobs[1].record.unlink()  # record lost
    st = jobs[2].source.stat()
    os.utime(jobs[2].source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # source replaced
    jobs[3].data.unlink()  # ok record without its data file
    jobs[4].record.write_text("{ truncated")  # unreadable record
    assert [j.video_id for j in stale_jobs(jobs)] == ["clip_1", "clip_2", "clip_3", "clip_4"]
    before = jobs[0].record.stat().st_mtime_ns
    calls: list[str] = []
    run_shard(jobs, "flow", fake_work(calls=calls))
    assert calls == ["clip_1", "clip_2", "clip_3", "clip_4"]
    assert jobs[0].record.stat().st_mtime_ns == before
    assert stale_jobs(jobs) == []


def test_stale_partials_of_redone_videos_are_removed_and_nothing_else(tmp_path):
    jobs = make_jobs(tmp_path, 2)
    run_shard(jobs[:1], "flow", fake_work())
    folder = jobs[0].data.parent
    left = [folder / ".clip_1.h5.k3j_x9a.partial", folder / ".clip_1.json.abc123.partial"]
    keep = [folder / ".clip_0.h5.zz1.partial", folder / ".clip_10.json.q.partial", folder / "notes.partial"]
    for p in left + keep:
        p.write_bytes(b"killed writer")
    run_shard(jobs, "flow", fake_work())  # clip_0 is fresh (not redone), clip_1 is redone
    assert not any(p.exists() for p in left)
    assert all(p.exists() for p in keep)


# --------------------------------------------------------------------------- Luigi tasks


@pytest.fixture
def shard_config():
    """Set the [shards] section for one test, restoring the shipped values afterwards."""
    cfg = luigi.configuration.get_config()
    keys = ("videos_per_shard", "min_shards", "max_shards")
    saved = {k: cfg.get("shards", k, None) for k in keys}

    def set_(**values):
        for k, v in values.items():
            cfg.set("shards", k, str(v))

    yield set_
    for k, v in saved.items():
        if v is None:
            cfg.remove_option("shards", k)
        else:
            cfg.set("shards", k, v)


def test_a_shard_of_good_and_bad_videos_then_a_rerun_of_one_lost_record(tmp_path, shard_config):
    shard_config(videos_per_shard=10, min_shards=1)  # all seven videos in one shard per stage
    data = tiny_dataset(tmp_path)
    vids = data["videos"]
    (vids / "empty.mp4").write_bytes(b"")
    (vids / "not a video.mp4").write_text("text, not a video\n" * 20)
    good = (vids / "demo_001.mp4").read_bytes()
    (vids / "truncated.mp4").write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    p = params(data, out)

    ran, res = build(tasks.FeatureIndex(**p))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran == {"FlowShard": 1, "FeatureShard": 1, "FeatureIndex": 1}
    assert len(ran_videos("FlowShard")) == len(ran_videos("FeatureShard")) == 7
    index = json.loads(Path(RAN[-1].output().path).read_text())
    status = {v["source"]: v["status"] for v in index["videos"]}
    assert status == {
        **{f"demo_{i:03d}.mp4": "ok" for i in range(4)},
        "empty.mp4": "failed",
        "not a video.mp4": "failed",
        "truncated.mp4": "failed",
    }
    feature_dir = Path(index["feature_dir"])
    for v in index["videos"]:
        assert (feature_dir / f"{v['video_id']}.h5").is_file() == (v["status"] == "ok"), v
        assert v["status"] == "ok" or v["reason"], v

    # Nothing changed: nothing runs, the shards are complete.
    ran, _ = build(tasks.FeatureIndex(**p))
    assert ran == {}

    # One lost feature record: the shard redoes that video alone (its flow is still fresh).
    records = {r: r.stat().st_mtime_ns for r in feature_dir.glob("*.json")}
    lost = feature_dir / "demo_002.json"
    lost.unlink()
    shard = tasks.FeatureShard(shard=0, shard_size=10, **p)
    assert not shard.complete()
    ran, res = build(shard)
    assert res.status == luigi.LuigiStatusCode.SUCCESS
    assert ran == {"FeatureShard": 1} and ran_videos("FeatureShard") == ["demo_002"]
    assert read_record(lost)["status"] == "ok"
    assert {r: r.stat().st_mtime_ns for r in records if r != lost} == {r: t for r, t in records.items() if r != lost}
    assert not list(out.rglob("*.partial"))


def test_shards_follow_the_configured_size(tmp_path, shard_config):
    shard_config(videos_per_shard=3, min_shards=1)
    data = tiny_dataset(tmp_path)
    (data["videos"] / "empty.mp4").write_bytes(b"")  # five videos: shards of 3 and 2
    shards = tasks.FeatureIndex(**params(data, tmp_path / "out")).requires()
    assert [(s.shard, s.shard_size) for s in shards] == [(0, 3), (1, 3)]
    assert [[j.video_id for j in s.jobs()] for s in shards] == [
        ["demo_000", "demo_001", "demo_002"],
        ["demo_003", "empty"],
    ]
    assert [j.video_id for j in shards[1].requires().jobs()] == ["demo_003", "empty"]


def test_one_video_tasks_write_the_records_a_shard_would(tmp_path, shard_config):
    """FlowCache / VideoFeatures (one named video, run by hand) are single-video shards."""
    shard_config(videos_per_shard=10, min_shards=1)
    data = tiny_dataset(tmp_path)
    (data["videos"] / "empty.mp4").write_bytes(b"")
    p = params(data, tmp_path / "one")
    ran, res = build(tasks.VideoFeatures(video_name="demo_001.mp4", video_id="demo_001", **p))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran == {"FlowCache": 1, "VideoFeatures": 1}
    ran, _ = build(tasks.VideoFeatures(video_name="empty.mp4", video_id="empty", **p))
    assert ran == {"FlowCache": 1, "VideoFeatures": 1}
    one = tasks.VideoFeatures(video_name="demo_001.mp4", video_id="demo_001", **p).data_dir()

    # The same two videos through the shard path, in another output folder.
    q = params(data, tmp_path / "shard")
    build(tasks.FeatureIndex(**q))
    shard_dir = tasks.FeatureShard(shard=0, shard_size=10, **q).data_dir()
    volatile = {"host", "pid", "started", "finished"}
    for vid in ("demo_001", "empty"):
        a, b = read_record(one / f"{vid}.json"), read_record(shard_dir / f"{vid}.json")
        assert {k: v for k, v in a.items() if k not in volatile} == {k: v for k, v in b.items() if k not in volatile}
    assert read_record(one / "empty.json")["failed_stage"] == "flow"
    # Complete by the same freshness rule: nothing reruns.
    ran, _ = build(tasks.VideoFeatures(video_name="demo_001.mp4", video_id="demo_001", **p))
    assert ran == {}
