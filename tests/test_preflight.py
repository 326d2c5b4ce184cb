"""The preflight (pipeline/preflight.py): every input problem found in seconds, all at once.

Video files here are empty: the preflight never decodes, it only needs their names. The
real-data tests pair the official THUMOS14 test ground truth with such a directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.activitynet import AnnotationError, read_ground_truth_json
from pipeline.preflight import (
    EXIT_PREFLIGHT,
    PreflightError,
    check_checkpoints,
    check_ground_truth,
    check_labels,
    preflight_once,
    run_preflight,
)
from pipeline.videos import AmbiguousVideoKey, discover_videos, map_to_ids
from storage.annotations import read_thumos14_annotations, write_ground_truth_json

REPO = Path(__file__).resolve().parent.parent
CMCS_TEST = "thumos14/cmcs/thumos14-test-annotations"


def video_dir(root: Path, names: list[str]) -> Path:
    d = root / "videos"
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"")
    return d


def test_checkpoints_every_problem_is_named(tmp_path):
    bad = tmp_path / "rgb_imagenet.pt"
    bad.write_bytes(b"this is not a torch file")
    problems = check_checkpoints({"random_backbone": False, "rgb_checkpoint": str(bad), "flow_checkpoint": None})
    assert len(problems) == 2
    assert problems[0].startswith("extract.rgb_checkpoint: ") and str(bad) in problems[0]
    assert "not a loadable PyTorch weights file" in problems[0]
    assert problems[1].startswith("extract.flow_checkpoint is not set")
    missing = check_checkpoints(
        {"random_backbone": False, "rgb_checkpoint": "/no/rgb.pt", "flow_checkpoint": "/no/flow.pt"}
    )
    assert missing == [
        "extract.rgb_checkpoint: /no/rgb.pt: file not found",
        "extract.flow_checkpoint: /no/flow.pt: file not found",
    ]
    assert check_checkpoints({"random_backbone": True, "rgb_checkpoint": None, "flow_checkpoint": None}) == []


def test_checkpoint_that_does_not_fit_the_network_is_named(tmp_path):
    import torch

    ckpt = tmp_path / "flow_imagenet.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 3, 7, 7, 7)}, ckpt)  # an RGB layer in a flow file
    (problem,) = check_checkpoints({"random_backbone": False, "rgb_checkpoint": None, "flow_checkpoint": str(ckpt)})[1:]
    assert problem.startswith(f"extract.flow_checkpoint: {ckpt}: does not fit a 2-channel") and "missing" in problem


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file"),
        (b"a.mp4,Jump\nb.mp4,Run\n", "first line must be the header"),
        (b"video;label\na.mp4;Jump\n", "separated by commas"),
        (b"video,label\na.mp4,Sa\xefut\n", "labels.csv:2: not UTF-8"),
        (b"video,label\n", "no rows after the header"),
    ],
)
def test_labels_file_problems_name_the_file(tmp_path, content, why):
    videos = discover_videos(video_dir(tmp_path, ["a.mp4", "b.mp4"]))
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    errors, _ = check_labels(path, videos)
    assert len(errors) == 1 and str(path) in errors[0] and why in errors[0]


def test_labelled_name_without_video_is_an_error_unless_ignored(tmp_path):
    videos = discover_videos(video_dir(tmp_path, ["a.mp4", "b.mp4"]))
    path = tmp_path / "labels.csv"
    path.write_text("video,label\na.mp4,Jump\nb,Run\nc.mp4,Run\n", encoding="utf-8")
    errors, warnings = check_labels(path, videos)
    assert warnings == [] and len(errors) == 1
    assert "1 of 3 labelled videos are not in the video directory: 'c.mp4'" in errors[0]
    assert "--ignore-unmatched-labels" in errors[0]
    errors, warnings = check_labels(path, videos, ignore_unmatched=True)
    assert errors == [] and len(warnings) == 1 and "'c.mp4'" in warnings[0]


def test_same_stem_two_files_is_an_error_naming_both(tmp_path):
    videos = discover_videos(video_dir(tmp_path, ["test.mp4", "test.avi", "other.mp4"]))
    assert sorted(videos.values())[1:] == sorted(v for v in videos.values() if v.startswith("test-"))
    with pytest.raises(AmbiguousVideoKey, match=r"'test' matches 2 videos \(test.avi, test.mp4\)"):
        map_to_ids({"test": ["Jump"]}, videos)
    # The file name and the id stay unique keys.
    out, unmatched = map_to_ids({"test.avi": 1, videos["test.mp4"]: 2, "other": 3}, videos)
    assert out == {videos["test.avi"]: 1, videos["test.mp4"]: 2, "other": 3} and unmatched == []

    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\ntest,Jump\nother.mp4,Run\n", encoding="utf-8")
    errors, _ = check_labels(labels, videos)
    assert errors == [f"{labels}: 'test' matches 2 videos (test.avi, test.mp4); name the file instead"]
    gt = tmp_path / "gt.json"
    gt.write_text(
        json.dumps({"database": {"test": {"subset": "test", "annotations": [{"segment": [1, 2], "label": "Jump"}]}}}),
        encoding="utf-8",
    )
    errors, _ = check_ground_truth(gt, videos)
    assert errors == [f"{gt}: 'test' matches 2 videos (test.avi, test.mp4); name the file instead"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"database": {"a": {"annotations": [{"segment": [1, ' + b"9" * 5000 + b"]}]}}}", "too large"),
        (b"[" * 200_000 + b"]" * 200_000, "too deeply nested"),
        (b'{"database": {"a\xff": {}}}', "not UTF-8"),
        (b'{"database": ', "not valid JSON"),
    ],
)
def test_ground_truth_that_cannot_be_read_is_one_error_naming_it(tmp_path, content, why):
    path = tmp_path / "gt.json"
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=why):
        read_ground_truth_json(path)
    errors, _ = check_ground_truth(path, {"a.mp4": "a"})
    assert len(errors) == 1 and errors[0].startswith(str(path))


def test_evaluate_cli_bad_json_is_one_line(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    pred = tmp_path / "pred.json"
    pred.write_text('{"results": {}}', encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "hamnet.evaluate", str(gt), str(pred)], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {gt}: JSON too large or too deeply nested (RecursionError)"]


def test_all_problems_come_together(tmp_path):
    d = video_dir(tmp_path, ["a.mp4"])
    labels = tmp_path / "labels.csv"
    labels.write_text("video;label\n", encoding="utf-8")
    res = run_preflight(
        config_name="thumos14",
        overrides="train.epochs=-1",
        output_dir=tmp_path / "out",
        video_dir=d,
        labels=labels,
        ground_truth=tmp_path / "missing.json",
    )
    assert [e.split(":")[0] for e in res.errors] == [
        "train.epochs must be >= 0, got -1",
        str(labels),
        str(tmp_path / "missing.json"),
    ]
    # With a bad config the checkpoints cannot be known; with a good one both are named.
    res = run_preflight(
        config_name="thumos14",
        overrides="",
        output_dir=tmp_path / "out",
        video_dir=tmp_path / "nope",
        labels=None,
        ground_truth=None,
    )
    assert [e.split(" ")[0] for e in res.errors] == ["extract.rgb_checkpoint", "extract.flow_checkpoint", "--video-dir"]
    with pytest.raises(PreflightError, match="3 problems found before any work was done"):
        preflight_once(
            config_name="thumos14",
            overrides="",
            output_dir=tmp_path / "out",
            video_dir=tmp_path / "nope",
            labels=None,
            ground_truth=None,
        )


def test_real_thumos14_ground_truth_against_a_directory(tmp_path, shared_data):
    gt = read_thumos14_annotations(shared_data / CMCS_TEST, include_ambiguous=True)
    names = sorted(gt["database"])
    gt_path = write_ground_truth_json(tmp_path / "thumos14_test.json", gt)
    # 100 of the 213 test videos, one of them also as .avi: its name must be an error.
    d = video_dir(tmp_path, [f"{n}.mp4" for n in names[:100]] + [f"{names[7]}.avi"])
    videos = discover_videos(d)
    errors, warnings = check_ground_truth(gt_path, videos)
    assert errors == [
        f"{gt_path}: {names[7]!r} matches 2 videos ({names[7]}.avi, {names[7]}.mp4); name the file instead"
    ]
    assert warnings == [f"{gt_path}: 113 ground-truth videos are not in the video directory and are not evaluated"]
    (d / f"{names[7]}.avi").unlink()
    errors, _ = check_ground_truth(gt_path, discover_videos(d))
    assert errors == []


def test_luigi_command_stops_in_seconds_with_one_message(tmp_path):
    """The whole command, as a user runs it: no traceback, every problem, the documented exit code."""
    d = video_dir(tmp_path, ["a.mp4", "b.mp4"])
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\na.mp4,Jump\nc.mp4,Run\n", encoding="utf-8")
    started = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "luigi", "--module", "tasks", "RunAll", "--local-scheduler",
         "--video-dir", str(d), "--labels", str(labels), "--output-dir", str(tmp_path / "out"),
         "--config", "thumos14", "--overrides", "train.epoch=5"],
        cwd=REPO, capture_output=True, text=True, env={**_env(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    elapsed = time.time() - started
    assert r.returncode == EXIT_PREFLIGHT, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "ERROR: 2 problems found before any work was done:"
    assert "did you mean 'train.epochs'?" in lines[1] and "'c.mp4'" in lines[2] and len(lines) == 3
    assert not (tmp_path / "out" / "flow").exists()
    assert elapsed < 60  # generous for a loaded 2-core machine; typically a few seconds (imports)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("LUIGI")}
