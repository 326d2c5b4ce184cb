"""Command line for HAM-Net on a feature store: train a checkpoint, localize videos.

    python -m cli.model train --features DIR --labels labels.csv --config thumos14 \\
        [--set train.epochs=5 --set loss.drop_mode=random] --output ckpt.pt
    python -m cli.model localize --checkpoint ckpt.pt --features DIR --config thumos14 \\
        [--set localize.class_threshold=0.1] --output-dir OUT

``localize`` writes ``OUT/<video>.csv`` per video and ``OUT/results.json`` (ActivityNet results
form). Bad input (missing files, unknown settings, labels naming unknown classes, empty videos)
ends with one line naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py

from hamnet.config import LocalizeConfig, hamnet_settings
from hamnet.localize import SECONDS_PER_SNIPPET
from hamnet.results import write_results_json, write_segments_csv
from pipeline.config import load_config
from storage.featstore import FeatureStore, feature_path
from storage.labels import class_list, read_labels_csv


def _overrides(items: Sequence[str] | None) -> list[str]:
    return list(items or [])


def _store(path: str) -> FeatureStore:
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: feature store folder not found")
    store = FeatureStore(root)
    if len(store) == 0:
        raise ValueError(f"{root}: no feature files (*.h5) in the feature store")
    return store


def warn_random_backbone(store: FeatureStore, video_ids: Sequence[str]) -> None:
    """Say so loudly when features come from an untrained backbone (they carry no meaning)."""
    bad = []
    for vid in video_ids:
        with h5py.File(feature_path(store.root, vid), "r") as f:
            if bool(f.attrs.get("random_backbone", False)):
                bad.append(vid)
    if bad:
        print(
            f"warning: {len(bad)} of {len(video_ids)} videos have features from a RANDOM (untrained) backbone "
            f"(e.g. {bad[0]}); the model and its detections are not meaningful",
            file=sys.stderr,
        )


def seconds_per_snippet(store: FeatureStore, video_id: str) -> float:
    """frames_per_snippet / fps from the file's attributes (16/25 = 0.64 s when absent)."""
    with h5py.File(feature_path(store.root, video_id), "r") as f:
        fps, fpsn = f.attrs.get("fps"), f.attrs.get("frames_per_snippet")
    if fps is None or fpsn is None or float(fps) <= 0:
        return SECONDS_PER_SNIPPET
    return float(fpsn) / float(fps)


def cmd_train(args: argparse.Namespace) -> int:
    from hamnet.train import train_hamnet

    model_cfg, loss_cfg, train_cfg, _ = hamnet_settings(load_config(args.config, _overrides(args.set)))
    labels = read_labels_csv(args.labels)
    store = _store(args.features)
    missing = [v for v in labels if v not in store.video_ids]
    if missing:
        raise ValueError(f"{store.root}: no features for {len(missing)} labelled video(s), e.g. {missing[:3]}")
    warn_random_backbone(store, sorted(labels))
    classes = class_list(labels)
    if args.classes:
        classes = [c.strip() for c in Path(args.classes).read_text(encoding="utf-8").splitlines() if c.strip()]
    out = train_hamnet(
        store,
        labels,
        classes,
        model_cfg=model_cfg,
        loss_cfg=loss_cfg,
        train_cfg=train_cfg,
        checkpoint_path=args.output,
        progress=not args.no_progress,
    )
    print(f"wrote {out} ({len(labels)} videos, {len(classes)} classes, {train_cfg.epochs} epochs)")
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from hamnet.localize import localize_video
    from hamnet.train import load_checkpoint

    cfg = load_config(args.config, _overrides(args.set))
    if "localize" not in cfg:
        raise ValueError(f"config {args.config!r} has no localize section")
    loc_cfg = LocalizeConfig.from_dict(cfg["localize"])
    store = _store(args.features)
    model, classes, _ = load_checkpoint(args.checkpoint, device=args.device)
    warn_random_backbone(store, list(store))
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for vid in tqdm(list(store), desc="localizing", unit="video", disable=args.no_progress):
        r = localize_video(
            model, store[vid], classes, loc_cfg, seconds_per_snippet=seconds_per_snippet(store, vid), video_id=vid
        )
        write_segments_csv(out_dir / f"{vid}.csv", vid, r.segments)
        results[vid] = r.segments
    write_results_json(out_dir / "results.json", results)
    print(
        f"wrote {len(results)} per-video CSVs and {out_dir / 'results.json'} "
        f"({sum(len(s) for s in results.values())} segments)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cli.model", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train HAM-Net on a feature store with video-level labels")
    t.add_argument("--features", required=True, help="feature store folder (one HDF5 per video)")
    t.add_argument("--labels", required=True, help="CSV with header video,label")
    t.add_argument("--config", default="thumos14", help="config name or path (default thumos14)")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. train.epochs=5 (repeatable)"
    )
    t.add_argument("--classes", help="text file with one class per line (default: classes found in the labels, sorted)")
    t.add_argument(
        "--output", required=True, help="checkpoint to write (a .resume file beside it lets a killed run continue)"
    )
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)
    z = sub.add_parser("localize", help="localize actions in every video of a feature store")
    z.add_argument("--checkpoint", required=True)
    z.add_argument("--features", required=True)
    z.add_argument("--config", default="thumos14")
    z.add_argument("--set", action="append", metavar="KEY=VALUE")
    z.add_argument("--output-dir", required=True)
    z.add_argument("--device", default="auto", help="auto | cpu | cuda")
    z.add_argument("--no-progress", action="store_true")
    z.set_defaults(func=cmd_localize)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # ConfigError, LabelsError, FeatureStoreError, CheckpointError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
