"""``hamnet-completeness``: the command line of :mod:`studies.completeness` (also ``python -m cli.completeness``)."""

from __future__ import annotations

import argparse
import json
import sys

from cli.options import add_overrides_option, add_quiet_option, overrides_from
from studies.completeness import (
    BenchmarkSettings,
    generate_benchmark,
    load_structure,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hamnet-completeness", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output folder (features/, gt.json, labels.csv, benchmark.json)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wtalc-annotations", help="W-TALC Thumos14reduced-Annotations folder (real structure)")
    src.add_argument("--thumos-annotations", nargs="+", help="THUMOS14 official annotation folder(s)")
    p.add_argument("--thumos-meta", nargs="+", help="meta .mat per --thumos-annotations folder (durations)")
    p.add_argument("--max-videos-per-subset", type=int, default=None)
    add_overrides_option(p, example="feature_dim=256 seed=1")  # BenchmarkSettings keys (no section)
    add_quiet_option(p)
    a = p.parse_args(argv)
    import yaml

    try:
        kv = {}
        for item in overrides_from(a):
            k, v = item.split("=", 1)
            kv[k.strip()] = yaml.safe_load(v)
        settings = BenchmarkSettings.from_dict(kv)
        structure = None
        if a.wtalc_annotations or a.thumos_annotations:
            structure = load_structure(
                wtalc_annotations=a.wtalc_annotations,
                thumos_annotation_dirs=a.thumos_annotations,
                thumos_meta=a.thumos_meta,
            )
        summary = generate_benchmark(
            a.out_dir,
            settings,
            structure=structure,
            max_videos_per_subset=a.max_videos_per_subset,
            progress=not a.quiet,
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
