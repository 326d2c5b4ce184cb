"""The run report: one self-contained HTML file (figures embedded as base64 PNG).

It shows, in this order: warnings that change how to read the numbers (first of all a random
backbone), the detection mAP per tIoU, AP per class, the outcome of every video, and per-video
timelines in the manner of the paper's Fig. 5: ground truth, predicted segments, the
attention and the class activation over time.

Timelines are the per-video arrays localization produces (attention, attention-weighted
class activation); :func:`save_timelines` / :func:`load_timelines` keep them in one ``.npz``
next to the localization results so the report can be rebuilt without the model.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on workers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.atomic import atomic_open, write_text_atomic


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
    arrays: dict[str, np.ndarray] = {}
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


def timeline_figure(
    t: Timeline, gt_segments: Sequence[dict[str, Any]] = (), *, max_classes: int = 4, max_predictions: int = 12
) -> plt.Figure:
    """Fig.-5-style plot of one video: GT and predicted segments, attention, class activation."""
    duration = max(len(t.attention) * t.seconds_per_snippet, 1e-6)
    times = (np.arange(len(t.attention)) + 0.5) * t.seconds_per_snippet
    gt_classes = sorted({g["label"] for g in gt_segments})
    # Classes worth drawing: the ground-truth ones, then the highest-scoring predictions.
    ranked = [t.classes[i] for i in np.argsort(-np.asarray(t.video_scores))]
    shown = (gt_classes + [c for c in ranked if c not in gt_classes])[: max(max_classes, len(gt_classes))]
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(t.classes)}

    fig, axes = plt.subplots(3, 1, figsize=(9, 4.2), sharex=True, gridspec_kw={"height_ratios": [1.1, 1, 1.3]})
    ax = axes[0]
    for g in gt_segments:
        s, e = g["segment"]
        ax.broken_barh([(s, e - s)], (1.05, 0.8), color=colour.get(g["label"], "grey"))
        ax.text((s + e) / 2, 1.45, g["label"], ha="center", va="center", fontsize=7, color="white", clip_on=True)
    preds = sorted(t.segments, key=lambda p: -p["score"])[:max_predictions]
    top = max([p["score"] for p in preds], default=1.0) or 1.0
    for p in preds:
        s, e = p["segment"]
        alpha = float(np.clip(0.25 + 0.75 * p["score"] / top, 0.25, 1.0))
        ax.broken_barh([(s, e - s)], (0.05, 0.8), color=colour.get(p["label"], "grey"), alpha=alpha)
    for p in preds[:3]:  # name the best few; more would overlap
        ax.text(
            (p["segment"][0] + p["segment"][1]) / 2,
            0.45,
            f"{p['label']} {p['score']:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            clip_on=True,
        )
    ax.set_yticks([0.45, 1.45], ["predicted", "ground truth"])
    ax.set_ylim(0, 1.95)
    ax.set_title(f"{t.video_id}", fontsize=10, loc="left")

    axes[1].plot(times, t.attention, color="black", lw=1.2)
    axes[1].fill_between(times, 0, t.attention, color="black", alpha=0.15)
    for g in gt_segments:
        axes[1].axvspan(*g["segment"], color=colour.get(g["label"], "grey"), alpha=0.15, lw=0)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("attention", fontsize=9)

    cas = np.asarray(t.cas)
    for c in shown:
        k = t.classes.index(c)
        axes[2].plot(times, cas[:, k], color=colour[c], lw=1.2, label=c)
    axes[2].set_ylabel("class activation", fontsize=9)
    axes[2].set_xlabel("time (s)")
    axes[2].set_xlim(0, duration)
    if shown:
        axes[2].legend(loc="upper right", fontsize=8, ncol=min(len(shown), 4), frameon=False)
    fig.tight_layout()
    return fig


def figure_png(fig: plt.Figure, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child{text-align:left}.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em}
.failed{color:#a00}img{max-width:100%}"""


def render_report(
    *,
    title: str,
    timelines: Sequence[Timeline],
    outcomes: Sequence[VideoOutcome],
    metrics: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    random_backbone: bool = False,
    notes: Sequence[str] = (),
    max_figures: int = 12,
) -> str:
    """The report as an HTML string.

    ``metrics``: {"tiou_thresholds", "map", "average_map", "classes", "ap" (C x K), "warnings"}.
    ``ground_truth``: ActivityNet form whose database keys are the timelines' video ids.
    """
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    warnings = []
    if random_backbone:
        warnings.append(
            "Features come from a seeded RANDOM backbone (extract.random_backbone: true), not "
            "Kinetics-pretrained weights: the numbers below show the pipeline works end to end, they "
            "are not comparable with published results."
        )
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        warnings.append(
            f"{len(failed)} of {len(outcomes)} videos failed and are left out of everything below; "
            "see the video table for the reasons."
        )
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in warnings]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]

    if metrics:
        th = [f"{x:.2f}" for x in metrics["tiou_thresholds"]]
        parts.append("<h2>Detection mAP (%) per tIoU</h2>")
        parts.append(
            _table(
                ["tIoU"] + th + ["avg"],
                [["mAP"] + [f"{100 * m:.2f}" for m in metrics["map"]] + [f"{100 * metrics['average_map']:.2f}"]],
            )
        )
        ap = np.asarray(metrics.get("ap", []), dtype=float)
        if ap.size:
            parts.append("<h2>AP (%) per class</h2>")
            parts.append(
                _table(
                    ["class"] + th, [[c] + [f"{100 * v:.2f}" for v in ap[i]] for i, c in enumerate(metrics["classes"])]
                )
            )
        for w in metrics.get("warnings", []):
            parts.append(f"<p class='warn'>evaluation: {html.escape(str(w))}</p>")
    else:
        parts.append("<p>No ground truth given: no evaluation (localizations only).</p>")

    parts.append("<h2>Videos</h2>")
    parts.append(
        _table(
            ["video", "status", "snippets", "duration (s)", "segments", "reason / source"],
            [
                [
                    o.video_id,
                    o.status,
                    o.num_snippets,
                    f"{o.duration:.1f}",
                    "" if o.num_segments is None else o.num_segments,
                    o.reason if o.status != "ok" else o.source,
                ]
                for o in outcomes
            ],
        )
    )

    db = (ground_truth or {}).get("database", {})
    # Videos with ground truth first (that is where the figure says most), then the rest.
    order = sorted(timelines, key=lambda t: (t.video_id not in db, t.video_id))
    if order:
        parts.append(
            f"<h2>Timelines</h2><p>{min(len(order), max_figures)} of {len(order)} videos. Top: ground "
            "truth and predicted segments (opacity = score); middle: attention; bottom: "
            "attention-weighted class activation.</p>"
        )
    for t in order[:max_figures]:
        png = figure_png(timeline_figure(t, db.get(t.video_id, {}).get("annotations", [])))
        parts.append(
            f"<img alt='{html.escape(t.video_id)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | os.PathLike, **kwargs: Any) -> Path:
    """Render (see :func:`render_report`) and write the HTML report atomically."""
    return write_text_atomic(path, render_report(**kwargs))
