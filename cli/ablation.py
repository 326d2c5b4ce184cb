"""``hamnet-ablation``: the command line of :mod:`studies.ablation` (also ``python -m cli.ablation``)."""

from __future__ import annotations

import argparse
import sys

from cli.options import add_overrides_option, add_quiet_option, overrides_from
from core.activitynet import AnnotationError
from pipeline.config import ConfigError
from studies.ablation import (
    AblationError,
    AblationSpec,
    collect_table,
    format_markdown,
    load_ablation_spec,
    run_ablation,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hamnet-ablation",
        description="Train and evaluate the rows of an ablation file on one feature store.",
    )
    p.add_argument("spec", help="ablation YAML (path or name under configs/, e.g. ablation_cpu)")
    p.add_argument("--store", required=True, help="feature store folder (one HDF5 per video)")
    p.add_argument("--gt", required=True, help="ground truth JSON (ActivityNet form) with train and test subsets")
    p.add_argument("--out", required=True, help="output folder (runs/, ablation.json, ablation.md)")
    p.add_argument("--config", help="dataset config replacing the file's 'config' (e.g. completeness_cpu)")
    p.add_argument("--rows", help="comma-separated row names to run (default: all)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the file's)")
    add_overrides_option(p, example="train.device=cpu")  # applied to every row, after the file's own
    p.add_argument(
        "--collect-only",
        action="store_true",
        help="train nothing: rebuild the table from the runs already finished in --out",
    )
    add_quiet_option(p)
    a = p.parse_args(argv)
    try:
        spec = load_ablation_spec(a.spec)
        extra = overrides_from(a)
        if extra or a.config:
            spec = AblationSpec(
                a.config or spec.config,
                spec.rows,
                spec.seeds,
                spec.overrides + tuple(extra),
                spec.train_subset,
                spec.test_subset,
            )
            for row in spec.rows:
                spec.run_config(row, spec.seeds[0])
        spec = spec.select(
            [s.strip() for s in a.rows.split(",")] if a.rows else None,
            [int(s) for s in a.seeds.split(",")] if a.seeds else None,
        )
        if a.collect_only:
            table = collect_table(spec, a.out)
        else:
            table = run_ablation(spec, a.store, a.gt, a.out, progress=not a.quiet)
    except (AblationError, AnnotationError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
