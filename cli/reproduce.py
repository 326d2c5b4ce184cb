"""``hamnet-reproduce``: the command line of :mod:`studies.reproduce` (also ``python -m cli.reproduce``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli.options import add_overrides_option, add_quiet_option, overrides_from
from core.activitynet import AnnotationError
from pipeline.config import ConfigError
from studies.reproduce import (
    RECIPES,
    reproduce,
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hamnet-reproduce",
        description="Reproduce HAM-Net's THUMOS14 / ActivityNet1.2 runs from W-TALC features.",
    )
    p.add_argument("dataset", choices=sorted(RECIPES))
    p.add_argument("--annotations", required=True, help="W-TALC annotation folder (Thumos14reduced-Annotations, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="W-TALC joint I3D features .npy (imported safely into WORK/features)")
    src.add_argument("--store", help="an existing feature store folder instead of --features")
    p.add_argument(
        "--work", required=True, help="output folder: features/, gt.json, model.pt, results.json, metrics.json"
    )
    p.add_argument("--mode", choices=["activitynet", "thumos14"], help="evaluator (default: the config's)")
    add_overrides_option(p, example="train.epochs=5 train.device=cuda")
    add_quiet_option(p)
    a = p.parse_args(argv)
    try:
        reproduce(
            a.dataset,
            a.work,
            features_npy=a.features,
            annotation_dir=a.annotations,
            store_dir=a.store,
            overrides=overrides_from(a),
            mode=a.mode,
            progress=not a.quiet,
        )
    except (AnnotationError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
