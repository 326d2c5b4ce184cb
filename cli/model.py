"""Command line for HAM-Net on a feature store: train a checkpoint, localize videos.

    hamnet train --features DIR --labels labels.csv --config thumos14 \\
        [--overrides "train.epochs=5 loss.drop_mode=random"] --output ckpt.pt
    hamnet localize --checkpoint ckpt.pt --features DIR --config thumos14 \\
        [--overrides "localize.class_threshold=0.1 localize.device=cpu"] --output-dir OUT

``localize`` writes ``OUT/<video>.csv`` per video and ``OUT/results.json`` (ActivityNet results
form). Bad input (missing files, unknown settings, labels naming unknown classes, empty videos)
ends with one line naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.options import add_config_options, add_quiet_option, config_from
from core.device import resolve_device
from hamnet.config import LocalizeConfig, hamnet_settings
from hamnet.results import write_results_json, write_segments_csv
from storage.featstore import FeatureStore
from storage.labels import class_list, read_labels_csv


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
    bad = store.random_backbone_videos(video_ids)
    if bad:
        print(
            f"warning: {len(bad)} of {len(video_ids)} videos have features from a RANDOM (untrained) backbone "
            f"(e.g. {bad[0]}); the model and its detections are not meaningful",
            file=sys.stderr,
        )


def cmd_train(args: argparse.Namespace) -> int:
    from hamnet.train import train_hamnet

    model_cfg, loss_cfg, train_cfg, _ = hamnet_settings(config_from(args))
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
        progress=not args.quiet,
    )
    print(f"wrote {out} ({len(labels)} videos, {len(classes)} classes, {train_cfg.epochs} epochs)")
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from hamnet.localize import localize_video
    from hamnet.train import load_checkpoint

    loc_cfg = LocalizeConfig.from_dict(config_from(args)["localize"])
    store = _store(args.features)
    model, classes, _ = load_checkpoint(args.checkpoint, device=resolve_device(loc_cfg.device))
    warn_random_backbone(store, list(store))
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for vid in tqdm(list(store), desc="localizing", unit="video", disable=args.quiet):
        r = localize_video(
            model, store[vid], classes, loc_cfg, seconds_per_snippet=store.seconds_per_snippet(vid), video_id=vid
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
    p = argparse.ArgumentParser(prog="hamnet", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train HAM-Net on a feature store with video-level labels")
    t.add_argument("--features", required=True, help="feature store folder (one HDF5 per video)")
    t.add_argument("--labels", required=True, help="CSV with header video,label")
    add_config_options(t)
    t.add_argument("--classes", help="text file with one class per line (default: classes found in the labels, sorted)")
    t.add_argument(
        "--output", required=True, help="checkpoint to write (a .resume file beside it lets a killed run continue)"
    )
    add_quiet_option(t)
    t.set_defaults(func=cmd_train)
    z = sub.add_parser("localize", help="localize actions in every video of a feature store")
    z.add_argument("--checkpoint", required=True)
    z.add_argument("--features", required=True)
    add_config_options(z)
    z.add_argument("--output-dir", required=True)
    add_quiet_option(z)
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
