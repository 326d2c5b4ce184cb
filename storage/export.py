"""Export a feature store (plus its labels / ground truth) to the layouts other codebases read.

Features extracted here are meant to travel: almost every weakly-supervised localization
codebase since W-TALC reads the W-TALC layout, fully-supervised ones (OpenTAD, ActionFormer)
read one ``.npy`` per video and an ActivityNet-style JSON, and video_features users expect
``<stem>_rgb.npy`` / ``<stem>_flow.npy``. docs/export.md describes every file written and
cites where each loader reads it. Three formats:

``wtalc``
    ``<Name>-I3D-JOINTFeatures.npy`` (a 1-D object array of ``T_i x (D_rgb + D_flow)`` float32
    arrays, RGB columns first, rows in ``videoname.npy`` order) beside ``<Name>-Annotations/``
    with ``videoname``, ``subset``, ``classlist`` (bytes arrays: the authors' loaders call
    ``.decode()`` on them), ``segments``, ``labels``, ``labels_all`` (object arrays of Python
    lists of floats / ``str``), ``duration`` (N x 1 float64) and ``Ambiguous_test.txt``.
``opentad``
    ``features/<video>.npy`` (``T x D`` float32, the joint features), ``features/missing_files.txt``
    (the ``block_list`` OpenTAD opens), ``annotations/<name>_anno.json`` (ActivityNet form plus
    ``frame``, ``fps`` and ``label_id``), ``annotations/category_idx.txt`` and two config snippets.
``video_features``
    ``<video>_rgb.npy`` and ``<video>_flow.npy`` (``T x D`` float32 each).

Everything is written atomically; ``export.json`` (the manifest, listing every file) is written
last, so its presence means the export is complete. Errors (:class:`ExportError`, a
``ValueError``) name the store or the videos at fault and are raised before anything is written.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.lib import format as npformat
from tqdm import tqdm

from core.atomic import atomic_open, write_json_atomic, write_text_atomic
from storage.featstore import FeatureStoreError, feature_path, read_features, safe_video_id

FORMATS = ("wtalc", "opentad", "video_features")
MANIFEST = "export.json"
# Present while an export is being written (holds the files a previous export listed), so an
# interrupted export can be rerun into the same folder.
INCOMPLETE = ".export-incomplete"
AMBIGUOUS = "Ambiguous"
# The W-TALC layout records neither the frame rate nor the snippet length: its loaders and
# evaluators hard-code 25 fps and 16-frame snippets (``25/16`` in the authors' code), and this
# project's importer (storage/wtalc.py) assumes the same.
WTALC_FPS = 25.0
WTALC_FRAMES_PER_SNIPPET = 16
WTALC_FEATURE_TYPE = "I3D"


class ExportError(ValueError):
    """The store or its labels cannot be written in the requested format; the message says why."""


@dataclass
class ExportVideo:
    """One exported video: where it goes (subset) and what is known about it."""

    video_id: str
    subset: str
    duration: float
    n_frames: int
    num_snippets: int
    labels: list[str]  # video-level (weak) labels
    annotations: list[dict[str, Any]] = field(default_factory=list)  # {"segment": [s, e], "label": str}
    ambiguous: list[list[float]] = field(default_factory=list)  # [s, e] of "Ambiguous" intervals


@dataclass
class ExportPlan:
    """What an export will write; built (and checked) before any file is touched."""

    store_dir: Path
    videos: list[ExportVideo]
    classes: list[str]
    rgb_dim: int
    flow_dim: int
    fps: float
    frames_per_snippet: int
    random_backbone: bool
    missing_features: list[str]  # labelled / annotated videos that have no features in the store
    warnings: list[str]
    train_subset: str  # the subset labelled videos without ground truth were put in

    @property
    def feature_dim(self) -> int:
        return self.rgb_dim + self.flow_dim


# --------------------------------------------------------------------------------------
# Planning: read the store's shapes and attributes, reconcile labels, check before writing


def _store_header(path: Path) -> dict[str, Any]:
    """Shapes and attributes of one feature file without reading its arrays (cheap)."""
    if not path.is_file():
        raise ExportError(f"{path}: no such feature file")
    try:
        with h5py.File(path, "r") as f:
            if "rgb" in f and "flow" not in f:
                raise ExportError(
                    f"{path}: RGB-only features (extract.backbone other than i3d); export writes two-stream "
                    "stores only for now (the W-TALC and video_features layouts expect a flow stream)"
                )
            if "rgb" not in f or "flow" not in f:
                raise ExportError(f"{path}: not a feature-store file (needs 'rgb' and 'flow' datasets)")
            rgb, flow = f["rgb"].shape, f["flow"].shape
            attrs = {k: f.attrs.get(k) for k in ("fps", "frames_per_snippet", "n_frames", "duration")}
            attrs["random_backbone"] = bool(f.attrs.get("random_backbone", False))
    except OSError as e:
        raise ExportError(f"{path}: not a readable HDF5 feature file ({e})") from e
    if len(rgb) != 2 or len(flow) != 2 or rgb[0] != flow[0]:
        raise ExportError(f"{path}: rgb {rgb} and flow {flow} must be T x D with the same T")
    if rgb[0] == 0:
        raise ExportError(f"{path}: the video has no snippets (T = 0)")
    missing = [k for k in ("fps", "frames_per_snippet") if attrs[k] is None]
    if missing:
        raise ExportError(f"{path}: missing attribute(s) {missing}")
    return {"rgb_dim": int(rgb[1]), "flow_dim": int(flow[1]), "T": int(rgb[0]), **attrs}


def _one_value(headers: Mapping[str, Mapping[str, Any]], key: str, store: Path, what: str) -> Any:
    """The single value of ``key`` across the store, or an error that lists each value's videos."""
    groups: dict[Any, list[str]] = {}
    for vid, h in headers.items():
        groups.setdefault(h[key], []).append(vid)
    if len(groups) > 1:
        detail = "; ".join(f"{v!r} in {len(ids)} video(s), e.g. {ids[:3]}" for v, ids in sorted(groups.items()))
        raise ExportError(f"{store}: mixed {what} across the store ({detail}); every exported video needs the same")
    return next(iter(groups))


