"""The HTML report: display rule, lanes, timeline figures, per-video AP, index and video pages."""

from __future__ import annotations

import itertools
import random
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from core.atomic import remove_stale_partials
from pipeline.config import load_config
from pipeline.report import (
    Timeline,
    VideoOutcome,
    load_timelines,
    per_video_ap,
    publish_index,
    save_timelines,
    write_report,
)
from pipeline.report_config import ReportConfig
from pipeline.report_display import display_predictions, pack_lanes
from pipeline.report_figures import class_colours, timeline_figure
from pipeline.runlog import format_summary

CLASSES = ["a", "b", "c"]


def _timeline(vid="v1", T=40, segments=None):
    t = np.arange(T)
    att = np.where((t > 10) & (t < 20), 0.9, 0.1).astype(np.float32)
    cas = np.zeros((T, 3), np.float32)
    cas[11:20, 1] = 2.0
    segs = [{"segment": [7.0, 12.8], "label": "b", "score": 0.9}] if segments is None else segments
    return Timeline(vid, 0.64, att, cas, CLASSES, np.array([0.1, 0.8, 0.1], np.float32), segs)


def _p(s, e, label, score):
    return {"segment": [s, e], "label": label, "score": score}


def test_timelines_roundtrip_atomically(tmp_path):
    p = tmp_path / "t.npz"
    save_timelines(p, [_timeline("v1"), _timeline("v2", 17)])
    back = load_timelines(p)
    assert [t.video_id for t in back] == ["v1", "v2"]
    np.testing.assert_array_equal(back[0].attention, _timeline().attention)
    np.testing.assert_array_equal(back[1].cas, _timeline("v2", 17).cas)
    assert back[0].segments == _timeline().segments and back[0].classes == ["a", "b", "c"]
    assert [x.name for x in tmp_path.iterdir()] == ["t.npz"]


def test_display_rule_drops_decayed_duplicates_low_scores_and_caps_per_class():
    preds = [
        _p(10.0, 20.0, "a", 0.9),
        _p(10.5, 20.5, "a", 0.9 * 0.3),  # Soft-NMS duplicate: tIoU 0.9 with the best one
        _p(19.0, 30.0, "a", 0.5),  # overlaps the best by tIoU 0.05: a different prediction
        _p(40.0, 45.0, "a", 0.05),  # under min_score
        _p(12.0, 18.0, "b", 0.4),  # same time, other class: kept (NMS is per class)
    ] + [_p(50.0 + 3 * i, 52.0 + 3 * i, "c", 1.0 - 0.01 * i) for i in range(8)]
    shown = display_predictions(preds, ReportConfig(min_score=0.1, nms_tiou=0.3, top_per_class=5))
    by = {c: [(p["segment"][0], p["score"]) for p in shown if p["label"] == c] for c in "abc"}
    assert by["a"] == [(10.0, 0.9), (19.0, 0.5)]
    assert by["b"] == [(12.0, 0.4)]
    assert [s for s, _ in by["c"]] == [50.0, 53.0, 56.0, 59.0, 62.0]  # the 5 best, in time order
    assert len(preds) == 13  # the input (the results) is untouched
    # A class whose best prediction scores under min_score still shows that one (and only it):
    # a correct segment with a weak contrast score must not vanish from the figure.
    weak = [_p(5.0, 9.0, "d", 0.04), _p(30.0, 33.0, "d", 0.02), _p(5.2, 9.1, "d", 0.03)]
    shown = display_predictions(weak, ReportConfig(min_score=0.1, nms_tiou=0.3, top_per_class=5))
    assert [(p["segment"][0], p["score"]) for p in shown] == [(5.0, 0.04)]


def test_lanes_never_overlap_and_are_as_few_as_the_deepest_overlap():
    rng = random.Random(3)
    for _ in range(50):
        iv = []
        for _ in range(rng.randint(0, 25)):
            s = rng.uniform(0, 100)
            iv.append((s, s + rng.uniform(0.1, 20)))
        lanes = pack_lanes(iv)
        for i, j in itertools.combinations(range(len(iv)), 2):
            if lanes[i] == lanes[j]:
                assert iv[i][1] <= iv[j][0] or iv[j][1] <= iv[i][0]
        depth = max([sum(s <= x[0] < e for s, e in iv) for x in iv], default=0)
        assert max(lanes, default=-1) + 1 == depth


def _figure(gt, preds, classes=CLASSES):
    t = _timeline(segments=preds)
    return timeline_figure(
        t.video_id,
        t.seconds_per_snippet,
        t.attention,
        t.cas,
        classes,
        t.video_scores,
        gt,
        preds,
        class_colours(classes),
    )


