"""The report's figures: one timeline per video in the paper's Fig. 5 layout, and AP per class.

Layout is computed, not left to ``tight_layout``: it is ~5x cheaper (the report draws one
figure per test video, 213 for THUMOS14) and it lets the legend sit in its own right-hand
margin, where it covers no curve. Every label is placed so that it cannot overlap another:
class names go on the lane axis, and a score is printed inside its own bar only when it fits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on workers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from core.atomic import atomic_open  # noqa: E402
from pipeline.report_display import pack_lanes  # noqa: E402

AMBIGUOUS = "Ambiguous"  # THUMOS14's "do not count" intervals: drawn grey, never a class colour
DPI = 100
FIG_WIDTH = 11.0  # inches: 1100 px, the width of the report's pages
LANE_HEIGHT = 0.26  # inches per segment lane
FONT = 7.5  # points, segment lane labels and scores
LEGEND_WIDTH = 1.9  # inches kept free on the right for the class-activation legend


def class_colours(classes: Sequence[str]) -> dict[str, Any]:
    """One colour per class, the same on every page of a report.

    Strong colours first (tab10, then tab20b's darkest), then tab10's light shades (from tab20),
    which are easy to confuse with their strong ones; greys are left out because grey means
    "Ambiguous" here. That gives 23 distinct colours (THUMOS14 has 20); beyond that colours
    repeat, and the lane labels still name each class.
    """
    tab10, tab20, tab20b = (plt.get_cmap(n) for n in ("tab10", "tab20", "tab20b"))
    palette = [tab10(i) for i in range(10) if i != 7]  # 7: grey
    if len(classes) > len(palette):
        palette += [tab20b(i) for i in (0, 12, 8, 16, 4)]
        palette += [tab20(i) for i in range(1, 20, 2) if i != 15]  # light shades; 15: light grey
    out = {c: palette[i % len(palette)] for i, c in enumerate(sorted(classes))}
    out[AMBIGUOUS] = (0.6, 0.6, 0.6, 1.0)
    return out


def _text_width_in(text: str, size: float = FONT) -> float:
    """Upper estimate of a label's width in inches (digits and '.' are < 0.6 em in DejaVu Sans)."""
    return len(text) * 0.62 * size / 72.0


def _lanes(
    gt_segments: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], classes_first: Sequence[str]
) -> list[tuple[str, str, bool, list[Mapping[str, Any]]]]:
    """Segment lanes top to bottom: (label, class, is_gt, segments); per class its GT lane, then its prediction lanes.

    Classes with ground truth come first (each keeps a prediction lane even when nothing is
    drawn there: an empty lane under a GT lane is a miss), then predicted-only classes.
    """
    gt_by: dict[str, list[Mapping[str, Any]]] = {}
    for g in gt_segments:
        gt_by.setdefault(str(g["label"]), []).append(g)
    pr_by: dict[str, list[Mapping[str, Any]]] = {}
    for p in predictions:
        pr_by.setdefault(str(p["label"]), []).append(p)
    order = [c for c in classes_first if c in gt_by or c in pr_by]
    order += sorted(c for c in set(gt_by) | set(pr_by) if c not in order)
    lanes: list[tuple[str, str, bool, list[Mapping[str, Any]]]] = []
    for c in order:
        if c in gt_by:
            for k, lane_segs in enumerate(_split_lanes(gt_by[c])):
                lanes.append((f"{c}  ground truth" if k == 0 else "", c, True, lane_segs))
        if c == AMBIGUOUS:
            continue
        pred_lanes = _split_lanes(pr_by.get(c, [])) or [[]]
        for k, lane_segs in enumerate(pred_lanes):
            lanes.append((f"{c}  predicted" if k == 0 else "", c, False, lane_segs))
    return lanes


