"""The report in a real browser (headless Chromium): every image loads, no console errors.

Slow (a browser start and a report build); run with ``pytest -m slow``. Chromium is the
Debian package ``chromium`` (``.ci/run`` installs it); where it is absent the test is skipped
with that reason, never silently.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.report import VideoOutcome, publish_index, write_report
from tests.browser import Browser, find_chromium

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (Debian package 'chromium'; .ci/run installs it)")
    return exe


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A THUMOS14-like report of 14 test videos, 3 training videos and one failure."""
    from bench.bench_report import synthetic_ground_truth, synthetic_timeline

    rng = random.Random(1)
    gt, durations = synthetic_ground_truth(rng, n=14)
    classes = sorted({a["label"] for e in gt["database"].values() for a in e["annotations"]})
    timelines = [synthetic_timeline(v, durations[v], e["annotations"], classes, rng) for v, e in gt["database"].items()]
    train = [synthetic_timeline(f"train_{i}", 90.0, [], classes, rng) for i in range(3)]
    outcomes = [VideoOutcome(t.video_id, "v.mp4", "ok", duration=len(t.attention) * 0.64) for t in timelines + train]
    outcomes.append(VideoOutcome("broken", "broken.mp4", "failed", "no video stream"))
    metrics = {
        "tiou_thresholds": [0.1, 0.5],
        "map": [0.5, 0.3],
        "average_map": 0.4,
        "classes": classes,
        "ap": [[0.5, 0.3]] * len(classes),
        "warnings": [],
        "num_videos": len(timelines),
    }
    out = tmp_path_factory.mktemp("browser")
    index = write_report(
        out / "report" / "abc" / "report.html",
        title="Browser check",
        timelines=timelines + train,
        outcomes=outcomes,
        metrics=metrics,
        ground_truth=gt,
        info={"config": "test", "mode": "activitynet", "subset": "test"},
        train_videos={t.video_id for t in train},
    )
    publish_index(index, out / "report.html")  # as RunAll does
    return out


def test_index_and_a_timeline_page_render_without_errors(chromium, report):
    with Browser(chromium) as b:
        for page in (report / "report.html", report / "report" / "abc" / "report.html"):
            b.load(page)
            images = b.images()
            assert [Path(i["src"]).name for i in images] == ["ap_per_class.png"]
            assert all(i["loaded"] for i in images), images
            assert b.errors() == []
            links = b.evaluate("Array.from(document.querySelectorAll('#videos a')).map(a => a.href)")
            assert len(links) == 14  # every test video, no training video, no failed one
            # The sort script works: a click on "AP@0.5 (%)" orders the rows by it.
            ap = b.evaluate(
                "(() => { const t = document.getElementById('videos'); t.tHead.rows[0].cells[6].click();"
                " return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[6].dataset.v)); })()"
            )
            assert ap == sorted(ap)
            assert b.errors() == []

        b.load(Path(links[0][len("file://") :]))
        images = b.images()
        assert len(images) == 1 and images[0]["loaded"] and images[0]["width"] == 1100, images
        assert b.errors() == []
        nxt = b.evaluate("Array.from(document.querySelectorAll('nav a')).map(a => a.href)")
        assert nxt[0].endswith("/report/abc/report.html") and nxt[-1] == links[1]
