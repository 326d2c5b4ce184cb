"""The dataset-level functions the Luigi tasks call (pipeline/), tested without Luigi."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from core.activitynet import AMBIGUOUS, video_labels
from core.device import check_device_name, resolve_device
from hamnet.config import EvaluateConfig
from pipeline.config import ConfigError, load_config_cached, parse_overrides
from pipeline.evaluation import evaluate_run, select_evaluated
from pipeline.videos import discover_videos, map_to_ids, skipped_files


def test_map_to_ids_accepts_file_name_stem_and_id():
    videos = {"Straße 1.mp4": "Strasse_1", "b.avi": "b"}
    table = {"Straße 1.mp4": ["A"], "b": ["B"], "Strasse_1": ["C"], "c.mp4": ["D"]}
    out, unmatched = map_to_ids({k: table[k] for k in ("Straße 1.mp4", "b")}, videos)
    assert out == {"Strasse_1": ["A"], "b": ["B"]} and unmatched == []
    out, unmatched = map_to_ids({"Strasse_1": ["C"], "c.mp4": ["D"]}, videos)
    assert out == {"Strasse_1": ["C"]} and unmatched == ["c.mp4"]


def test_discovery_lists_videos_by_id_and_names_what_it_skips(tmp_path):
    for name in ("b.mp4", "a.MKV", ".hidden.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert list(discover_videos(tmp_path).items()) == [("a.MKV", "a"), ("b.mp4", "b")]
    assert skipped_files(tmp_path) == [
        (".hidden.mp4", "hidden file"),
        ("notes.txt", "extension not a known video type"),
    ]
    with pytest.raises(FileNotFoundError, match="no video files"):
        discover_videos(tmp_path / "sub")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        discover_videos(tmp_path / "missing")


def _gt(tmp_path: Path) -> Path:
    db = {
        "v1": {"subset": "test", "duration": 10.0, "annotations": [{"segment": [1.0, 3.0], "label": "A"}]},
        "v2": {"subset": "test", "duration": 10.0, "annotations": [{"segment": [4.0, 6.0], "label": "B"}]},
        "v3": {"subset": "validation", "duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "A"}]},
        "gone": {"subset": "test", "duration": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "A"}]},
    }
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"database": db}))
    return p


def test_subset_filter_keeps_only_that_subset_and_reports_failed_extractions(tmp_path):
    db = json.loads(_gt(tmp_path).read_text())["database"]
    kept, failed = select_evaluated(db, {"v1", "v3"}, "test")
    assert sorted(kept) == ["v1"] and failed == ["gone", "v2"]
    kept, failed = select_evaluated(db, {"v1", "v2", "v3"}, "")
    assert sorted(kept) == ["v1", "v2", "v3"] and failed == ["gone"]


def test_evaluate_run_scores_only_evaluated_videos_and_lists_every_exclusion(tmp_path):
    gt = _gt(tmp_path)
    videos = {"v1.mp4": "v1", "v2.mp4": "v2", "v3.mp4": "v3"}
    preds = {
        "results": {
            "v1": [{"segment": [1.0, 3.0], "label": "A", "score": 0.9}],
            "v2": [{"segment": [7.0, 9.0], "label": "B", "score": 0.8}],  # a miss
            "v3": [{"segment": [5.0, 6.0], "label": "A", "score": 0.99}],  # not in subset test
        }
    }
    m = evaluate_run(gt, videos, {"v1", "v2", "v3"}, preds, EvaluateConfig(tiou_thresholds=(0.5,)), "test")
    # v3's false positive is outside the evaluated subset, so class A is perfect; B is missed.
    assert m["num_videos"] == 2 and m["classes"] == ["A", "B"]
    assert m["ap"] == [[1.0], [0.0]] and m["map"] == [0.5]
    assert any("not in the video directory" in w for w in m["warnings"])  # "gone"
    m_all = evaluate_run(gt, videos, {"v1", "v2", "v3"}, preds, EvaluateConfig(tiou_thresholds=(0.5,)), "")
    assert m_all["num_videos"] == 3 and m_all["ap"][0][0] < 1.0  # now v3's false positive ranks first
    with pytest.raises(ValueError, match="no ground-truth video matches"):
        evaluate_run(gt, videos, set(), preds, EvaluateConfig(), "test")


def test_video_labels_never_contain_ambiguous_but_keep_the_video():
    gt = {
        "database": {
            "a": {"subset": "test", "annotations": [{"segment": [0, 1], "label": AMBIGUOUS}]},
            "b": {
                "subset": "test",
                "annotations": [{"segment": [0, 1], "label": "X"}, {"segment": [2, 3], "label": AMBIGUOUS}],
            },
        }
    }
    assert video_labels(gt) == {"a": [], "b": ["X"]}
    assert video_labels(gt, "validation") == {}


def test_device_names_are_checked_without_cuda_and_cuda_is_refused_when_absent():
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert check_device_name(ok, "x.device") == ok
    for bad in ("gpu", "CUDA", "cuda:", "", None):
        with pytest.raises(ValueError, match="x.device must be"):
            check_device_name(bad, "x.device")
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_override_parser_is_one_syntax_for_every_command_line():
    assert parse_overrides("train.epochs=5;loss.drop_mode=random") == ["train.epochs=5", "loss.drop_mode=random"]
    assert parse_overrides(["a.b=1 c.d=[1, 2]", "e.f={x: 1, y: [2, 3]}"]) == [
        "a.b=1",
        "c.d=[1, 2]",
        "e.f={x: 1, y: [2, 3]}",
    ]
    assert parse_overrides("a.b='x y' c.d=2") == ["a.b='x y'", "c.d=2"]
    assert parse_overrides("") == [] and parse_overrides(None) == []
    for bad, why in (("train.epochs", "must look like"), ("a.b=[1, 2", "unclosed"), ("a.b=1]", "unbalanced")):
        with pytest.raises(ConfigError, match=why):
            parse_overrides(bad)


def test_cached_config_is_validated_and_sees_an_edited_file(tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("train: {epochs: 3}\n")
    assert load_config_cached(str(cfg), "")["train"]["epochs"] == 3
    # a memoised config must not be changed by a caller
    load_config_cached(str(cfg), "")["train"]["epochs"] = 99
    assert load_config_cached(str(cfg), "")["train"]["epochs"] == 3
    time.sleep(0.01)
    cfg.write_text("train: {epochs: 4}\n")
    os.utime(cfg, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    assert load_config_cached(str(cfg), "")["train"]["epochs"] == 4
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config_cached(str(cfg), "train.epochs=abc")
    with pytest.raises(ConfigError, match="train.epochs must be >= 0"):
        load_config_cached(str(cfg), "train.epochs=-1")
    assert np.isclose(load_config_cached(str(cfg), "train.lr=1e-3")["train"]["lr"], 1e-3)