def _split_lanes(segs: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    lane_of = pack_lanes([s["segment"] for s in segs])
    out: list[list[Mapping[str, Any]]] = [[] for _ in range(max(lane_of, default=-1) + 1)]
    for s, k in zip(segs, lane_of, strict=True):
        out[k].append(s)
    return out


def timeline_figure(
    video_id: str,
    seconds_per_snippet: float,
    attention: np.ndarray,
    cas: np.ndarray,
    classes: Sequence[str],
    video_scores: np.ndarray,
    gt_segments: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    colours: Mapping[str, Any],
    *,
    max_curves: int = 6,
) -> Figure:
    """Fig.-5-style timeline: segment lanes (GT, predictions), attention, class activation.

    ``predictions`` are the ones to draw (already through the display rule). The class
    activation panel plots the ground-truth classes, then the predicted ones, then the
    highest-scoring others, ``max_curves`` at most.
    """
    attention = np.asarray(attention, dtype=float)
    cas = np.asarray(cas, dtype=float)
    T = len(attention)
    duration = max(T * seconds_per_snippet, 1e-6)
    times = (np.arange(T) + 0.5) * seconds_per_snippet
    gt_classes = sorted({str(g["label"]) for g in gt_segments} - {AMBIGUOUS})
    best: dict[str, float] = {}
    for p in predictions:
        best[p["label"]] = max(best.get(p["label"], -np.inf), float(p["score"]))
    pred_classes = sorted(best, key=lambda c: -best[c])
    lanes = _lanes(gt_segments, predictions, gt_classes + [c for c in pred_classes if c not in gt_classes])
    ranked = [classes[i] for i in np.argsort(-np.asarray(video_scores, dtype=float), kind="stable")]
    curves = []
    for c in gt_classes + pred_classes + ranked:
        if c in classes and c not in curves:
            curves.append(c)
    curves = curves[:max_curves]

    # Geometry in inches, then converted to figure fractions.
    label_w = max([_text_width_in(lab, FONT) for lab, _, _, _ in lanes] + [0.9]) + 0.25
    left, right, top, bottom, gap = label_w + 0.1, LEGEND_WIDTH, 0.32, 0.5, 0.12
    h_lanes, h_att, h_cas = max(len(lanes), 1) * LANE_HEIGHT, 1.0, 1.45
    height = top + h_lanes + gap + h_att + gap + h_cas + bottom
    ax_w = FIG_WIDTH - left - right
    fig = Figure(figsize=(FIG_WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)  # a canvas that can measure text, for callers that check the layout

    def rect(y_from_top: float, h: float) -> tuple[float, float, float, float]:
        return (left / FIG_WIDTH, 1 - (y_from_top + h) / height, ax_w / FIG_WIDTH, h / height)

    ax_seg = fig.add_axes(rect(top, h_lanes))
    ax_att = fig.add_axes(rect(top + h_lanes + gap, h_att), sharex=ax_seg)
    ax_cas = fig.add_axes(rect(top + h_lanes + gap + h_att + gap, h_cas), sharex=ax_seg)

    n = len(lanes)
    lane_label_at = blended_transform_factory(ax_seg.transAxes, ax_seg.transData)
    for i, (label, c, is_gt, segs) in enumerate(lanes):
        y = n - 1 - i  # first lane on top
        colour = colours.get(c, (0.5, 0.5, 0.5, 1.0))
        if segs:  # one collection per lane: far cheaper to draw than one per segment
            ax_seg.broken_barh(
                [(float(s["segment"][0]), max(float(s["segment"][1]) - float(s["segment"][0]), 1e-9)) for s in segs],
                (y + 0.12, 0.76),
                facecolor=colour if is_gt else (*colour[:3], 0.55),
                edgecolor=colour,
                linewidth=0.8,
                hatch="///" if c == AMBIGUOUS else None,
            )
        if not is_gt:
            for s in segs:
                s0, s1 = float(s["segment"][0]), float(s["segment"][1])
                text = f"{float(s['score']):.2f}"
                if (s1 - s0) / duration * ax_w >= _text_width_in(text) + 0.06:
                    ax_seg.text((s0 + s1) / 2, y + 0.5, text, ha="center", va="center", fontsize=FONT, clip_on=True)
        if label:  # lane names as plain text left of the axis: cheaper than tick objects
            ax_seg.text(-0.008, y + 0.5, label, transform=lane_label_at, ha="right", va="center", fontsize=FONT)
        if i > 0 and c != lanes[i - 1][1]:
            ax_seg.axhline(y + 1, color="#999", lw=0.6)
    ax_seg.set_ylim(0, max(n, 1))
    ax_seg.set_yticks([])
    ax_seg.tick_params(axis="x", labelbottom=False)
    ax_seg.set_title(video_id, fontsize=10, loc="left")
    if n == 0:
        ax_seg.text(duration / 2, 0.5, "no ground truth and no prediction drawn", ha="center", va="center", fontsize=8)

    for g in gt_segments:
        for ax in (ax_att, ax_cas):
            ax.axvspan(*g["segment"], color=colours.get(str(g["label"]), "grey"), alpha=0.12, lw=0)
    ax_att.plot(times, attention, color="black", lw=1.1)
    ax_att.set_ylim(0, 1.05)
    ax_att.set_ylabel("attention\n(0-1)", fontsize=8)
    ax_att.tick_params(axis="x", labelbottom=False)
    ax_att.tick_params(labelsize=7)

    for c in curves:
        k = list(classes).index(c)
        ax_cas.plot(times, cas[:, k], color=colours.get(c, "grey"), lw=1.1, label=c)
    ax_cas.axhline(0, color="#666", lw=0.5)
    ax_cas.set_ylabel("class activation\n(logit x attention)", fontsize=8)
    ax_cas.set_xlabel("time (s)", fontsize=8)
    ax_cas.tick_params(labelsize=7)
    ax_cas.set_xlim(0, duration)
    if curves:
        ax_cas.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=7.5,
            frameon=False,
            borderaxespad=0.0,
            handlelength=1.5,
        )
    return fig


def ap_chart(classes: Sequence[str], ap: np.ndarray, thresholds: Sequence[float]) -> Figure:
    """Horizontal bars per class, best first: AP at tIoU 0.5 (when evaluated) and averaged over tIoU."""
    ap = np.asarray(ap, dtype=float)
    avg = ap.mean(axis=1)
    th = [round(float(t), 9) for t in thresholds]
    at5 = ap[:, th.index(0.5)] if 0.5 in th else None
    order = np.argsort(-avg, kind="stable")
    n = len(classes)
    label_w = max([_text_width_in(c, 8) for c in classes] + [0.8]) + 0.2
    height = 0.5 + 0.24 * n + 0.4
    width = 6.2  # inches: leaves room for the AP table beside the chart on a 1140-px page
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((label_w / width, 0.5 / height, (width - label_w - 0.1) / width, (height - 0.9) / height))
    y = np.arange(n)[::-1]
    bar = 0.38 if at5 is not None else 0.7
    ax.barh(
        y + (bar / 2 if at5 is not None else 0), 100 * avg[order], height=bar, color="#4c72b0", label="avg over tIoU"
    )
    if at5 is not None:
        ax.barh(y - bar / 2, 100 * at5[order], height=bar, color="#dd8452", label="tIoU 0.5")
    ax.set_yticks(y, [classes[i] for i in order], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("AP (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", color="#ddd", lw=0.6)
    ax.set_axisbelow(True)
    # Above the axes, outside them: a legend inside would cover the longest bars.
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False, borderaxespad=0.2)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> tuple[int, int]:
    """Write a figure as PNG atomically; returns its (width, height) in pixels for the <img> tag."""
    with atomic_open(path, "wb") as fh:
        # zlib level 1: PNG encoding was the largest single cost per figure at the default 6;
        # files grow ~10% (measured on THUMOS14-sized timelines), a page still loads one image.
        fig.savefig(fh, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    w, h = fig.get_size_inches() * DPI
    return int(round(w)), int(round(h))