def match_to_store(table: Mapping[str, Any], video_ids: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Re-key ``{video name: value}`` by store id: the key itself, or its file-safe id.

    Labels CSVs and ground truth often name videos by file name (``clip.mp4``) or by the
    original name; the store names them :func:`safe_video_id` of that. Returns the re-keyed
    table and the keys that match no video in the store.
    """
    ids = set(video_ids)
    out: dict[str, Any] = {}
    unmatched: list[str] = []
    for key, value in table.items():
        vid = key if key in ids else safe_video_id(key)
        if vid in ids:
            out[vid] = value
        else:
            unmatched.append(key)
    return out, unmatched


def plan_export(
    store_dir: str | os.PathLike,
    *,
    video_ids: Sequence[str] | None = None,
    labels: Mapping[str, Sequence[str]] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    train_subset: str = "training",
    unlabelled_subset: str | None = None,
    require_labels: bool = True,
    also_missing: Sequence[str] = (),
) -> ExportPlan:
    """Check the store and reconcile labels and ground truth into one record per video.

    ``labels`` are video-level labels (``{video: [class, ...]}``, the training set);
    ``ground_truth`` is ActivityNet form (``{"database": {video: {subset, duration,
    annotations}}}``). Keys may be store ids or file names. Per video:

    * subset: the ground truth's, else ``train_subset`` for a labelled video, else
      ``unlabelled_subset``; a video with none of these is an error when ``require_labels``
      (the W-TALC and OpenTAD layouts give every video a subset);
    * video-level labels: the labels file's, else the ground-truth classes (Ambiguous excluded);
    * temporal annotations: the ground truth's; "Ambiguous" intervals are kept apart.

    The class list is the sorted union of all labels and annotated classes (the authors'
    loader sorts ``classlist.npy`` too). Videos named in labels / ground truth but absent from
    the store are listed in ``missing_features`` (with ``also_missing``), never dropped silently.
    """
    store = Path(store_dir)
    if not store.is_dir():
        raise ExportError(f"{store}: feature store folder not found")
    if video_ids is None:
        video_ids = sorted(p.stem for p in store.glob("*.h5"))
    video_ids = sorted(video_ids)
    if not video_ids:
        raise ExportError(f"{store}: no feature files (*.h5) to export")
    headers = {v: _store_header(feature_path(store, v)) for v in video_ids}
    rgb_dim = _one_value(headers, "rgb_dim", store, "RGB feature widths")
    flow_dim = _one_value(headers, "flow_dim", store, "flow feature widths")
    fps = float(_one_value(headers, "fps", store, "frame rates (fps)"))
    fpsn = int(_one_value(headers, "frames_per_snippet", store, "snippet lengths (frames_per_snippet)"))

    lab, unmatched_lab = match_to_store(labels or {}, video_ids)
    gt_db, unmatched_gt = match_to_store((ground_truth or {}).get("database", {}), video_ids)
    missing = sorted(set(unmatched_lab) | set(unmatched_gt) | set(also_missing))

    videos: list[ExportVideo] = []
    unlabelled: list[str] = []
    for vid in video_ids:
        h = headers[vid]
        entry = gt_db.get(vid)
        if entry is not None:
            subset = str(entry["subset"])
        elif vid in lab:
            subset = train_subset
        elif unlabelled_subset is not None:
            subset = unlabelled_subset
        else:
            unlabelled.append(vid)
            subset = ""
        anns, amb = [], []
        for a in (entry or {}).get("annotations", []):
            s, e = (float(x) for x in a["segment"])
            if a["label"] == AMBIGUOUS:
                amb.append([s, e])
            else:
                anns.append({"segment": [s, e], "label": str(a["label"])})
        anns.sort(key=lambda a: (a["segment"][0], a["segment"][1], a["label"]))
        if vid in lab:
            video_labels = sorted({str(c) for c in lab[vid] if c and str(c) != AMBIGUOUS})
        else:
            video_labels = sorted({str(a["label"]) for a in anns})
        duration = float(h["duration"]) if h["duration"] is not None and float(h["duration"]) > 0 else 0.0
        if duration == 0.0 and entry is not None and entry.get("duration"):
            duration = float(entry["duration"])
        if duration == 0.0:  # no duration anywhere: the snippets' span is the best estimate
            duration = h["T"] * fpsn / fps
        n_frames = int(h["n_frames"]) if h["n_frames"] is not None else int(round(duration * fps))
        videos.append(ExportVideo(vid, subset, duration, n_frames, h["T"], video_labels, anns, amb))
    if unlabelled and require_labels:
        raise ExportError(
            f"{store}: {len(unlabelled)} video(s) have no labels and no ground truth, so no subset: "
            f"{unlabelled[:10]}{' ...' if len(unlabelled) > 10 else ''}. Give their labels, or put them in a "
            "subset with no labels (unlabelled subset, e.g. 'test')"
        )
    classes = sorted({c for v in videos for c in v.labels} | {a["label"] for v in videos for a in v.annotations})
    warnings: list[str] = []
    renamed = [v for v in video_ids if safe_video_id(v) != v]
    if renamed:
        warnings.append(
            f"{len(renamed)} video id(s) would be renamed by this project's W-TALC importer "
            f"(e.g. {renamed[0]!r} -> {safe_video_id(renamed[0])!r}): the id is not a plain file stem"
        )
    random_backbone = any(h["random_backbone"] for h in headers.values())
    if random_backbone:
        warnings.append("features come from a RANDOM (untrained) backbone: they carry no meaning outside a demo")
    if missing:
        warnings.append(
            f"{len(missing)} labelled or annotated video(s) have no features in the store and are not exported: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}"
        )
    return ExportPlan(
        store, videos, classes, rgb_dim, flow_dim, fps, fpsn, random_backbone, missing, warnings, train_subset
    )


def check_format(plan: ExportPlan, fmt: str) -> None:
    """Refuse a format the plan cannot be written in (before anything is written)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {list(FORMATS)}")
    if fmt == "wtalc":
        if plan.rgb_dim != plan.flow_dim:
            raise ExportError(
                f"{plan.store_dir}: RGB width {plan.rgb_dim} != flow width {plan.flow_dim}; the W-TALC joint "
                "layout splits each row in two equal halves (RGB, then flow), so it cannot hold these features"
            )
        if plan.fps != WTALC_FPS or plan.frames_per_snippet != WTALC_FRAMES_PER_SNIPPET:
            raise ExportError(
                f"{plan.store_dir}: features are {plan.frames_per_snippet}-frame snippets at {plan.fps:g} fps, but the "
                f"W-TALC layout has no field for that and every reader of it assumes "
                f"{WTALC_FRAMES_PER_SNIPPET} frames at {WTALC_FPS:g} fps"
            )
    if fmt in ("wtalc", "opentad"):
        bad = [v.video_id for v in plan.videos if not v.subset]
        if bad:
            raise ExportError(f"the {fmt} layout needs a subset for every video; none for {bad[:10]}")


# --------------------------------------------------------------------------------------
# Writers


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding ``items`` as they are (np.array would stack equal-shaped lists)."""
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


class _NumpyOneCompatiblePickler(pickle._Pickler):
    """A pickler that names NumPy's internals ``numpy.core.*`` instead of ``numpy._core.*``.

    NumPy 2 pickles arrays with ``numpy._core.multiarray._reconstruct``, a module NumPy 1.x
    does not have, so an object array saved by ``np.save`` under NumPy 2 cannot be loaded by
    the NumPy 1.x environments the authors' codebases pin (numpy/numpy issue #28340). The old
    ``numpy.core`` spelling loads under both (NumPy 2's ``np.load`` maps it back, and so does
    storage/safe_pickle.py). The pure-Python pickler is used because only it lets
    ``save_global`` be overridden; the bulk of the data is bytes, written as they are.
    """

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module == "numpy._core" or module.startswith("numpy._core."):
            legacy = "numpy.core" + module[len("numpy._core") :]
            # write/memoize/save_global are the pure-Python pickler's internals (no stubs).
            self.write(pickle.GLOBAL + f"{legacy}\n{name or obj.__qualname__}\n".encode("ascii"))  # type: ignore[attr-defined]
            self.memoize(obj)  # type: ignore[attr-defined]
            return
        super().save_global(obj, name)  # type: ignore[misc]


def _save_npy(path: Path, arr: np.ndarray) -> Path:
    """Write one ``.npy`` atomically; object arrays as a NumPy-1-and-2 compatible pickle (protocol 3, as np.save)."""
    # A file object, not a name: np.save would append ".npy" to the temporary name.
    with atomic_open(path, "wb") as fh:
        if not arr.dtype.hasobject:
            np.save(fh, arr, allow_pickle=False)
        else:
            npformat.write_array_header_1_0(fh, npformat.header_data_from_array_1_0(arr))
            _NumpyOneCompatiblePickler(fh, protocol=3).dump(arr)
    return path


def _bytes_array(texts: Sequence[str]) -> np.ndarray:
    """A fixed-width bytes array, as in the public files (the authors' loaders ``.decode()`` each item)."""
    if not texts:
        return np.array([], dtype="S1")
    return np.array([t.encode("utf-8") for t in texts])


def default_train_subset(name: str) -> str:
    """The subset HAM-Net's loader trains on for a dataset called ``name``.

    Its ``data_loader/dataset.py`` uses ``'validation'`` when the name contains "thumos"
    (THUMOS14 trains on its validation set) and ``'training'`` otherwise; W-TALC's own loader
    always trains on ``'validation'``.
    """
    return "validation" if "thumos" in name.lower() else "training"


def wtalc_paths(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """``(<out>/<name>-I3D-JOINTFeatures.npy, <out>/<name>-Annotations)``, the names the authors' loaders build."""
    out = Path(out_dir)
    return out / f"{name}-{WTALC_FEATURE_TYPE}-JOINTFeatures.npy", out / f"{name}-Annotations"


def write_wtalc(plan: ExportPlan, joint: Sequence[np.ndarray], out_dir: Path, name: str) -> list[Path]:
    """The W-TALC layout: one joint features file plus its annotation folder."""
    feats_path, ann = wtalc_paths(out_dir, name)
    vs = plan.videos
    written = [
        _save_npy(feats_path, _object_array([np.ascontiguousarray(x, dtype=np.float32) for x in joint])),
        _save_npy(ann / "videoname.npy", _bytes_array([v.video_id for v in vs])),
        _save_npy(ann / "subset.npy", _bytes_array([v.subset for v in vs])),
        _save_npy(ann / "classlist.npy", _bytes_array(plan.classes)),
        _save_npy(ann / "duration.npy", np.array([[v.duration] for v in vs], dtype=np.float64).reshape(len(vs), 1)),
        _save_npy(ann / "segments.npy", _object_array([[list(a["segment"]) for a in v.annotations] for v in vs])),
        _save_npy(ann / "labels.npy", _object_array([[a["label"] for a in v.annotations] for v in vs])),
        _save_npy(ann / "labels_all.npy", _object_array([list(v.labels) for v in vs])),
    ]
    # The authors' THUMOS14 evaluators open this file unconditionally (empty = nothing to forgive);
    # the two spaces after the name are the official file's, which their parser relies on.
    lines = [f"{v.video_id}  {s} {e}\n" for v in vs for s, e in v.ambiguous]
    written.append(write_text_atomic(ann / "Ambiguous_test.txt", "".join(lines)))
    return written


def opentad_annotation(plan: ExportPlan, name: str) -> dict[str, Any]:
    """ActivityNet-form JSON with the extra keys OpenTAD / ActionFormer read.

    Per video: ``subset``, ``duration`` (s), ``frame`` (frames at the features' frame rate:
    OpenTAD's THUMOS datasets take ``fps = frame / duration``), ``fps`` (ActionFormer's THUMOS
    dataset reads it), ``annotations`` with ``segment`` (s), ``label`` and ``label_id`` (index in
    ``category_idx.txt``; ActionFormer builds its label map from it). Ambiguous intervals are
    left out (they are no class; the W-TALC export keeps them in ``Ambiguous_test.txt``).
    """
    index = {c: i for i, c in enumerate(plan.classes)}
    database = {
        v.video_id: {
            "subset": v.subset,
            "duration": v.duration,
            "frame": v.n_frames,
            "fps": plan.fps,
            "annotations": [
                {"segment": list(a["segment"]), "label": a["label"], "label_id": index[a["label"]]}
                for a in v.annotations
            ],
        }
        for v in plan.videos
    }
    return {"version": f"hamnet-pipeline export ({name})", "database": database}


def _opentad_snippets(
    plan: ExportPlan, name: str, tiou_thresholds: Sequence[float], train_subset: str, test_subset: str
) -> tuple[str, str]:
    """Config fragments for OpenTAD (Python) and ActionFormer (YAML) with this export's values.

    Paths are relative to the export's ``opentad/`` folder: move it under the codebase's
    ``data/`` and adjust the prefix.
    """
    stride = plan.frames_per_snippet
    offset = stride // 2
    py = f'''# OpenTAD dataset settings for this export (written by hamnet-pipeline; see docs/export.md).
# Keys as in OpenTAD configs/_base_/datasets/thumos-14/features_i3d_pad.py. The features are one
# vector per {stride} frames at {plan.fps:g} fps, each covering frames [{stride}i, {stride}i+{stride}) (centre {stride}i+{offset}).
annotation_path = "annotations/{name}_anno.json"
class_map = "annotations/category_idx.txt"
data_path = "features/"
block_list = data_path + "missing_files.txt"
feature_stride = {stride}  # frames between adjacent features
sample_stride = 1
offset_frames = {offset}  # frame of the first feature's centre
train_subset_name = "{train_subset}"
test_subset_name = "{test_subset}"
num_classes = {len(plan.classes)}
in_channels = {plan.feature_dim}  # RGB {plan.rgb_dim} + flow {plan.flow_dim}
evaluation = dict(type="mAP", subset=test_subset_name, tiou_thresholds={[float(t) for t in tiou_thresholds]},
                  ground_truth_filename=annotation_path)
'''
    yml = f"""# ActionFormer dataset settings for this export (written by hamnet-pipeline; see docs/export.md).
# Keys as in actionformer_release configs/thumos_i3d.yaml; fps comes from the JSON's per-video "fps".
train_split: ['{train_subset}']
val_split: ['{test_subset}']
dataset: {{
  json_file: annotations/{name}_anno.json,
  feat_folder: features,
  file_prefix: ~,
  file_ext: .npy,
  num_classes: {len(plan.classes)},
  input_dim: {plan.feature_dim},
  feat_stride: {stride},
  num_frames: {stride},
}}
"""
    return py, yml


def write_opentad(
    plan: ExportPlan,
    out_dir: Path,
    name: str,
    *,
    tiou_thresholds: Sequence[float],
    train_subset: str,
    test_subset: str,
) -> list[Path]:
    """Everything of the per-video layout except the ``.npy`` files (written while streaming)."""
    ann = out_dir / "annotations"
    py, yml = _opentad_snippets(plan, name, tiou_thresholds, train_subset, test_subset)
    return [
        write_json_atomic(ann / f"{name}_anno.json", opentad_annotation(plan, name), indent=1),
        write_text_atomic(ann / "category_idx.txt", "".join(f"{c}\n" for c in plan.classes)),
        # OpenTAD opens block_list unconditionally; it lists annotated videos without features.
        write_text_atomic(out_dir / "features" / "missing_files.txt", "".join(f"{m}\n" for m in plan.missing_features)),
        write_text_atomic(out_dir / "opentad_dataset.py", py),
        write_text_atomic(out_dir / "actionformer_dataset.yaml", yml),
    ]


# --------------------------------------------------------------------------------------
# The export as a whole


def _prepare_output(out: Path) -> list[str]:
    """Make sure ``out`` is ours to write; returns the files a previous export listed.

    ``out`` must be absent, empty, or hold a previous export (its manifest) or an interrupted
    one (its marker); anything else is refused so an export never mixes with, or deletes,
    files it did not write. The previous manifest is replaced by the marker first, so an
    interrupted re-export never looks complete.
    """
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    previous: list[str] = []
    if out.exists() and any(out.iterdir()):
        source = out / MANIFEST if (out / MANIFEST).is_file() else out / INCOMPLETE
        if not source.is_file():
            raise ExportError(
                f"{out}: folder is not empty and holds no previous export ({MANIFEST}); choose an empty or new folder"
            )
        try:
            previous = [str(p) for p in json.loads(source.read_text(encoding="utf-8")).get("files", [])]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ExportError(f"{source}: unreadable export record ({e})") from e
    write_json_atomic(out / INCOMPLETE, {"files": previous})
    (out / MANIFEST).unlink(missing_ok=True)
    return previous


def export_store(
    plan: ExportPlan,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = FORMATS,
    name: str = "Features",
    tiou_thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    progress: bool = True,
    sources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``plan`` in each of ``formats`` under ``out_dir/<format>/``; returns the manifest.

    The store is read once, video by video (progress bar); per-video files are written as they
    come, the W-TALC features file at the end (it is one pickle of all videos, so it needs them
    all in memory: as much memory as the file's size). ``export.json`` is written last.
    """
    formats = list(dict.fromkeys(formats))
    train_subset = plan.train_subset
    others = sorted({v.subset for v in plan.videos} - {train_subset})
    test_subset = others[0] if others else train_subset
    if not formats:
        raise ExportError("no export format given")
    for fmt in formats:
        check_format(plan, fmt)
    if "/" in name or "\\" in name or not name.strip() or name.startswith("."):
        raise ExportError(f"export name {name!r} must be a plain file-name prefix")
    out = Path(out_dir)
    previous = _prepare_output(out)
    written: list[Path] = []
    joint: list[np.ndarray] = []
    for v in tqdm(plan.videos, desc="export features", unit="video", disable=not progress):
        try:
            rec = read_features(feature_path(plan.store_dir, v.video_id))
        except FeatureStoreError as e:
            raise ExportError(str(e)) from e
        if rec.num_snippets != v.num_snippets:
            raise ExportError(
                f"{feature_path(plan.store_dir, v.video_id)}: changed while exporting ({rec.num_snippets} snippets, was {v.num_snippets})"
            )
        x = rec.joint()
        if "wtalc" in formats:
            joint.append(x)
        if "opentad" in formats:
            written.append(_save_npy(out / "opentad" / "features" / f"{v.video_id}.npy", x))
        if "video_features" in formats:
            written.append(_save_npy(out / "video_features" / f"{v.video_id}_rgb.npy", rec.rgb))
            assert rec.flow is not None  # plan_export admits two-stream files only
            written.append(_save_npy(out / "video_features" / f"{v.video_id}_flow.npy", rec.flow))
    if "wtalc" in formats:
        written += write_wtalc(plan, joint, out / "wtalc", name)
        del joint
    if "opentad" in formats:
        written += write_opentad(
            plan,
            out / "opentad",
            name,
            tiou_thresholds=tiou_thresholds,
            train_subset=train_subset,
            test_subset=test_subset,
        )
    rel = sorted(str(p.relative_to(out)) for p in written)
    for stale in sorted(set(previous) - set(rel)):
        p = out / stale
        if p.is_file() and ".." not in Path(stale).parts:
            p.unlink()
    subsets: dict[str, int] = {}
    for v in plan.videos:
        subsets[v.subset] = subsets.get(v.subset, 0) + 1
    manifest = {
        "formats": formats,
        "name": name,
        "store": str(plan.store_dir),
        "sources": dict(sources or {}),
        "videos": len(plan.videos),
        "subsets": dict(sorted(subsets.items())),
        "train_subset": train_subset,
        "classes": plan.classes,
        "rgb_dim": plan.rgb_dim,
        "flow_dim": plan.flow_dim,
        "fps": plan.fps,
        "frames_per_snippet": plan.frames_per_snippet,
        "random_backbone": plan.random_backbone,
        "missing_features": plan.missing_features,
        "warnings": plan.warnings,
        "files": rel,
    }
    write_json_atomic(out / MANIFEST, manifest, indent=1)
    (out / INCOMPLETE).unlink()
    return manifest


__all__ = [
    "FORMATS",
    "MANIFEST",
    "ExportError",
    "ExportPlan",
    "ExportVideo",
    "check_format",
    "default_train_subset",
    "export_store",
    "match_to_store",
    "opentad_annotation",
    "plan_export",
    "wtalc_paths",
]
