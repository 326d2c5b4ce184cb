"""``python -m extractors VIDEO --output FILE.h5 --rgb-checkpoint PATH --flow-checkpoint PATH``

Extracts I3D RGB + flow features of one video into a feature-store HDF5 file. Settings start
from configs/base/extract.yaml (or ``--config``) and the flags below override them. Without
checkpoints it refuses, unless ``--random-backbone`` is given (demo/test only: it warns and
marks the file). Exit status: 0 on success, 2 for bad input (message names the file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m extractors", description=__doc__.split("\n\n")[1])
    p.add_argument("video", help="input video (anything FFmpeg/PyAV can open)")
    p.add_argument("--output", required=True, help="output .h5 (feature-store layout)")
    p.add_argument("--rgb-checkpoint", help="I3D RGB weights (piergiaj rgb_imagenet.pt or hassony2 model_rgb.pth)")
    p.add_argument("--flow-checkpoint", help="I3D flow weights (flow_imagenet.pt or model_flow.pth)")
    p.add_argument(
        "--random-backbone", action="store_true", help="seeded random I3D (meaningless features; demos only)"
    )
    p.add_argument("--config", default=None, help="YAML with an extract: section (default configs/base/extract.yaml)")
    p.add_argument("--video-id", default=None, help="id stored in the file (default: safe id from the file name)")
    p.add_argument("--flow-cache", default=None, help="read flow from this cache file instead of computing it")
    for flag, typ, hlp in [
        ("--crop", int, "centre crop size (default 224)"),
        ("--resize-short", int, "short side before cropping (default 256)"),
        ("--fps", float, "sampling rate (default 25)"),
        ("--flow-workers", int, "TV-L1 processes, 0 = one per core"),
        ("--flow-backend", str, "opencv | torch"),
        ("--batch-size", int, "snippets per I3D forward"),
        ("--device", str, "auto | cpu | cuda"),
        ("--precision", str, "fp32 | bf16 | fp16"),
        ("--random-seed", int, "seed of the random backbone"),
    ]:
        p.add_argument(flag, type=typ, default=None, help=hlp)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Imported here so that --help stays fast; pipeline.* is the HDF5 side (extractors itself
    # does not depend on h5py), used by this entry point only.
    from extractors.checkpoints import CheckpointError
    from extractors.errors import VideoError
    from extractors.settings import ExtractSettings
    from pipeline.config import ConfigError, load_config
    from pipeline.extract import write_video_features
    from storage.featstore import safe_video_id
    from storage.flowcache import FlowCacheError

    try:
        cfg = load_config(args.config or Path(__file__).resolve().parent.parent / "configs/base/extract.yaml")
        section = dict(cfg.get("extract", {}))
        for key in (
            "crop",
            "resize_short",
            "fps",
            "flow_workers",
            "flow_backend",
            "batch_size",
            "device",
            "precision",
            "random_seed",
            "rgb_checkpoint",
            "flow_checkpoint",
        ):
            val = getattr(args, key)
            if val is not None:
                section[key] = val
        if args.random_backbone:
            section["random_backbone"] = True
        settings = ExtractSettings.from_dict(section)
        if not settings.random_backbone and not (settings.rgb_checkpoint and settings.flow_checkpoint):
            print(
                "error: I3D checkpoints are required: pass --rgb-checkpoint and --flow-checkpoint "
                "(piergiaj rgb_imagenet.pt/flow_imagenet.pt or hassony2 model_rgb.pth/model_flow.pth). "
                "For a demo without weights use --random-backbone (features are then meaningless).",
                file=sys.stderr,
            )
            return 2
        if settings.random_backbone:
            print(
                "WARNING: --random-backbone: I3D weights are RANDOM (seed "
                f"{settings.random_seed}); the features mean nothing and the file is marked random_backbone=True.",
                file=sys.stderr,
            )
        out = write_video_features(
            args.video,
            args.output,
            settings,
            video_id=args.video_id or safe_video_id(Path(args.video).name),
            flow_cache=args.flow_cache,
            progress=not args.quiet,
        )
    except (VideoError, CheckpointError, ConfigError, FlowCacheError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
