"""``hamnet-extract VIDEO --output FILE.h5 --rgb-checkpoint PATH --flow-checkpoint PATH``

Extracts I3D RGB + flow features of one video into a feature-store HDF5 file. Settings are the
``extract`` section of ``--config`` (default: the defaults, docs/configuration.md) changed by
``--overrides "extract.crop=112 extract.device=cpu"``. Without checkpoints it refuses, unless
``--random-backbone`` is given (demo/test only: it warns and marks the file). Exit status: 0 on
success, 2 for bad input (the message names the file). Also ``python -m extractors``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cli.options import add_overrides_option, add_quiet_option


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hamnet-extract", description=__doc__.split("\n\n")[1])
    p.add_argument("video", help="input video (anything FFmpeg/PyAV can open)")
    p.add_argument("--output", required=True, help="output .h5 (feature-store layout)")
    # The checkpoints are the one required input, so they get flags of their own; each is the
    # same as --overrides extract.rgb_checkpoint=PATH (resp. flow / random_backbone=true).
    p.add_argument("--rgb-checkpoint", help="I3D RGB weights (piergiaj rgb_imagenet.pt or hassony2 model_rgb.pth)")
    p.add_argument("--flow-checkpoint", help="I3D flow weights (flow_imagenet.pt or model_flow.pth)")
    p.add_argument(
        "--random-backbone", action="store_true", help="seeded random I3D (meaningless features; demos only)"
    )
    p.add_argument("--config", default=None, help="config name in configs/ or a YAML path (default: the defaults)")
    add_overrides_option(p, example="extract.crop=112 extract.device=cpu extract.flow_backend=torch")
    p.add_argument("--video-id", default=None, help="id stored in the file (default: safe id from the file name)")
    p.add_argument("--flow-cache", default=None, help="read flow from this cache file instead of computing it")
    add_quiet_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Imported here so that --help stays fast; pipeline.* is the HDF5 side (extractors itself
    # does not depend on h5py), used by this entry point only.
    from extractors.checkpoints import CheckpointError
    from extractors.errors import VideoError
    from extractors.settings import ExtractSettings
    from pipeline.config import ConfigError, apply_override, default_config, load_config, parse_overrides
    from pipeline.extract import write_video_features
    from storage.featstore import safe_video_id
    from storage.flowcache import FlowCacheError

    try:
        cfg = load_config(args.config, []) if args.config else default_config()
        section = cfg["extract"]
        for key in ("rgb_checkpoint", "flow_checkpoint"):
            if getattr(args, key) is not None:
                section[key] = getattr(args, key)
        if args.random_backbone:
            section["random_backbone"] = True
        for item in parse_overrides(args.overrides):
            apply_override(cfg, item)
        settings = ExtractSettings.from_dict(cfg["extract"])
        if not settings.random_backbone and not settings.needs_flow and not settings.rgb_checkpoint:
            print(
                f"error: backbone {settings.backbone} needs its Kinetics weights: pass --rgb-checkpoint "
                "(the published file named in docs/extraction.md). For a demo without weights use "
                "--random-backbone (features are then meaningless).",
                file=sys.stderr,
            )
            return 2
        if (
            not settings.random_backbone
            and settings.needs_flow
            and not (settings.rgb_checkpoint and settings.flow_checkpoint)
        ):
            print(
                "error: I3D checkpoints are required: pass --rgb-checkpoint and --flow-checkpoint "
                "(piergiaj rgb_imagenet.pt/flow_imagenet.pt or hassony2 model_rgb.pth/model_flow.pth). "
                "For a demo without weights use --random-backbone (features are then meaningless).",
                file=sys.stderr,
            )
            return 2
        if settings.random_backbone:
            print(
                f"WARNING: --random-backbone: {settings.backbone} weights are RANDOM (seed "
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
