import json
from pathlib import Path

import pytest

from core.activitynet import video_labels
from storage.labels import LabelsError, class_list, read_labels_csv, write_labels_csv


def test_labels_roundtrip(tmp_path: Path):
    labels = {"v1": ["HighJump", "LongJump"], "v2": ["Diving"], "bg": []}
    p = write_labels_csv(tmp_path / "labels.csv", labels)
    back = read_labels_csv(p)
    assert back == {"v1": ["HighJump", "LongJump"], "v2": ["Diving"], "bg": []}
    assert class_list(back) == ["Diving", "HighJump", "LongJump"]


def test_labels_errors_name_file_and_line(tmp_path: Path):
    p = tmp_path / "l.csv"
    p.write_text("name,cls\nv,a\n")
    with pytest.raises(LabelsError, match="l.csv.*header"):
        read_labels_csv(p)
    p.write_text("video,label\n,HighJump\n")
    with pytest.raises(LabelsError, match=r"l.csv:2"):
        read_labels_csv(p)


def test_labels_from_real_thumos_gt(shared_data: Path):
    gt = json.loads((shared_data / "thumos14/basnet/gt.json").read_text())
    train = video_labels(gt, "train")
    test = video_labels(gt, "test")
    assert len(train) == 200 and len(test) == 210
    assert len(class_list(train)) == 20
