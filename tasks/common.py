"""What every task shares: the run parameters, resolved settings, the video list and paths.

Storage layout under ``--output-dir`` (the "storage root"; several machines may share it)::

    demo/<spec_hash>/             the synthetic demo set (only when no --video-dir is given)
    flow/<flow_key>/<id>.h5       quantised TV-L1 flow of one video   (+ <id>.json: outcome record)
    features/<feature_key>/<id>.h5  I3D features of one video        (+ <id>.json: outcome record)
    index/<index_hash>.json       the video set: ok videos and failures with reasons
    train/<train_hash>/hamnet.pt  the trained model (+ hamnet.pt.resume while training)
    localize/<loc_hash>/          results.json, csv/<id>.csv, timelines.npz
    evaluate/<eval_hash>/metrics.json
    report/<report_hash>/report.html
    done/<report_hash>.json       RunAll's completion marker (written only when every video succeeded)
    report.html, summary.txt, results.json, csv/   copies of the latest run, for people
    logs/run-<UTC>-<pid>.log      one log per luigi command

Every hash is over exactly the settings and inputs that change that output, so Luigi's
"output exists = done" rule reruns exactly the affected stages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import luigi

from pipeline.config import load_config, parse_overrides, settings_hash
from pipeline.demo import DemoSpec, plan_demo
from pipeline.runlog import start_run_log
from storage.featstore import assign_video_ids

# File name extensions taken as videos. Other files in the directory are listed in the
# summary as skipped (never silently ignored) but do not fail the run.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".avi",
        ".mkv",
        ".mov",
        ".webm",
        ".mpg",
        ".mpeg",
        ".m4v",
        ".flv",
        ".wmv",
        ".ogv",
        ".3gp",
        ".ts",
        ".mts",
        ".m2ts",
        ".vob",
    }
)

DEMO_SPEC = DemoSpec()


class PipelineTask(luigi.Task):
    """Parameters every pipeline task takes; ``clone`` passes them down the graph."""

    output_dir = luigi.Parameter(default="demo_out", description="storage root for all outputs")
    video_dir = luigi.Parameter(default="", description="directory of videos; empty = the synthetic demo")
    labels = luigi.Parameter(default="", description="CSV video,label of the training videos")
    ground_truth = luigi.Parameter(default="", description="ActivityNet-form JSON for evaluation (optional)")
    subset = luigi.Parameter(default="", description="evaluate only ground-truth videos of this subset")
    config = luigi.Parameter(
        default="",
        description="thumos14 | activitynet12 | demo | a YAML path; default: demo without --video-dir, else thumos14",
    )
    overrides = luigi.Parameter(default="", description='e.g. "train.epochs=5 extract.crop=112"')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One log file per luigi command, opened as soon as the command builds its tasks, so
        # that even a run with nothing to do leaves a record.
        start_run_log(self.output_dir)

    # ---- resolved inputs -------------------------------------------------------------------
    @property
    def is_demo(self) -> bool:
        return not self.video_dir

    @property
    def root(self) -> Path:
        return Path(self.output_dir)

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo" / settings_hash(asdict(DEMO_SPEC))

    @property
    def videos_path(self) -> Path:
        return self.demo_dir / "videos" if self.is_demo else Path(self.video_dir)

    @property
    def labels_path(self) -> Path | None:
        if self.is_demo:
            return self.demo_dir / "labels.csv"
        return Path(self.labels) if self.labels else None

    @property
    def ground_truth_path(self) -> Path | None:
        if self.is_demo:
            return self.demo_dir / "ground_truth.json"
        return Path(self.ground_truth) if self.ground_truth else None

    @property
    def cfg(self) -> dict[str, Any]:
        name = self.config or ("demo" if self.is_demo else "thumos14")
        return _load_config_cached(name, self.overrides, _mtime_key(name))

    @property
    def extract_settings(self):

        return _extract_settings_cached(json.dumps(self.cfg["extract"], sort_keys=True))

    def videos(self) -> dict[str, str]:
        """file name -> video id of every video file (demo: the planned names)."""
        return dict(_list_videos(str(self.videos_path), self.is_demo, _dir_key(self.videos_path)))

    def skipped_files(self) -> list[tuple[str, str]]:
        if self.is_demo or not self.videos_path.is_dir():
            return []
        out = []
        for p in sorted(self.videos_path.iterdir()):
            if not p.is_file():
                continue
            if p.name.startswith("."):
                out.append((p.name, "hidden file"))
            elif p.suffix.lower() not in VIDEO_EXTENSIONS:
                out.append((p.name, "extension not a known video type"))
        return out

    def input_identity(self, path: Path | None) -> str | None:
        """Content hash of an input file (labels, ground truth); demo inputs are fixed by its spec."""
        if path is None:
            return None
        if self.is_demo:
            return "demo:" + settings_hash(asdict(DEMO_SPEC))
        return file_digest(path)

    def gpu_resources(self, device: str) -> dict[str, int]:
        """Claim the ``gpu`` resource unless the stage is pinned to the CPU.

        ``auto`` claims it: deciding whether CUDA is present would mean touching CUDA in the
        scheduling process, which breaks it in the forked workers (REFERENCE section 7).
        """
        return {} if str(device) == "cpu" else {"gpu": 1}


@functools.lru_cache(maxsize=64)
def _load_config_cached(name: str, overrides: str, _mtimes: tuple) -> dict[str, Any]:
    return load_config(name, parse_overrides(overrides))


def _mtime_key(name: str) -> tuple:
    from pipeline.config import CONFIG_DIR, resolve_config_path

    try:
        p = resolve_config_path(name)
    except Exception:
        return ()
    return tuple((str(f), f.stat().st_mtime_ns) for f in [p, *sorted(CONFIG_DIR.glob("base/*.yaml"))] if f.exists())


@functools.lru_cache(maxsize=64)
def _extract_settings_cached(blob: str):
    from extractors.settings import ExtractSettings

    return ExtractSettings.from_dict(json.loads(blob))


def _dir_key(path: Path) -> tuple:
    try:
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return ()


@functools.lru_cache(maxsize=64)
def _list_videos(path: str, is_demo: bool, _key: tuple) -> tuple[tuple[str, str], ...]:
    if is_demo:
        names = [f"{v.video_id}.mp4" for v in plan_demo(DEMO_SPEC)]
    else:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"--video-dir {p}: not a directory")
        names = [
            f.name
            for f in p.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in VIDEO_EXTENSIONS
        ]
        if not names:
            raise FileNotFoundError(f"--video-dir {p}: no video files (extensions {sorted(VIDEO_EXTENSIONS)})")
    ids = assign_video_ids(names)
    return tuple(sorted(ids.items(), key=lambda kv: kv[1]))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex) of a file's bytes, memoised by path, size and mtime."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise FileNotFoundError(f"{p}: file not found") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def source_stat(path: Path) -> dict[str, int] | None:
    """Size and mtime of a source video: a changed file makes its records stale."""
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
