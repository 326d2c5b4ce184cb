"""The HTML report and its timeline figures."""

from __future__ import annotations

import base64
import re

import numpy as np

from core.atomic import remove_stale_partials
from pipeline.report import Timeline, VideoOutcome, load_timelines, render_report, save_timelines, timeline_figure
from pipeline.runlog import format_summary


def _timeline(vid="v1", T=40):
    t = np.arange(T)
    att = np.where((t > 10) & (t < 20), 0.9, 0.1).astype(np.float32)
    cas = np.zeros((T, 3), np.float32)
    cas[11:20, 1] = 2.0
    return Timeline(
        vid,
        0.64,
        att,
        cas,
        ["a", "b", "c"],
        np.array([0.1, 0.8, 0.1], np.float32),
        [{"segment": [7.0, 12.8], "label": "b", "score": 0.9}],
    )


def test_timelines_roundtrip_atomically(tmp_path):
    p = tmp_path / "t.npz"
    save_timelines(p, [_timeline("v1"), _timeline("v2", 17)])
    back = load_timelines(p)
    assert [t.video_id for t in back] == ["v1", "v2"]
    np.testing.assert_array_equal(back[0].attention, _timeline().attention)
    np.testing.assert_array_equal(back[1].cas, _timeline("v2", 17).cas)
    assert back[0].segments == _timeline().segments and back[0].classes == ["a", "b", "c"]
    assert [x.name for x in tmp_path.iterdir()] == ["t.npz"]


def test_report_has_warning_first_tables_and_embedded_figures(tmp_path):
    metrics = {
        "tiou_thresholds": [0.1, 0.5],
        "map": [0.5, 0.25],
        "average_map": 0.375,
        "classes": ["a", "b", "c"],
        "ap": [[1.0, 0.5], [0.5, 0.25], [0.0, 0.0]],
        "warnings": [],
    }
    outcomes = [
        VideoOutcome("v1", "v1.mp4", "ok", num_snippets=40, duration=25.6, num_segments=1),
        VideoOutcome("bad", "bad.mp4", "failed", "no video stream"),
    ]
    gt = {"database": {"v1": {"annotations": [{"segment": [7.2, 12.4], "label": "b"}]}}}
    html = render_report(
        title="T", timelines=[_timeline()], outcomes=outcomes, metrics=metrics, ground_truth=gt, random_backbone=True
    )
    body = html.split("<h1>T</h1>", 1)[1]
    # the random-backbone warning is the first thing after the title
    assert body.lstrip().startswith("<p class='warn'>Features come from a seeded RANDOM backbone")
    assert "1 of 2 videos failed" in html
    assert "<td>mAP</td><td>50.00</td><td>25.00</td><td>37.50</td>" in html
    assert "<td>b</td><td>50.00</td><td>25.00</td>" in html
    assert "no video stream" in html
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pngs) == 1
    raw = base64.b64decode(pngs[0])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "fig.png").write_bytes(raw)
    html2 = render_report(title="T", timelines=[_timeline()], outcomes=outcomes[:1])
    assert "RANDOM" not in html2 and "No ground truth" in html2


def test_figure_plots_gt_predictions_attention_and_cas():
    fig = timeline_figure(_timeline(), [{"segment": [7.2, 12.4], "label": "b"}])
    top, att, cas = fig.axes
    assert len(top.collections) == 2  # one GT bar, one prediction bar
    np.testing.assert_allclose(att.lines[0].get_ydata(), _timeline().attention)
    assert [l.get_label() for l in cas.lines][0] == "b"  # the GT class is drawn first
    assert cas.get_xlim() == (0, 40 * 0.64)


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
