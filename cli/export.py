"""Command line: export a feature store to the W-TALC, OpenTAD/ActionFormer and video_features layouts.

    hamnet-export --features STORE --output OUT --labels labels.csv --ground-truth gt.json \\
        [--formats wtalc,opentad,video_features] [--name Thumos14reduced] [--train-subset validation] \\
        [--unlabelled-subset test] [--config thumos14 --overrides "evaluate.tiou_thresholds=[0.3,0.5,0.7]"]

Writes ``OUT/wtalc/``, ``OUT/opentad/``, ``OUT/video_features/`` and ``OUT/export.json`` (the
manifest, written last). docs/export.md describes every file. Bad input (a store with mixed
feature widths, videos with no labels, an occupied output folder) ends with one line naming the
problem and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.options import add_config_options, add_quiet_option, config_from
from core.activitynet import read_ground_truth_json
from storage.export import FORMATS, default_train_subset, export_store, plan_export
from storage.labels import read_labels_csv


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hamnet-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--features", required=True, help="feature store folder (one HDF5 per video)")
    p.add_argument("--output", required=True, help="export folder: empty, new, or a previous export")
    p.add_argument("--labels", help="CSV video,label: video-level labels (the training videos)")
    p.add_argument("--ground-truth", help="ActivityNet-form JSON: temporal annotations and subsets")
    p.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated, any of {', '.join(FORMATS)} (default: all)",
    )
    p.add_argument(
        "--name",
        default="Features",
        help="dataset name: W-TALC files are <name>-I3D-JOINTFeatures.npy and <name>-Annotations/ (default Features)",
    )
    p.add_argument(
        "--train-subset",
        help="subset of labelled videos that have no ground truth (default: the one HAM-Net's loader trains on: "
        "'validation' when the name contains 'thumos', else 'training')",
    )
    p.add_argument(
        "--unlabelled-subset",
        help="export videos with neither labels nor ground truth in this subset, with no labels "
        "(default: such videos are an error)",
    )
    # The config only supplies evaluate.tiou_thresholds for the OpenTAD config fragment.
    add_config_options(p)
    add_quiet_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    labels = read_labels_csv(args.labels) if args.labels else None
    gt = read_ground_truth_json(args.ground_truth) if args.ground_truth else None
    needs_labels = any(f in ("wtalc", "opentad") for f in formats)
    if needs_labels and labels is None and gt is None and args.unlabelled_subset is None:
        raise ValueError(
            "the wtalc and opentad layouts give every video a subset and labels: pass --labels and/or "
            "--ground-truth (or --unlabelled-subset NAME to export every video unlabelled)"
        )
    plan = plan_export(
        args.features,
        labels=labels,
        ground_truth=gt,
        train_subset=args.train_subset or default_train_subset(args.name),
        unlabelled_subset=args.unlabelled_subset,
        require_labels=needs_labels,
    )
    manifest = export_store(
        plan,
        args.output,
        formats=formats,
        name=args.name,
        tiou_thresholds=cfg["evaluate"]["tiou_thresholds"],
        progress=not args.quiet,
        sources={"labels": args.labels, "ground_truth": args.ground_truth},
    )
    for w in manifest["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"exported {manifest['videos']} videos ({', '.join(f'{s}: {n}' for s, n in manifest['subsets'].items())}), "
        f"{len(manifest['classes'])} classes, {manifest['rgb_dim']}+{manifest['flow_dim']} dims as "
        f"{', '.join(manifest['formats'])} -> {Path(args.output) / 'export.json'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:  # ExportError, ConfigError, LabelsError, AnnotationError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
