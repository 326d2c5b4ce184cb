"""The synthetic demo set: exact, reproducible ground truth that matches the decoded videos."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from pipeline.demo import DEMO_CLASSES, DemoSpec, plan_demo, render_video, synthesize_demo
from storage.labels import read_labels_csv

SMALL = DemoSpec(
    num_train=3,
    num_test=2,
    num_classes=3,
    min_seconds=6.0,
    max_seconds=7.0,
    min_action_seconds=1.0,
    max_action_seconds=1.3,
    max_instances=2,
    width=48,
    height=40,
    seed=3,
)


def test_plan_is_seeded_and_actions_are_a_minority():
    a, b = plan_demo(DemoSpec()), plan_demo(DemoSpec())
    assert [(v.video_id, v.duration, v.segments) for v in a] == [(v.video_id, v.duration, v.segments) for v in b]
    assert plan_demo(DemoSpec(seed=1))[0].segments != a[0].segments
    spec = DemoSpec()
    for v in a:
        covered = sum(e - s for s, e, _ in v.segments)
        assert 0 < covered <= spec.max_action_fraction * v.duration + 1e-6
        ends = sorted(v.segments)
        assert all(e1 <= s2 for (_, e1, _), (s2, _, _) in zip(ends, ends[1:])), "segments overlap"
        assert all(0 < s < e < v.duration for s, e, _ in v.segments)
    # every class occurs in training and in test videos
    for subset in ("train", "test"):
        seen = {lab for v in a if v.subset == subset for lab in v.labels}
        assert seen == set(DEMO_CLASSES[: spec.num_classes])


def test_spec_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match="even"):
        DemoSpec(width=81)
    with pytest.raises(ValueError, match="max_action_fraction"):
        DemoSpec(max_action_seconds=10.0)


def test_actions_are_visible_only_inside_their_segments():
    v = plan_demo(SMALL)[0]
    frames = render_video(v, SMALL).astype(int)
    fps = SMALL.fps
    s, e, label = v.segments[0]
    inside = frames[int((s + 0.3) * fps)]
    outside = frames[int(max(0.0, s - 0.5) * fps)]
    # the action colours are saturated; the background is a muted texture
    sat = lambda f: (f.max(-1) - f.min(-1) > 120).sum()  # noqa: E731
    assert sat(inside) > 20
    assert sat(outside) == 0


def test_synthesize_writes_decodable_videos_labels_and_ground_truth(tmp_path):
    paths = synthesize_demo(tmp_path, SMALL, progress=False)
    plan = plan_demo(SMALL)
    labels = read_labels_csv(paths["labels"])
    assert set(labels) == {v.video_id for v in plan if v.subset == "train"}
    gt = json.loads(paths["ground_truth"].read_text())
    assert set(gt["database"]) == {v.video_id for v in plan if v.subset == "test"}
    for v in plan:
        with av.open(str(paths["videos"] / f"{v.video_id}.mp4")) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == round(v.duration * SMALL.fps)
        assert frames[0].shape == (SMALL.height, SMALL.width, 3)
        if v.subset == "test":
            anns = gt["database"][v.video_id]["annotations"]
            assert [(a["segment"][0], a["segment"][1], a["label"]) for a in anns] == v.segments
        # decoded frames match the rendered ones (4:2:0 chroma blurs the fine texture a little)
        ref = render_video(v, SMALL)
        assert np.abs(np.stack(frames).astype(int) - ref.astype(int)).mean() < 8.0
    assert not list(tmp_path.rglob("*.partial"))
    # idempotent rerun (after a kill it keeps what was written)
    before = {p.name: p.stat().st_mtime_ns for p in paths["videos"].iterdir()}
    synthesize_demo(tmp_path, SMALL, progress=False)
    assert before == {p.name: p.stat().st_mtime_ns for p in paths["videos"].iterdir()}
