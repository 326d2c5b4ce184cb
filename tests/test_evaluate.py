"""Tests of hamnet.evaluate: hand-computed cases, edge cases, bad input, CLI, agreement with the
loop reference (tests/reference_anet_eval.py) on random and on real THUMOS14 annotations."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hamnet.evaluate as ev
from hamnet.evaluate import (
    EvaluationInputError,
    classification_ap,
    classification_map,
    evaluate_detection,
    format_table,
    load_json,
    main,
)
from tests.reference_anet_eval import reference_activitynet, reference_thumos_kit

THUMOS_THR = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]


def gt_of(videos: dict[str, list[tuple[float, float, str]]], subset: str = "test") -> dict:
    return {
        "database": {
            v: {"subset": subset, "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in anns]}
            for v, anns in videos.items()
        }
    }


def pred_of(rows: list[tuple[str, float, float, str, float]]) -> dict:
    results: dict[str, list] = {}
    for v, s, e, lab, score in rows:
        results.setdefault(v, []).append({"label": lab, "score": score, "segment": [s, e]})
    return {"version": "test", "results": results, "external_data": {}}


def ap_of(result, label: str, thr: str) -> float:
    return float(result.ap[result.classes.index(label), result.threshold_labels.index(thr)])


# ---------------------------------------------------------------------------------------------
# Hand-computed cases


def test_activitynet_hand_computed_ap():
    gt = gt_of({"a": [(0, 10, "x"), (20, 30, "x")], "b": [(0, 10, "x"), (40, 50, "y")]})
    pred = pred_of(
        [
            ("a", 0, 10, "x", 0.9),  # tIoU 1 with a/x#0: TP
            ("a", 0, 10, "x", 0.8),  # duplicate: a/x#0 is taken, a/x#1 has tIoU 0: FP
            ("b", 0, 5, "x", 0.7),  # tIoU exactly 0.5: TP at 0.5 (inclusive), FP at 0.7
            ("c", 0, 10, "x", 0.6),  # video without ground truth: FP
            ("a", 20, 26, "x", 0.5),  # tIoU 0.6: TP at 0.5, FP at 0.7
        ]
    )
    r = evaluate_detection(gt, pred, ["0.5", "0.7"])
    # thr 0.5: hits T F T F T, precision 1, 1/2, 2/3, 2/4, 3/5, recall steps of 1/3 at ranks 1, 3, 5.
    # Interpolated precision at those ranks: 1, max(2/3, 1/2, 3/5) = 2/3, 3/5.
    # AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    assert ap_of(r, "x", "0.5") == pytest.approx(34 / 45, abs=1e-15)
    # thr 0.7: only rank 1 is a hit: AP = 1/3 * 1.
    assert ap_of(r, "x", "0.7") == pytest.approx(1 / 3, abs=1e-15)
    # y has ground truth but no prediction: AP 0, still part of the mean.
    assert ap_of(r, "y", "0.5") == 0.0
    assert r.map.tolist() == pytest.approx([17 / 45, 1 / 6], abs=1e-15)
    assert r.average_map == pytest.approx((17 / 45 + 1 / 6) / 2, abs=1e-15)
    assert r.classes == ["x", "y"]
    assert r.num_ground_truth.tolist() == [3, 1] and r.num_predictions.tolist() == [5, 0]
    assert any("1 predictions on 1 videos absent" in w and "false positives" in w for w in r.warnings)


def test_thumos_kit_hand_computed_with_ambiguous():
    gt = gt_of({"v": [(10, 20, "x"), (30, 40, "x"), (50, 60, "Ambiguous")]})
    pred = pred_of(
        [
            ("v", 11, 21, "x", 0.95),  # overlap 9/11 with x#0, but x#0 prefers d1 (overlap 1): FP
            ("v", 10, 20, "x", 0.90),  # taken by x#0: TP
            ("v", 52, 58, "x", 0.85),  # unmatched, inside the Ambiguous interval: not counted
            ("v", 31, 40, "x", 0.80),  # overlap exactly 9/10 with x#1
            ("v", 70, 80, "x", 0.60),  # FP
        ]
    )
    r = evaluate_detection(gt, pred, ["0.5", "0.9"], mode="thumos14")
    # 0.5: ranking FP(0.95) TP(0.9) TP(0.8) FP(0.6); precision at TPs 1/2, 2/3 -> AP = (1/2 + 2/3) / 2.
    assert ap_of(r, "x", "0.5") == pytest.approx(7 / 12, abs=1e-15)
    # 0.9: the kit needs overlap strictly above: 9/10 is not, so x#1 stays unmatched -> AP = (1/2) / 2.
    assert ap_of(r, "x", "0.9") == pytest.approx(1 / 4, abs=1e-15)
    assert r.classes == ["x"]  # Ambiguous is not a class

    # Without the Ambiguous interval the 0.85 detection is a false positive ranked before the second TP.
    no_amb = gt_of({"v": [(10, 20, "x"), (30, 40, "x")]})
    r2 = evaluate_detection(no_amb, pred, ["0.5"], mode="thumos14")
    assert ap_of(r2, "x", "0.5") == pytest.approx((1 / 2 + 2 / 4) / 2, abs=1e-15)

    # The ActivityNet mode on the same input: prediction-driven, the 0.95 one takes x#0 (tIoU 9/11),
    # the 0.9 one is then a FP; Ambiguous annotations are ignored with a warning.
    r3 = evaluate_detection(gt, pred, ["0.5"])
    # hits T F F T F: precision 1, 1/2, 1/3, 2/4, 2/5, recall 1/2 at ranks 1 and 4 -> AP = (1 + 1/2) / 2.
    assert ap_of(r3, "x", "0.5") == pytest.approx(3 / 4, abs=1e-15)
    assert any("'Ambiguous' annotations ignored" in w for w in r3.warnings)


def test_tiou_exactly_at_threshold_counts_and_decimal_thresholds():
    gt = gt_of({"v": [(0.0, 10.0, "x")]})
    at_03 = pred_of([("v", 7.0, 10.0, "x", 1.0)])  # tIoU 3/10
    at_07 = pred_of([("v", 3.0, 10.0, "x", 1.0)])  # tIoU 7/10
    # The float drift the official code suffers from: its arange threshold is above fl(3/10).
    assert 3.0 / 10.0 < 0.1 * 3
    for thresholds in (["0.3"], [0.3], [0.1 * 3]):
        r = evaluate_detection(gt, at_03, thresholds)
        assert r.ap[0, 0] == 1.0, thresholds
        assert r.threshold_labels == ["0.3"]
    drift = evaluate_detection(gt, at_03, [0.1 * 3])
    assert any("0.30000000000000004" in w and "read as 0.3" in w for w in drift.warnings)
    assert evaluate_detection(gt, at_07, ["0.7"]).ap[0, 0] == 1.0
    assert evaluate_detection(gt, at_07, ["0.71"]).ap[0, 0] == 0.0
    # The THUMOS14 kit is strict: an overlap equal to the threshold does not match.
    assert evaluate_detection(gt, at_03, ["0.3"], mode="thumos14").ap[0, 0] == 0.0
    assert evaluate_detection(gt, at_03, ["0.29"], mode="thumos14").ap[0, 0] == 1.0


# ---------------------------------------------------------------------------------------------
# Edge cases


def test_video_with_no_predictions_lowers_recall():
    gt = gt_of({"a": [(0, 10, "x")], "b": [(0, 10, "x")]})
    r = evaluate_detection(gt, pred_of([("a", 0, 10, "x", 0.9)]), ["0.5"])
    assert r.ap[0, 0] == 0.5  # one of two ground truths found, at precision 1


def test_unknown_videos_false_positives_or_ignored():
    gt = gt_of({"a": [(0, 10, "x")]})
    pred = pred_of([("zz", 0, 10, "x", 0.9), ("a", 0, 10, "x", 0.8)])
    r = evaluate_detection(gt, pred, ["0.5"])
    assert r.ap[0, 0] == 0.5  # the FP on the unknown video is ranked first
    assert any("1 predictions on 1 videos absent" in w and "false positives" in w for w in r.warnings)
    r2 = evaluate_detection(gt, pred, ["0.5"], ignore_other_videos=True)
    assert r2.ap[0, 0] == 1.0
    assert any("ignored (ignore_other_videos)" in w for w in r2.warnings)


def test_subset_selects_ground_truth_and_other_subset_predictions_are_fp():
    gt = {
        "database": {
            "t1": {"subset": "train", "annotations": [{"segment": [0, 10], "label": "x"}]},
            "s1": {"subset": "test", "annotations": [{"segment": [0, 10], "label": "x"}]},
            "s2": {"subset": "test", "annotations": [{"segment": [5, 9], "label": "y"}]},
        }
    }
    pred = pred_of([("t1", 0, 10, "x", 0.9), ("s1", 0, 10, "x", 0.8)])
    r = evaluate_detection(gt, pred, ["0.5"], subset="test")
    assert r.classes == ["x", "y"] and r.num_ground_truth.tolist() == [1, 1] and r.num_videos == 2
    assert ap_of(r, "x", "0.5") == 0.5  # the train-video prediction is a FP ranked first
    assert ap_of(evaluate_detection(gt, pred, ["0.5"], subset="test", ignore_other_videos=True), "x", "0.5") == 1.0
    assert ap_of(evaluate_detection(gt, pred, ["0.5"]), "x", "0.5") == 1.0  # no subset: both videos count
    with pytest.raises(EvaluationInputError, match=r"no video in subset 'validation'.*'test' \(2\).*'train' \(1\)"):
        evaluate_detection(gt, pred, ["0.5"], subset="validation")


def test_unknown_labels_are_ignored_with_a_warning():
    gt = gt_of({"a": [(0, 10, "x")]})
    pred = pred_of(
        [("a", 0, 10, "nope", 0.99), ("a", 0, 10, "nope", 0.98), ("a", 0, 10, "other", 0.97), ("a", 0, 10, "x", 0.5)]
    )
    r = evaluate_detection(gt, pred, ["0.5"])
    assert r.ap[0, 0] == 1.0
    w = [w for w in r.warnings if "labels are absent" in w]
    assert len(w) == 1 and "ignored 3 predictions" in w[0] and "'nope' (2)" in w[0] and "'other' (1)" in w[0]


def test_empty_inputs():
    gt = gt_of({"a": [(0, 10, "x")]})
    r = evaluate_detection(gt, {"results": {}}, ["0.5", "0.7"])
    assert r.map.tolist() == [0.0, 0.0] and r.average_map == 0.0
    assert any("no predictions" in w for w in r.warnings)
    with pytest.raises(EvaluationInputError, match="no ground-truth segments"):
        evaluate_detection({"database": {}}, {"results": {}}, ["0.5"])
    with pytest.raises(EvaluationInputError, match="no ground-truth segments"):
        evaluate_detection(gt_of({"a": [(0, 5, "Ambiguous")]}), {"results": {}}, ["0.5"], mode="thumos14")


def test_ties_are_broken_by_file_order():
    gt = gt_of({"a": [(0, 10, "x")]})
    fp_first = pred_of([("a", 50, 60, "x", 0.5), ("a", 0, 10, "x", 0.5)])
    tp_first = pred_of([("a", 0, 10, "x", 0.5), ("a", 50, 60, "x", 0.5)])
    assert evaluate_detection(gt, fp_first, ["0.5"]).ap[0, 0] == 0.5
    assert evaluate_detection(gt, tp_first, ["0.5"]).ap[0, 0] == 1.0
    # Equal tIoU with two ground truths: the one first in the file is taken, which here frees
    # the second ground truth for the next prediction.
    first = gt_of({"a": [(0, 10, "x"), (10, 20, "x")]})
    second = gt_of({"a": [(10, 20, "x"), (0, 10, "x")]})
    pred = pred_of([("a", 5, 15, "x", 0.9), ("a", 10, 20, "x", 0.8)])  # tIoU 1/3 with both, then 1 with [10, 20]
    assert evaluate_detection(first, pred, ["0.3"]).ap[0, 0] == 1.0
    assert evaluate_detection(second, pred, ["0.3"]).ap[0, 0] == 0.5


def test_zero_length_segments_never_match():
    gt = gt_of({"a": [(5, 5, "x"), (0, 10, "x")]})
    pred = pred_of([("a", 5, 5, "x", 0.9), ("a", 0, 10, "x", 0.8)])
    r = evaluate_detection(gt, pred, ["0.1"])
    # zero-length vs zero-length is tIoU 0 (the official code's NaN would count it): FP, then TP, 2 GT.
    assert r.ap[0, 0] == pytest.approx(0.5 * 0.5, abs=1e-15)
    assert any("1 ground-truth segments have zero length" in w for w in r.warnings)
    assert any("1 predictions have zero length" in w for w in r.warnings)
    assert not np.isnan(r.ap).any()
    assert evaluate_detection(gt, pred, ["0.1"], mode="thumos14").ap[0, 0] == pytest.approx(0.5 * 0.5, abs=1e-15)


def test_numeric_strings_in_ground_truth_and_numpy_scores():
    gt = {"database": {"a": {"subset": "test", "annotations": [{"segment": ["0.0", "10.0"], "label": "x"}]}}}
    pred = {"results": {"a": [{"label": "x", "score": np.float32(0.5), "segment": np.array([0.0, 10.0])}]}}
    assert evaluate_detection(gt, pred, ["0.5"]).ap[0, 0] == 1.0


@pytest.mark.parametrize(
    "thresholds, match",
    [
        ([], "empty"),
        (["0"], r"in \(0, 1\]"),
        ([1.5], r"in \(0, 1\]"),
        (["abc"], "not a number"),
        (["0.5", 0.5], "repeated"),
        ("0.5", "sequence"),
    ],
)
def test_bad_thresholds(thresholds, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detection(gt_of({"a": [(0, 1, "x")]}), {"results": {}}, thresholds)


# ---------------------------------------------------------------------------------------------
# Bad input: clear messages naming the source and the place


GOOD_GT = gt_of({"vid1": [(0, 10, "x")]})


@pytest.mark.parametrize(
    "results, match",
    [
        ({"vid1": {"label": "x"}}, r"results\['vid1'\] must be a list"),
        ({"vid1": [{"label": "x", "segment": [0, 1]}]}, r"results\['vid1'\]\[0\]: missing key\(s\) 'score'"),
        (
            {"vid1": [{"label": "x", "score": "high", "segment": [0, 1]}]},
            r"\[0\]: 'score' must be a number, got 'high'",
        ),
        ({"vid1": [{"label": "x", "score": True, "segment": [0, 1]}]}, r"'score' must be a number, got True"),
        ({"vid1": [{"label": "x", "score": float("nan"), "segment": [0, 1]}]}, "'score' must be finite"),
        (
            {"vid1": [{"label": "x", "score": 1, "segment": [0, 1]}, {"label": "x", "score": 1, "segment": [-1, 2]}]},
            r"results\['vid1'\]\[1\]: segment \[-1, 2\] starts before 0 s",
        ),
        ({"vid1": [{"label": "x", "score": 1, "segment": [5, 2]}]}, r"segment \[5, 2\] ends before it starts"),
        ({"vid1": [{"label": "x", "score": 1, "segment": [1, 2, 3]}]}, r"'segment' must be \[start, end\]"),
        ({"vid1": [{"label": "x", "score": 1, "segment": "12"}]}, r"'segment' must be \[start, end\], got '12'"),
        ({"vid1": [{"label": "x", "score": 1, "segment": ["a", "b"]}]}, "is not two numbers"),
        ({"vid1": [{"label": ["x"], "score": 1, "segment": [0, 1]}]}, "'label' must be a string"),
        ({"vid1": [{"label": 3, "score": 1, "segment": [0, 1]}]}, "'label' must be a string"),
        ({"vid1": [[0, 1, "x", 0.5]]}, "expected an object with label, score, segment"),
    ],
)
def test_bad_predictions_are_rejected_with_location(results, match):
    with pytest.raises(EvaluationInputError, match=match) as err:
        evaluate_detection(GOOD_GT, {"results": results}, ["0.5"], pred_source="p.json")
    assert str(err.value).startswith("p.json: ")


@pytest.mark.parametrize(
    "gt, match",
    [
        ({"db": {}}, "missing top-level key 'database'"),
        ({"database": []}, "'database' must be an object"),
        ({"database": {"v": {"subset": "test"}}}, r"database\['v'\] needs an 'annotations' list"),
        (
            {"database": {"v": {"annotations": [{"segment": [0, 1]}]}}},
            r"\['annotations'\]\[0\]: needs keys 'segment' and 'label'",
        ),
        ({"database": {"v": {"annotations": [{"segment": [3, 1], "label": "x"}]}}}, "ends before it starts"),
        ({"database": {"v": {"annotations": [{"segment": [-3, 1], "label": "x"}]}}}, "starts before 0 s"),
        ({"database": {"v": {"annotations": [{"segment": [0, "inf"], "label": "x"}]}}}, "not finite"),
        ({"database": {"v": {"annotations": [{"segment": [0, 1], "label": ""}]}}}, "non-empty string"),
    ],
)
def test_bad_ground_truth_is_rejected(gt, match):
    with pytest.raises(EvaluationInputError, match=match) as err:
        evaluate_detection(gt, {"results": {}}, ["0.5"], gt_source="gt.json")
    assert str(err.value).startswith("gt.json: ")


def test_load_json_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"database": {"a": ')
    with pytest.raises(EvaluationInputError, match=r"bad.json: malformed JSON: .* line 1"):
        load_json(bad, "ground_truth")
    with pytest.raises(EvaluationInputError, match="missing.json: ground truth file not found"):
        load_json(tmp_path / "missing.json", "ground_truth")
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(EvaluationInputError, match="arr.json: expected a JSON object"):
        load_json(arr, "predictions")
    res = tmp_path / "res.json"
    res.write_text('{"version": "x"}')
    with pytest.raises(EvaluationInputError, match=r"res.json: missing top-level key 'results'"):
        load_json(res, "predictions")


# ---------------------------------------------------------------------------------------------
# CLI


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_cli_writes_metrics_and_table(tmp_path, capsys):
    gt = write(tmp_path / "gt.json", gt_of({"a": [(0, 10, "x"), (20, 30, "x")], "b": [(0, 10, "x"), (40, 50, "y")]}))
    p = pred_of(
        [
            ("a", 0, 10, "x", 0.9),
            ("a", 0, 10, "x", 0.8),
            ("b", 0, 5, "x", 0.7),
            ("c", 0, 10, "x", 0.6),
            ("a", 20, 26, "x", 0.5),
        ]
    )
    p["video_scores"] = {"a": {"x": 0.9, "y": 0.1}, "b": {"x": 0.5, "y": 0.7}}
    pred = write(tmp_path / "pred.json", p)
    out = tmp_path / "out" / "metrics.json"
    assert main([str(gt), str(pred), "--tiou-thresholds", "0.5", "0.7", "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert "mAP" in printed.out and "37.78" in printed.out  # 100 * 17/45
    assert "warning:" in printed.err
    m = json.loads(out.read_text())
    assert set(m["mAP"]) == {"0.5", "0.7"}
    assert m["mAP"]["0.5"] == pytest.approx(17 / 45, abs=1e-15)
    assert m["AP"]["x"]["0.5"] == pytest.approx(34 / 45, abs=1e-15) and m["AP"]["y"]["0.7"] == 0.0
    assert m["average_mAP"] == pytest.approx((17 / 45 + 1 / 6) / 2, abs=1e-15)
    assert m["classification_mAP"] == 1.0  # x: a, b both positive; y: b ranked first
    assert m["mode"] == "activitynet" and m["num_ground_truth"] == {"x": 3, "y": 1}
    assert [f.name for f in out.parent.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    gt = write(tmp_path / "gt.json", gt_of({"a": [(0, 10, "x")]}))
    pred = write(tmp_path / "pred.json", {"results": {"a": [{"label": "x", "score": "0.9", "segment": [0, 1]}]}})
    out = tmp_path / "metrics.json"
    assert main([str(gt), str(pred), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(pred) in err and "'score'" in err
    assert not out.exists()
    (tmp_path / "broken.json").write_text("{")
    assert main([str(tmp_path / "broken.json"), str(pred)]) == 2
    assert "broken.json: malformed JSON" in capsys.readouterr().err
    assert main([str(gt), str(pred), "--tiou-thresholds", "2"]) == 2
    assert "--tiou-thresholds" in capsys.readouterr().err


def test_cli_video_scores_file(tmp_path, capsys):
    gt = write(tmp_path / "gt.json", gt_of({"a": [(0, 10, "x")], "b": [(0, 10, "y")]}))
    pred = write(tmp_path / "pred.json", pred_of([("a", 0, 10, "x", 0.9)]))
    scores = write(tmp_path / "scores.json", {"video_scores": {"a": {"x": 0.9, "y": 0.8}, "b": {"x": 0.1, "y": 0.2}}})
    out = tmp_path / "m.json"
    assert (
        main([str(gt), str(pred), "--tiou-thresholds", "0.5", "--video-scores", str(scores), "--output", str(out)]) == 0
    )
    # x: a+ b- -> 1; y: a- (0.8) b+ (0.2) -> 1/2.
    assert json.loads(out.read_text())["classification_mAP"] == 0.75
    assert "classification mAP: 75.00" in capsys.readouterr().out
    partial = write(tmp_path / "partial.json", {"a": {"x": 0.9, "y": 0.8}})
    assert main([str(gt), str(pred), "--video-scores", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "partial.json" in err and "no scores for video 'b'" in err


def test_module_entry_point(tmp_path):
    gt = write(tmp_path / "gt.json", gt_of({"a": [(0, 10, "x")], "b": [(5, 9, "Ambiguous")]}))
    pred = write(tmp_path / "pred.json", pred_of([("a", 1, 10, "x", 0.9)]))
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hamnet.evaluate", str(gt), str(pred), "--mode", "thumos14", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert list(m["mAP"]) == THUMOS_THR  # the thumos14 mode's default thresholds
    assert m["mAP"]["0.7"] == 1.0  # overlap 0.9
    proc = subprocess.run(
        [sys.executable, "-m", "hamnet.evaluate", str(gt), str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "none.json" in proc.stderr


def test_format_table_lists_classes_and_map():
    r = evaluate_detection(
        gt_of({"a": [(0, 10, "Long_class_name"), (0, 10, "b")]}), pred_of([("a", 0, 10, "b", 1.0)]), ["0.5", "0.75"]
    )
    table = format_table(r)
    lines = table.splitlines()
    assert any(line.startswith("Long_class_name") and "0.00" in line for line in lines)
    assert any(line.startswith("b ") and "100.00" in line for line in lines)
    assert lines[-1].startswith("mAP") and "50.00" in lines[-1]
    assert "@0.75" in table


# ---------------------------------------------------------------------------------------------
# Classification mAP


def test_classification_map_hand_computed():
    labels = {"v1": ["a"], "v2": ["b"], "v3": ["a", "b"], "v4": []}
    scores = {
        "v1": {"a": 0.9, "b": 0.2},
        "v2": {"a": 0.8, "b": 0.9},
        "v3": {"a": 0.7, "b": 0.1},
        "v4": {"a": 0.1, "b": 0.5},
        "extra": {"a": 1.0, "b": 1.0},
    }
    # a: ranking v1+ v2- v3+ v4- -> (1 + 2/3) / 2; b: v2+ v4- v1- v3+ -> (1 + 2/4) / 2.
    warnings: list[str] = []
    assert classification_ap(labels, scores, warnings=warnings) == pytest.approx({"a": 5 / 6, "b": 3 / 4}, abs=1e-15)
    assert classification_map(labels, scores) == pytest.approx(19 / 24, abs=1e-15)
    assert warnings == ["video scores: 1 videos without ground-truth labels ignored"]
    with pytest.raises(EvaluationInputError, match="no scores for video 'v4'"):
        classification_map(labels, {k: v for k, v in scores.items() if k != "v4"})
    with pytest.raises(EvaluationInputError, match="video 'v1' class 'b'"):
        classification_map(labels, {**scores, "v1": {"a": 0.3}})


# ---------------------------------------------------------------------------------------------
# Agreement with the loop reference


def random_case(seed: int, *, grid: bool, n_vid: int = 6, n_cls: int = 3, n_pred: int = 80):
    rng = random.Random(seed)
    classes = [f"c{i}" for i in range(n_cls)]

    def seg():
        s = rng.randint(0, 40) if grid else round(rng.uniform(0, 40), rng.choice([1, 2, 6]))
        return s, s + (rng.randint(0, 10) if grid else round(rng.uniform(0, 10), rng.choice([1, 2, 6])))

    db = {}
    for v in range(n_vid):
        anns = [(*seg(), rng.choice(classes)) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.4:
            anns.append((*seg(), "Ambiguous"))
        db[f"v{v}"] = anns
    db["v0"].append((1, 3, "c0"))
    rows = []
    gt_rows = [(v, s, e, lab) for v, anns in db.items() for s, e, lab in anns if lab != "Ambiguous"]
    for _ in range(n_pred):
        score = rng.choice([0.25, 0.5, 0.75]) if rng.random() < 0.3 else rng.random()
        if rng.random() < 0.5:  # near a ground truth: many contested matches
            v, s, e, lab = rng.choice(gt_rows)
            d = (e - s) * 0.3
            s2 = max(0.0, s + rng.uniform(-d, d))
            s, e = (
                (round(s2), round(max(s2, e + rng.uniform(-d, d)))) if grid else (s2, max(s2, e + rng.uniform(-d, d)))
            )
            rows.append((v, s, e, lab if rng.random() < 0.8 else rng.choice(classes + ["zzz"]), score))
        else:
            rows.append((f"v{rng.randint(0, n_vid)}", *seg(), rng.choice(classes + ["zzz"]), score))
    if rng.random() < 0.3:
        rows += rows[: rng.randint(1, 10)]  # exact duplicates
    return gt_of(db), pred_of(rows)


@pytest.mark.parametrize("tail", [0, 256], ids=["vectorised-rounds", "sequential-tail"])
def test_agrees_with_loop_reference_on_random_inputs(monkeypatch, tail):
    monkeypatch.setattr(ev, "_SEQUENTIAL_TAIL", tail)
    threshold_sets = [
        ["0.1", "0.3", "0.5", "0.7"],
        ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"],
        ["0.25"],
    ]
    for seed in range(60):
        gt, pred = random_case(seed, grid=seed % 2 == 0)
        thr = threshold_sets[seed % 3]
        for mode, ref in (("activitynet", reference_activitynet), ("thumos14", reference_thumos_kit)):
            r = evaluate_detection(gt, pred, thr, mode=mode)
            classes, ap, maps = ref(gt, pred, [float(t) for t in thr])
            assert r.classes == classes
            # Same float operations and exactly rounded sums: bit-identical, not just close.
            assert np.array_equal(r.ap, np.array(ap)), (seed, mode)
            assert r.map.tolist() == maps, (seed, mode)


def test_pair_chunking_does_not_change_results(monkeypatch):
    gt, pred = random_case(7, grid=False, n_pred=300)
    full = evaluate_detection(gt, pred, THUMOS_THR)
    monkeypatch.setattr(ev, "_PAIR_CHUNK", 5)
    assert np.array_equal(evaluate_detection(gt, pred, THUMOS_THR).ap, full.ap)


def test_greedy_matching_equals_sequential_walk(monkeypatch):
    monkeypatch.setattr(ev, "_SEQUENTIAL_TAIL", 0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        n_a, n_b, n = int(rng.integers(1, 30)), int(rng.integers(1, 30)), int(rng.integers(0, 400))
        a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
        used_a, used_b, expect = set(), set(), np.zeros(n, bool)
        for i in range(n):
            if a[i] not in used_a and b[i] not in used_b:
                used_a.add(a[i])
                used_b.add(b[i])
                expect[i] = True
        assert np.array_equal(ev._greedy_matching(a, b, n_a, n_b), expect)


# ---------------------------------------------------------------------------------------------
# Real THUMOS14 test annotations


def thumos14_test_gt(data: Path) -> dict:
    """The official-kit files as ActivityNet-form ground truth, Ambiguous intervals included."""
    folder = data / "thumos14" / "cmcs" / "thumos14-test-annotations"
    classes = [ln.split()[1] for ln in (folder / "detclasslist.txt").read_text().splitlines() if ln.strip()]
    db: dict[str, dict] = {}
    for label in [*classes, "Ambiguous"]:
        for line in (folder / f"{label}_test.txt").read_text().splitlines():
            if line.strip():
                video, s, e = line.split()
                db.setdefault(video, {"subset": "test", "annotations": []})["annotations"].append(
                    {"segment": [float(s), float(e)], "label": label}
                )
    return {"database": db}


def test_real_thumos14_ground_truth_against_itself(shared_data):
    gt = thumos14_test_gt(shared_data)
    assert len(gt["database"]) == 213
    rows = [
        (v, *a["segment"], a["label"], 1.0 - 1e-4 * i)
        for v, e in gt["database"].items()
        for i, a in enumerate(e["annotations"])
        if a["label"] != "Ambiguous"
    ]
    assert len(rows) == 3358
    pred = pred_of(rows)
    for mode in ("activitynet", "thumos14"):
        r = evaluate_detection(gt, pred, THUMOS_THR + ["0.95"], mode=mode)
        assert len(r.classes) == 20 and int(r.num_ground_truth.sum()) == 3358
        assert r.map.tolist() == [1.0] * 8 and r.average_map == 1.0, mode
    # BaS-Net's copy stores segments as strings and has subsets train/test.
    basnet = json.loads((shared_data / "thumos14" / "basnet" / "gt.json").read_text())
    rows = [
        (v, float(a["segment"][0]), float(a["segment"][1]), a["label"], 1.0)
        for v, e in basnet["database"].items()
        if e["subset"] == "test"
        for a in e["annotations"]
    ]
    r = evaluate_detection(basnet, pred_of(rows), THUMOS_THR, subset="test")
    assert r.num_videos == 210 and r.map.tolist() == [1.0] * 7


def test_real_thumos14_jittered_predictions_match_reference(shared_data):
    gt = thumos14_test_gt(shared_data)
    rng = random.Random(1)
    segs = [
        (v, *a["segment"], a["label"])
        for v, e in gt["database"].items()
        for a in e["annotations"]
        if a["label"] != "Ambiguous"
    ]
    classes = sorted({s[3] for s in segs})
    videos = list(gt["database"])
    rows = []
    for i in range(4000):
        if i % 4:
            v, s, e, lab = rng.choice(segs)
            d = 0.3 * (e - s)
            s = round(max(0.0, s + rng.gauss(0, d)), 2)
            rows.append((v, s, round(max(s, e + rng.gauss(0, d)), 2), lab, round(rng.random(), 3)))
        else:
            s = round(rng.uniform(0, 200), 1)
            rows.append(
                (rng.choice(videos), s, s + round(rng.uniform(0.5, 30), 1), rng.choice(classes), round(rng.random(), 3))
            )
    pred = pred_of(rows)
    thr = [float(t) for t in THUMOS_THR]
    r = evaluate_detection(gt, pred, THUMOS_THR)
    classes_ref, ap, maps = reference_activitynet(gt, pred, thr)
    assert r.classes == classes_ref and np.array_equal(r.ap, np.array(ap)) and r.map.tolist() == maps
    assert 0.05 < r.map[-1] < r.map[0] < 0.95  # a non-trivial operating point
    k = evaluate_detection(gt, pred, THUMOS_THR, mode="thumos14")
    classes_ref, ap, maps = reference_thumos_kit(gt, pred, thr)
    assert np.array_equal(k.ap, np.array(ap)) and k.map.tolist() == maps
