"""The run report: an index page plus one timeline page per localized video.

Layout of a report directory (all files written atomically, the index last, since its
presence marks the report complete)::

    report.html           index: run header, mAP per tIoU, AP per class (chart and table),
                          the display rule, one sortable row per video, worst-localized first
    ap_per_class.png      the AP chart
    videos/<id>.html      one page per drawn video: its timeline (the paper's Fig. 5 layout:
    videos/<id>.png       ground truth, predictions, attention, class activation) and tables

The index carries no timeline image, so it stays small at any dataset size (213 THUMOS14 test
videos: see docs/pipeline.md for the measured size and build time). Figures are drawn in
parallel worker processes.

Timelines are the per-video arrays localization produces (attention, attention-weighted
class activation); :func:`save_timelines` / :func:`load_timelines` keep them in one ``.npz``
next to the localization results so the report can be rebuilt without the model.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.atomic import atomic_open, write_text_atomic
from pipeline.report_config import ReportConfig, score_text
from pipeline.report_display import display_predictions
from pipeline.report_html import Cell, esc, img, meta_list, page, table

INDEX_NAME = "report.html"
VIDEO_DIR = "videos"
# Below this many figures a worker pool costs more (process start, imports) than it saves.
_MIN_FIGURES_FOR_POOL = 12


@dataclass
class Timeline:
    """What localization produced for one video, in the form the report plots."""

    video_id: str
    seconds_per_snippet: float
    attention: np.ndarray  # (T,)
    cas: np.ndarray  # (T, C)
    classes: list[str]
    video_scores: np.ndarray  # (C,)
    segments: list[dict[str, Any]] = field(default_factory=list)  # {"segment": [s, e], "label", "score"}


@dataclass
class VideoOutcome:
    """One line of the run summary: a video and what happened to it."""

    video_id: str
    source: str
    status: str  # "ok" | "failed"
    reason: str = ""
    num_snippets: int = 0
    duration: float = 0.0
    num_segments: int | None = None


def save_timelines(path: str | os.PathLike, timelines: Sequence[Timeline]) -> Path:
    """Write timelines to one ``.npz`` atomically (arrays by index, metadata as JSON)."""
    path = Path(path)
    # Any, not np.ndarray: mypy would match the **-expanded dict against savez's allow_pickle: bool.
    arrays: dict[str, Any] = {}
    meta = []
    for i, t in enumerate(timelines):
        arrays[f"attention_{i}"] = np.asarray(t.attention, np.float32)
        arrays[f"cas_{i}"] = np.asarray(t.cas, np.float32)
        arrays[f"scores_{i}"] = np.asarray(t.video_scores, np.float32)
        meta.append(
            {
                "video_id": t.video_id,
                "seconds_per_snippet": float(t.seconds_per_snippet),
                "classes": list(t.classes),
                "segments": list(t.segments),
            }
        )
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    # A file object, not a name: np.savez would append ".npz" to a temporary name.
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_timelines(path: str | os.PathLike) -> list[Timeline]:
    path = Path(path)
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            return [
                Timeline(
                    m["video_id"],
                    m["seconds_per_snippet"],
                    z[f"attention_{i}"],
                    z[f"cas_{i}"],
                    m["classes"],
                    z[f"scores_{i}"],
                    m["segments"],
                )
                for i, m in enumerate(meta)
            ]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a readable timelines file ({e})") from e


@dataclass
class VideoRow:
    """One row of the index: a video, what happened to it, and how well it was localized."""

    video_id: str
    split: str  # "test" | "train" (train: labelled for training, no ground truth by definition)
    status: str  # "ok" | "failed"
    reason: str
    duration: float
    num_gt: int | None  # ground-truth segments; None when the video is not evaluated
    num_predictions: int | None  # every proposal in the results; None when not localized
    num_shown: int | None  # those the display rule draws
    ap50: float | None  # per-video AP at tIoU 0.5 (evaluator on this video alone)
    page: str | None = None  # its timeline page, relative to the index
    note: str = ""  # why it has no AP or no page


def per_video_ap(
    video_id: str, gt_entry: Mapping[str, Any], segments: Sequence[Mapping[str, Any]], mode: str
) -> tuple[float | None, str]:
    """AP at tIoU 0.5 of one video: the run's evaluator on this video's ground truth alone.

    It is the mean over the classes in this video's ground truth; predictions of other classes
    do not count here (they do in the dataset mAP, as false positives of their class).
    Returns (AP, "") or (None, why not).
    """
    from hamnet.evaluate import evaluate_detection

    anns = [a for a in gt_entry.get("annotations", []) if a.get("label") != "Ambiguous"]
    if not anns:
        return None, "no ground-truth action"
    try:
        res = evaluate_detection(
            {"database": {video_id: dict(gt_entry)}},
            {"results": {video_id: list(segments)}},
            ["0.5"],
            mode=mode,
        )
    except ValueError as e:
        return None, f"not evaluated: {e}"
    return float(res.map[0]), ""


def run_info(
    *,
    cfg: Mapping[str, Any],
    config_name: str,
    config_hash: str,
    overrides: str,
    feature_inputs: Mapping[str, Any],
    subset: str,
    localizations: str | os.PathLike = "",
    videos: str | os.PathLike = "",
) -> dict[str, Any]:
    """What the index header says about how the run was made (the task passes its settings).

    ``config_hash``: the hash of the resolved settings ``cfg`` (the task's settings_hash).
    """
    return {
        "config": config_name,
        "overrides": overrides,
        "config_hash": config_hash,
        "backbone": dict(feature_inputs),
        "mode": cfg.get("evaluate", {}).get("mode", ""),
        "subset": subset,
        "class_score_weight": cfg.get("localize", {}).get("class_score_weight"),
        "localizations": str(localizations),
        "videos": str(videos),
    }


def backbone_text(b: Mapping[str, Any]) -> str:
    """The feature backbone in one line: a random one with its seed, or the checkpoints' sha256."""
    if not b:
        return "unknown"
    name = b.get("backbone", "i3d")
    if b.get("random_backbone"):
        return f"RANDOM {name} (seed {b.get('random_seed')}), not pretrained"
    rgb, flow = b.get("rgb_checkpoint_sha256"), b.get("flow_checkpoint_sha256")
    return f"{name}, rgb checkpoint sha256 {str(rgb)[:16]}, flow checkpoint sha256 {str(flow)[:16]}"


def _row_order(r: VideoRow) -> tuple:
    """Worst first: failed videos, then evaluated ones by AP ascending, then the rest by id."""
    if r.status != "ok":
        return (0, 0.0, r.video_id)
    if r.ap50 is not None:
        return (1, r.ap50, r.video_id)
    if r.num_gt is not None:
        return (2, 0.0, r.video_id)
    return (3 if r.split == "test" else 4, 0.0, r.video_id)


def _video_href(video_id: str, ext: str) -> str:
    return f"{VIDEO_DIR}/{urllib.parse.quote(video_id)}.{ext}"


def _draw_video(job: dict[str, Any]) -> tuple[str, tuple[int, int]]:
    """Worker: draw one timeline to its PNG; returns (video id, pixel size)."""
    from pipeline.report_figures import save_png, timeline_figure

    fig = timeline_figure(**job["figure"])
    return job["figure"]["video_id"], save_png(fig, job["path"])


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _draw_all(jobs: list[dict[str, Any]], workers: int, progress: bool) -> dict[str, tuple[int, int]]:
    """Draw every timeline, in worker processes when there are enough of them.

    Workers are spawned, not forked: the report may run in a process that has used torch's
    thread pools (Luigi's local scheduler runs every task in one process).
    """
    workers = workers or _usable_cores()
    bar = tqdm(total=len(jobs), desc="report figures", unit="video", disable=not progress)
    sizes: dict[str, tuple[int, int]] = {}
    try:
        if workers <= 1 or len(jobs) < _MIN_FIGURES_FOR_POOL:
            for job in jobs:
                vid, size = _draw_video(job)
                sizes[vid] = size
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                for vid, size in pool.map(_draw_video, jobs, chunksize=4):
                    sizes[vid] = size
                    bar.update()
    finally:
        bar.close()
    return sizes


def build_rows(
    timelines: Sequence[Timeline],
    outcomes: Sequence[VideoOutcome],
    evaluated: Mapping[str, Any],
    train_videos: Collection[str],
    settings: ReportConfig,
    mode: str,
) -> tuple[list[VideoRow], dict[str, list[dict[str, Any]]]]:
    """Index rows (worst-localized first) and each localized video's predictions to draw."""
    by_id = {t.video_id: t for t in timelines}
    train = set(train_videos)
    rows: list[VideoRow] = []
    shown: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        t = by_id.get(o.video_id)
        split = "train" if o.video_id in train else "test"
        row = VideoRow(o.video_id, split, o.status, o.reason, o.duration, None, None, None, None)
        if o.video_id in evaluated:
            row.num_gt = sum(a.get("label") != "Ambiguous" for a in evaluated[o.video_id].get("annotations", []))
        if t is not None:
            shown[o.video_id] = display_predictions(t.segments, settings)
            row.num_predictions, row.num_shown = len(t.segments), len(shown[o.video_id])
            if o.video_id in evaluated:
                row.ap50, row.note = per_video_ap(o.video_id, evaluated[o.video_id], t.segments, mode)
        elif o.status == "ok":
            row.note = "no localization for this video"
        rows.append(row)
    rows.sort(key=_row_order)
    return rows, shown


def write_report(
    path: str | os.PathLike,
    *,
    title: str,
    timelines: Sequence[Timeline],
    outcomes: Sequence[VideoOutcome],
    metrics: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    random_backbone: bool = False,
    notes: Sequence[str] = (),
    info: Mapping[str, Any] | None = None,
    train_videos: Collection[str] = (),
    settings: ReportConfig | None = None,
    workers: int = 0,
    progress: bool = False,
) -> Path:
    """Write the report directory whose index is ``path`` (see the module docstring).

    ``metrics``: {"tiou_thresholds", "map", "average_map", "classes", "ap" (C x K), "warnings",
    "num_videos"}. ``ground_truth``: ActivityNet form keyed by the timelines' video ids; only
    videos of ``info["subset"]`` (when set) count as evaluated. ``info``: see :func:`run_info`.
    ``train_videos``: ids of the training videos, drawn only with ``settings.include_train``.
    ``workers``: processes for the figures, 0 = the usable cores.
    """
    from pipeline.report_figures import ap_chart, class_colours, save_png

    path = Path(path)
    out = path.parent
    settings = settings or ReportConfig()
    info = dict(info or {})
    mode = info.get("mode") or "activitynet"
    subset = info.get("subset") or ""
    db = dict((ground_truth or {}).get("database", {}))
    evaluated = {v: e for v, e in db.items() if not subset or e.get("subset") == subset} if metrics else {}
    rows, shown = build_rows(timelines, outcomes, evaluated, train_videos, settings, mode)

    all_classes = sorted(
        {c for t in timelines for c in t.classes} | {str(c) for c in (metrics or {}).get("classes", [])}
    )
    colours = class_colours(all_classes)
    by_id = {t.video_id: t for t in timelines}
    drawn = [r for r in rows if r.video_id in by_id and (r.split == "test" or settings.include_train)]
    drawn_ids = {r.video_id for r in drawn}
    for r in rows:
        if r.video_id in by_id and r.video_id not in drawn_ids:
            r.note = r.note or "training video: not drawn"
    jobs = []
    for r in drawn:
        t = by_id[r.video_id]
        gt = list(db.get(r.video_id, {}).get("annotations", []))
        jobs.append(
            {
                # ids are file-name safe (storage.featstore.safe_video_id): the file is named by the id
                "path": out / VIDEO_DIR / f"{r.video_id}.png",
                "figure": {
                    "video_id": t.video_id,
                    "seconds_per_snippet": float(t.seconds_per_snippet),
                    "attention": np.asarray(t.attention),
                    "cas": np.asarray(t.cas),
                    "classes": list(t.classes),
                    "video_scores": np.asarray(t.video_scores),
                    "gt_segments": gt,
                    "predictions": shown[r.video_id],
                    "colours": colours,
                },
            }
        )
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    sizes = _draw_all(jobs, workers, progress)

    rule, score = settings.rule_text(), score_text(float(info.get("class_score_weight") or 0.2))
    for i, r in enumerate(drawn):
        r.page = _video_href(r.video_id, "html")
        prev_r = drawn[i - 1] if i > 0 else None
        next_r = drawn[i + 1] if i + 1 < len(drawn) else None
        html_text = _video_page(
            title,
            r,
            by_id[r.video_id],
            db.get(r.video_id, {}).get("annotations", []),
            shown[r.video_id],
            sizes[r.video_id],
            prev_r,
            next_r,
            rule,
            score,
        )
        write_text_atomic(out / VIDEO_DIR / f"{r.video_id}.html", html_text)

    chart = None
    if metrics and len(metrics.get("ap", [])):
        fig = ap_chart(metrics["classes"], np.asarray(metrics["ap"], float), metrics["tiou_thresholds"])
        chart = ("ap_per_class.png", save_png(fig, out / "ap_per_class.png"))
    index = _index_page(
        title=title,
        rows=rows,
        metrics=metrics,
        random_backbone=random_backbone,
        notes=notes,
        info=info,
        num_drawn=len(drawn),
        chart=chart,
        rule=rule,
        score=score,
    )
    return write_text_atomic(path, index)  # last: the index marks the report complete


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _index_page(
    *,
    title: str,
    rows: Sequence[VideoRow],
    metrics: Mapping[str, Any] | None,
    random_backbone: bool,
    notes: Sequence[str],
    info: Mapping[str, Any],
    num_drawn: int,
    chart: tuple[str, tuple[int, int]] | None,
    rule: str,
    score: str,
) -> str:
    body = [f"<h1>{esc(title)}</h1>"]
    warnings = []
    if random_backbone:
        warnings.append(
            "Features come from a seeded RANDOM backbone (extract.random_backbone: true), not "
            "Kinetics-pretrained weights: the numbers below show the pipeline works end to end, they "
            "are not comparable with published results."
        )
    failed = [r for r in rows if r.status != "ok"]
    if failed:
        warnings.append(
            f"{len(failed)} of {len(rows)} videos failed and are left out of everything below; "
            "they are listed first in the video table with the reason."
        )
    body += [f"<p class='warn'>{esc(w)}</p>" for w in warnings]

    n_test = sum(r.split == "test" for r in rows)
    evaluated = sum(r.num_gt is not None for r in rows)
    header = [
        (
            "evaluated videos",
            f"{metrics.get('num_videos', evaluated)} with ground truth" if metrics else "none (no ground truth given)",
        ),
        ("subset", info.get("subset") or "all ground-truth videos"),
        ("evaluator", f"{info.get('mode') or 'activitynet'} mode (hamnet.evaluate)"),
    ]
    if metrics:
        header.append(("tIoU thresholds", " ".join(f"{float(x):g}" for x in metrics["tiou_thresholds"])))
    header += [
        (
            "videos",
            f"{len(rows)}: {n_test} test, {len(rows) - n_test} train, {len(failed)} failed; {num_drawn} timelines",
        ),
        ("backbone", backbone_text(info.get("backbone") or {})),
        (
            "config",
            f"{info.get('config', '?')}"
            + (f" with overrides {info['overrides']!r}" if info.get("overrides") else "")
            + (f", hash {info['config_hash']}" if info.get("config_hash") else ""),
        ),
    ]
    if info.get("localizations"):
        header.append(("localizations", str(info["localizations"])))
    if info.get("videos"):
        header.append(("video directory", str(info["videos"])))
    header.append(("generated", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    body.append(meta_list(header))
    body += [f"<p class='small'>{esc(n)}</p>" for n in notes]

    if metrics:
        th = [f"{float(x):g}" for x in metrics["tiou_thresholds"]]
        body.append("<h2>Detection mAP (%) per tIoU</h2>")
        body.append(
            table(
                ["tIoU", *th, "avg"],
                [["mAP", *(f"{100 * m:.2f}" for m in metrics["map"]), f"{100 * metrics['average_map']:.2f}"]],
            )
        )
        ap = np.asarray(metrics.get("ap", []), dtype=float)
        if ap.size:
            body.append("<h2>AP (%) per class</h2>")
            body.append("<div class='row'>")
            if chart:
                body.append(img(chart[0], "AP per class", chart[1]))
            body.append(
                table(
                    ["class", *th, "avg"],
                    [
                        [Cell(c, cls="l"), *(Cell(f"{100 * v:.2f}") for v in ap[i]), Cell(f"{100 * ap[i].mean():.2f}")]
                        for i, c in enumerate(metrics["classes"])
                    ],
                    sortable=True,
                )
            )
            body.append("</div>")
        for w in metrics.get("warnings", []):
            body.append(f"<p class='warn'>evaluation: {esc(w)}</p>")
    else:
        body.append("<p>No ground truth given: no evaluation (localizations only).</p>")

    body.append("<h2>Videos</h2>")
    body.append(
        "<p class='small'>Worst-localized first: failed videos, then evaluated videos by AP@0.5 "
        "ascending, then the rest. Click a column header to sort. Training videos have no timeline "
        "unless report.include_train is true. AP@0.5 is the evaluator run on "
        "one video's ground truth alone (mean over the classes in it). A video's name links to "
        f"its timeline. {esc(rule)} {esc(score)}</p>"
    )
    body.append(
        table(
            [
                "video",
                "split",
                "status",
                "duration (s)",
                "GT segments",
                "predictions drawn / all",
                "AP@0.5 (%)",
                "note",
            ],
            [_index_row(r) for r in rows],
            sortable=True,
            tid="videos",
        )
    )
    return page(title, body, script=True)


def _index_row(r: VideoRow) -> list[Cell]:
    preds = "" if r.num_predictions is None else f"{r.num_shown} / {r.num_predictions}"
    note = r.reason if r.status != "ok" else r.note
    return [
        Cell(r.video_id, href=r.page, cls="l"),
        Cell(r.split),
        Cell(r.status, cls="failed" if r.status != "ok" else ""),
        Cell(f"{r.duration:.1f}", sort=r.duration),
        Cell("" if r.num_gt is None else str(r.num_gt), sort=-1 if r.num_gt is None else r.num_gt),
        Cell(preds, sort=-1 if r.num_shown is None else r.num_shown),
        Cell(_pct(r.ap50), sort=1e9 if r.ap50 is None else r.ap50),
        Cell(note, cls="l"),
    ]


def _video_page(
    title: str,
    r: VideoRow,
    t: Timeline,
    gt: Sequence[Mapping[str, Any]],
    shown: Sequence[Mapping[str, Any]],
    size: tuple[int, int],
    prev_r: VideoRow | None,
    next_r: VideoRow | None,
    rule: str,
    score: str,
) -> str:
    """One video's page; links are relative to ``videos/``."""
    nav = [f"<a href='../{INDEX_NAME}'>&larr; all videos</a>"]
    if prev_r:
        nav.append(f"<a href='{esc(urllib.parse.quote(prev_r.video_id))}.html'>&lsaquo; {esc(prev_r.video_id)}</a>")
    if next_r:
        nav.append(f"<a href='{esc(urllib.parse.quote(next_r.video_id))}.html'>{esc(next_r.video_id)} &rsaquo;</a>")
    meta = [
        ("split", r.split),
        ("duration", f"{r.duration:.1f} s ({len(t.attention)} snippets of {t.seconds_per_snippet:.2f} s)"),
        ("ground truth", "not evaluated" if r.num_gt is None else f"{r.num_gt} segments"),
        ("predictions", f"{r.num_shown} drawn of {r.num_predictions} in the results"),
        ("AP@0.5", f"{_pct(r.ap50)} %" if r.ap50 is not None else (r.note or "-")),
    ]
    body = [
        "<nav>" + "".join(nav) + "</nav>",
        f"<h1>{esc(r.video_id)}</h1>",
        meta_list(meta),
        f"<p class='small'>{esc(rule)} {esc(score)} Panels, top to bottom: segment lanes (per class, "
        "ground truth then predictions, score printed where it fits), attention, and the "
        "attention-weighted class activation of the ground-truth, predicted and top-scoring "
        "classes; shaded spans are the ground truth.</p>",
        img(f"{urllib.parse.quote(r.video_id)}.png", f"timeline of {r.video_id}", size),
        "<h2>Predictions drawn</h2>",
        table(
            ["class", "start (s)", "end (s)", "score"],
            [
                [Cell(p["label"], cls="l"), f"{p['segment'][0]:.2f}", f"{p['segment'][1]:.2f}", f"{p['score']:.3f}"]
                for p in shown
            ],
        )
        if shown
        else "<p>None.</p>",
    ]
    if gt:
        body += [
            "<h2>Ground truth</h2>",
            table(
                ["class", "start (s)", "end (s)"],
                [
                    [Cell(g["label"], cls="l"), f"{float(g['segment'][0]):.2f}", f"{float(g['segment'][1]):.2f}"]
                    for g in sorted(gt, key=lambda g: float(g["segment"][0]))
                ],
            ),
        ]
    return page(f"{r.video_id} - {title}", body)


def publish_index(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a report's index elsewhere (the top of the output directory) with working links.

    A ``<base href>`` pointing back at the report directory makes the copy's relative links
    (timeline pages, the AP chart) resolve there, so the per-video pages are not duplicated.
    """
    src, dst = Path(src), Path(dst)
    rel = os.path.relpath(src.parent.resolve(), dst.parent.resolve()).replace(os.sep, "/")
    base = urllib.parse.quote(rel.rstrip("/") + "/")
    text = src.read_text(encoding="utf-8").replace("<head>", f"<head><base href='{esc(base)}'>", 1)
    return write_text_atomic(dst, text)