def test_figure_labels_never_overlap_and_the_legend_covers_no_axes():
    # Overlapping predictions of two classes and of one class, as Soft-NMS leaves them.
    preds = [_p(6.0, 13.0, "b", 0.41), _p(7.0, 12.5, "a", 0.32), _p(9.0, 16.0, "b", 1.12), _p(1.0, 1.3, "b", 0.2)]
    fig = _figure([{"segment": [7.2, 12.4], "label": "b"}], preds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    seg, att, cas = fig.axes
    texts = [t for t in seg.texts if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"{texts[i].get_text()!r} overlaps {texts[j].get_text()!r}"
    labels = [t.get_text() for t in texts]
    lanes = [x for x in labels if x.endswith(("ground truth", "predicted"))]
    assert lanes == ["b  ground truth", "b  predicted", "a  predicted"]  # GT class on top, one group per class
    assert "0.41" in labels and "1.12" in labels  # the overlapping b's went to separate lanes
    assert "0.20" not in labels  # a 0.3-s bar is too narrow for its score: not printed
    legend = cas.get_legend().get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer))
    assert [line.get_label() for line in cas.lines][:2] == ["b", "a"]  # GT class first, then predicted
    np.testing.assert_allclose(att.lines[0].get_ydata(), _timeline().attention)
    assert cas.get_xlim() == (0, 40 * 0.64)


def test_per_video_ap_is_the_evaluator_on_one_video():
    gt = {
        "subset": "test",
        "annotations": [{"segment": [10.0, 20.0], "label": "a"}, {"segment": [50, 55], "label": "Ambiguous"}],
    }
    hit, miss = _p(10.5, 19.5, "a", 0.5), _p(30.0, 40.0, "a", 0.9)
    assert per_video_ap("v", gt, [hit], "activitynet") == (1.0, "")
    assert per_video_ap("v", gt, [miss, hit], "activitynet") == (0.5, "")  # FP ranked first: precision 1/2
    assert per_video_ap("v", gt, [], "thumos14") == (0.0, "")
    assert per_video_ap("v", {"annotations": [{"segment": [50, 55], "label": "Ambiguous"}]}, [hit], "activitynet") == (
        None,
        "no ground-truth action",
    )


METRICS = {
    "tiou_thresholds": [0.1, 0.5],
    "map": [0.5, 0.25],
    "average_map": 0.375,
    "classes": ["a", "b", "c"],
    "ap": [[1.0, 0.5], [0.5, 0.25], [0.0, 0.0]],
    "warnings": [],
    "num_videos": 2,
}
INFO = {
    "config": "demo",
    "config_hash": "abc123",
    "mode": "activitynet",
    "subset": "test",
    "class_score_weight": 0.2,
    "backbone": {"backbone": "i3d", "random_backbone": True, "random_seed": 7},
}


def _run(tmp_path: Path, **kw):
    gt = {
        "database": {
            "good": {"subset": "test", "annotations": [{"segment": [7.2, 12.4], "label": "b"}]},
            "poor": {"subset": "test", "annotations": [{"segment": [18.0, 24.0], "label": "a"}]},
            "other": {"subset": "validation", "annotations": [{"segment": [1.0, 2.0], "label": "a"}]},
        }
    }
    timelines = [_timeline("good"), _timeline("poor"), _timeline("nogt"), _timeline("trainvid"), _timeline("other")]
    outcomes = [VideoOutcome(t.video_id, f"{t.video_id}.mp4", "ok", num_snippets=40, duration=25.6) for t in timelines]
    outcomes.append(VideoOutcome("bad", "bad.mp4", "failed", "no video stream"))
    args = dict(
        title="T",
        timelines=timelines,
        outcomes=outcomes,
        metrics=METRICS,
        ground_truth=gt,
        random_backbone=True,
        info=INFO,
        train_videos={"trainvid"},
        workers=1,
    )
    args.update(kw)
    return write_report(tmp_path / "report" / "report.html", **args)


def _rows(html: str) -> list[list[str]]:
    body = html.split("<table id='videos'", 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(?:<a [^>]*>)?([^<]*)", tr) for tr in body.split("<tr>")[2:]]


def test_index_header_order_and_links(tmp_path):
    index = _run(tmp_path)
    html = index.read_text()
    body = html.split("<h1>T</h1>", 1)[1]
    assert body.lstrip().startswith("<p class='warn'>Features come from a seeded RANDOM backbone")
    assert "1 of 6 videos failed" in html
    for needle in (
        "<dt>evaluated videos</dt><dd>2 with ground truth</dd>",
        "<dt>subset</dt><dd>test</dd>",
        "<dt>evaluator</dt><dd>activitynet mode",
        "<dt>tIoU thresholds</dt><dd>0.1 0.5</dd>",
        "<dt>backbone</dt><dd>RANDOM i3d (seed 7), not pretrained</dd>",
        "<dt>config</dt><dd>demo, hash abc123</dd>",
        "<dt>generated</dt>",
        "+ 0.2 x the video&#x27;s probability",  # the score line
        "at most 50 per class",  # the display rule
    ):
        assert needle in html, needle
    assert "<td data-v='mAP'>mAP</td><td data-v='50.00'>50.00</td><td data-v='25.00'>25.00</td>" in html
    rows = _rows(html)
    # Worst first: the failure, then evaluated videos by AP@0.5 ascending, then test videos
    # without (evaluated) ground truth, then training videos.
    assert [r[0] for r in rows] == ["bad", "poor", "good", "nogt", "other", "trainvid"]
    assert rows[1][6] == "0.0" and rows[2][6] == "100.0" and rows[4][6] == ""  # "other": not in the subset
    assert rows[0][2] == "failed" and rows[0][7] == "no video stream"
    assert rows[5][1] == "train" and rows[5][7] == "training video: not drawn"
    # Every link and image of the index resolves; the index holds no timeline image.
    out = index.parent
    refs = re.findall(r"(?:href|src)='([^']+)'", html)
    assert refs and all((out / urllib.parse.unquote(r)).is_file() for r in refs)
    assert re.findall(r"<img [^>]*src='([^']+)'", html) == ["ap_per_class.png"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        f"{v}.{e}" for v in ("good", "nogt", "other", "poor") for e in ("html", "png")
    ]


def test_video_pages_link_in_index_order_and_show_what_is_drawn(tmp_path):
    index = _run(tmp_path)
    pages = index.parent / "videos"
    poor = (pages / "poor.html").read_text()
    assert "<a href='../report.html'>" in poor and "<a href='good.html'>" in poor  # next in index order
    assert "<img class='fig' src='poor.png'" in poor and "width='1100'" in poor
    assert "1 drawn of 1 in the results" in poor and "<dd>0.0 %</dd>" in poor
    for page in pages.glob("*.html"):
        text = page.read_text()
        for ref in re.findall(r"(?:href|src)='([^']+)'", text):
            assert (pages / urllib.parse.unquote(ref)).resolve().is_file(), (page.name, ref)
    assert (pages / "poor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_videos_are_drawn_only_when_asked_and_without_metrics_no_ap(tmp_path):
    index = _run(tmp_path, settings=ReportConfig(include_train=True), metrics=None)
    html = index.read_text()
    assert (index.parent / "videos" / "trainvid.html").is_file()
    assert "No ground truth given" in html and "ap_per_class.png" not in html
    assert all(r[6] == "" for r in _rows(html))


def test_figures_drawn_by_worker_processes_match_the_pages(tmp_path, monkeypatch):
    import pipeline.report

    monkeypatch.setattr(pipeline.report, "_MIN_FIGURES_FOR_POOL", 2)  # a pool for 3 videos: cheap to test
    timelines = [_timeline(f"v{i:02d}", T=20 + 7 * i) for i in range(3)]
    outcomes = [VideoOutcome(t.video_id, "x.mp4", "ok", duration=0.64 * len(t.attention)) for t in timelines]
    index = write_report(tmp_path / "report.html", title="T", timelines=timelines, outcomes=outcomes, workers=2)
    from PIL import Image

    for t in timelines:
        page = (index.parent / "videos" / f"{t.video_id}.html").read_text()
        with Image.open(index.parent / "videos" / f"{t.video_id}.png") as im:
            assert f"width='{im.width}' height='{im.height}'" in page  # the size the worker reported


def test_published_index_links_back_into_the_report_directory(tmp_path):
    index = _run(tmp_path)
    top = publish_index(index, tmp_path / "report.html")
    html = top.read_text()
    base = re.search(r"<base href='([^']+)'>", html).group(1)
    assert base == "report/"
    for ref in re.findall(r"(?:href|src)='(videos/[^']+|ap_per_class.png)'", html):
        assert (tmp_path / base / ref).is_file()


def test_report_settings_match_the_base_yaml_and_are_strict():
    section = load_config("thumos14")["report"]
    assert ReportConfig.from_dict(section).to_dict() == section == ReportConfig().to_dict()
    with pytest.raises(ValueError, match="report.top_per_clas"):
        ReportConfig.from_dict({"top_per_clas": 3})
    with pytest.raises(ValueError, match="report.nms_tiou"):
        ReportConfig.from_dict({"nms_tiou": 0})
    with pytest.raises(ValueError, match="report.include_train"):
        ReportConfig.from_dict({"include_train": "yes"})


def test_summary_lists_every_video_and_skipped_file(tmp_path):
    outs = [
        VideoOutcome("a", "a.mp4", "ok", num_snippets=3, duration=2.0, num_segments=0),
        VideoOutcome("b c", "b c.mp4", "failed", "truncated"),
    ]
    text = format_summary(outs, [("notes.txt", "extension not a known video type")])
    assert "videos: 2  ok: 1  failed: 1  skipped files: 1" in text
    assert "FAILED  b c" in text and "truncated" in text and "SKIPPED notes.txt" in text
    (tmp_path / ".x.h5.abc.partial").write_text("")
    (tmp_path / ".y.h5.abc.partial").write_text("")
    assert [p.name for p in remove_stale_partials(tmp_path / "x.h5")] == [".x.h5.abc.partial"]
    assert (tmp_path / ".y.h5.abc.partial").exists()


def test_class_colours_are_distinct_and_never_the_grey_of_ambiguous():
    classes = [f"class{i:02d}" for i in range(23)]
    colours = class_colours(classes)
    rgb = [tuple(round(float(x), 3) for x in colours[c][:3]) for c in classes]
    assert len(set(rgb)) == 23
    assert not [c for c in rgb if max(c) - min(c) < 0.05]  # no grey: grey marks Ambiguous intervals
