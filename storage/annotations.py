"""Readers for the public temporal annotations, all producing ground truth in ActivityNet form.

The common form (what hamnet.evaluate and storage.labels read)::

    {"database": {video: {"subset": str, "duration": float | None,
                          "annotations": [{"segment": [start_s, end_s], "label": str}, ...]}}}

Supported sources:

* THUMOS14 official evaluation-kit files: ``<Class>_<subset>.txt`` per class plus
  ``Ambiguous_<subset>.txt`` and ``detclasslist.txt``; durations from the official
  ``thumos14-<subset>-meta.mat`` when given. Ambiguous intervals become annotations labelled
  ``"Ambiguous"`` only when asked (the THUMOS14-kit evaluator mode uses them to forgive
  detections; the ActivityNet-style evaluator would count them as a 21st class).
  CliffDiving instances are also listed under Diving in the official files; both are kept,
  as the official kit does.
* ActivityNet JSON (v1.2 / v1.3), already in this form, validated and optionally filtered.
* W-TALC ``.npy`` annotation folders (``videoname.npy``, ``subset.npy``, ``segments.npy``,
  ``labels.npy``, ``duration.npy``...), loaded with :mod:`storage.safe_pickle`.

Every reader raises :class:`AnnotationError` (a ``ValueError``) naming the file and the
problem; nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.activitynet import AMBIGUOUS, AnnotationError, validate_ground_truth
from core.atomic import write_json_atomic
from storage.safe_pickle import UnsafePickleError, safe_load_npy

# The subset names the files use -> the names written into the ground truth. "validation"
# and "test" are what the W-TALC files and the WTAL papers call THUMOS14's two sets.
THUMOS_SUBSETS = {"val": "validation", "validation": "validation", "test": "test"}


# --------------------------------------------------------------------------------------
# THUMOS14 official files


def read_thumos14_classes(path: str | os.PathLike) -> list[str]:
    """Class names from ``detclasslist.txt`` (lines ``<ucf101 index> <Name>``), file order."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: class list not found")
    names: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        names.append(parts[1])
    if not names:
        raise AnnotationError(f"{path}: no classes listed")
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise AnnotationError(f"{path}: class(es) listed twice: {dup}")
    return names


def read_thumos14_txt(path: str | os.PathLike) -> list[tuple[str, float, float]]:
    """Lines ``video start end`` (seconds) of one official THUMOS14 annotation file."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AnnotationError(f"{path}:{lineno}: expected 'video start end', got {line!r}")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise AnnotationError(f"{path}:{lineno}: start/end are not numbers: {line!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
            raise AnnotationError(f"{path}:{lineno}: invalid interval [{start}, {end}]")
        rows.append((parts[0], start, end))
    return rows


def read_thumos14_meta(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Per-video metadata from the official ``thumos14-<subset>-meta.mat`` (scipy.io.loadmat).

    Returns ``{video_name: {"duration": s, "fps": f, "primary_action": str, ...}}``.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: THUMOS14 meta file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises assorted errors for non-.mat input
        raise AnnotationError(f"{path}: not a readable .mat file ({e})") from e
    keys = [k for k in mat if not k.startswith("__")]
    struct_keys = [k for k in keys if isinstance(mat[k], np.ndarray) and mat[k].dtype.names]
    if len(struct_keys) != 1:
        raise AnnotationError(f"{path}: expected one struct array (e.g. test_videos), found {keys}")
    arr = mat[struct_keys[0]].ravel()
    for need in ("video_name", "video_duration_seconds"):
        if need not in arr.dtype.names:
            raise AnnotationError(f"{path}: struct has no field {need!r} (fields: {arr.dtype.names})")

    def scalar(v: Any) -> Any:
        v = np.asarray(v)
        if v.size == 0:
            return None
        x = v.ravel()[0]
        return x.item() if isinstance(x, np.generic) else x

    out: dict[str, dict[str, Any]] = {}
    for rec in arr:
        name = str(scalar(rec["video_name"]))
        entry: dict[str, Any] = {"duration": float(scalar(rec["video_duration_seconds"]))}
        for field, key in (("frame_rate_FPS", "fps"), ("primary_action", "primary_action")):
            if field in arr.dtype.names:
                entry[key] = scalar(rec[field])
        out[name] = entry
    return out


def read_thumos14_annotations(
    annotation_dir: str | os.PathLike,
    *,
    subset: str | None = None,
    meta_mat: str | os.PathLike | None = None,
    include_ambiguous: bool = False,
) -> dict[str, Any]:
    """Read one THUMOS14 official annotation folder into ActivityNet-form ground truth.

    ``subset`` is the file suffix (``val`` or ``test``); by default it is inferred from the
    file names. Every video named in any file (Ambiguous included) is in the database, so
    ``video_test_0001292`` (Ambiguous only) is present, with no annotations unless
    ``include_ambiguous``. The result also carries ``"classes"`` (detclasslist order).
    Durations come from ``meta_mat``; without it they are ``None``.
    """
    root = Path(annotation_dir)
    if not root.is_dir():
        raise AnnotationError(f"{root}: THUMOS14 annotation folder not found")
    classes = read_thumos14_classes(root / "detclasslist.txt")
    txts = sorted(p for p in root.glob("*.txt") if p.name != "detclasslist.txt")
    suffixes = {m.group(2) for p in txts if (m := re.fullmatch(r"(.+)_([A-Za-z]+)\.txt", p.name))}
    if subset is None:
        if len(suffixes) != 1:
            raise AnnotationError(
                f"{root}: cannot infer the subset from file suffixes {sorted(suffixes)}; pass subset="
            )
        subset = suffixes.pop()
    if subset not in THUMOS_SUBSETS:
        raise AnnotationError(f"{root}: unknown THUMOS14 subset {subset!r} (expected 'val' or 'test')")
    expected = {f"{c}_{subset}.txt" for c in classes} | {f"{AMBIGUOUS}_{subset}.txt"}
    missing = sorted(n for n in expected if not (root / n).is_file())
    if missing:
        raise AnnotationError(f"{root}: missing annotation file(s) {missing}")
    unexpected = sorted(p.name for p in txts if p.name.endswith(f"_{subset}.txt") and p.name not in expected)
    if unexpected:
        raise AnnotationError(f"{root}: annotation file(s) for classes not in detclasslist.txt: {unexpected}")

    meta = read_thumos14_meta(meta_mat) if meta_mat is not None else None
    subset_name = THUMOS_SUBSETS[subset]
    database: dict[str, dict[str, Any]] = {}

    def entry(video: str, src: Path) -> dict[str, Any]:
        if video not in database:
            duration = None
            if meta is not None:
                if video not in meta:
                    raise AnnotationError(f"{src}: video {video!r} is not in the meta file {meta_mat}")
                duration = meta[video]["duration"]
            database[video] = {"subset": subset_name, "duration": duration, "annotations": []}
        return database[video]

    for label in classes + [AMBIGUOUS]:
        src = root / f"{label}_{subset}.txt"
        for video, start, end in read_thumos14_txt(src):
            e = entry(video, src)
            if label == AMBIGUOUS and not include_ambiguous:
                continue
            e["annotations"].append({"segment": [start, end], "label": label})
    for e in database.values():
        e["annotations"].sort(key=lambda a: (a["segment"][0], a["segment"][1], a["label"]))
    return {"database": dict(sorted(database.items())), "classes": classes}


# --------------------------------------------------------------------------------------
# ActivityNet JSON


def read_activitynet_json(path: str | os.PathLike, *, subsets: Iterable[str] | None = None) -> dict[str, Any]:
    """Read an ActivityNet annotation JSON (v1.2 or v1.3) into the common form.

    Segments are converted to floats (some files store strings). Only ``subset``,
    ``duration`` and ``annotations`` are kept per video; ``subsets`` filters (e.g.
    ``["validation"]``). Zero-length segments and segments ending after ``duration`` are
    kept as the official files have them (the evaluator decides how to treat them).
    The result carries ``"classes"``: the sorted labels present in the kept videos.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: ActivityNet JSON not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from e
    validate_ground_truth(raw, source=str(path))
    keep = set(subsets) if subsets is not None else None
    database: dict[str, dict[str, Any]] = {}
    for vid, entry in raw["database"].items():
        if keep is not None and entry["subset"] not in keep:
            continue
        anns = []
        for i, a in enumerate(entry["annotations"]):
            try:
                s, t = float(a["segment"][0]), float(a["segment"][1])
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{path}: video {vid!r} annotation {i}: segment {a['segment']!r} is not numeric"
                ) from None
            anns.append({"segment": [s, t], "label": str(a["label"])})
        duration = entry.get("duration")
        database[vid] = {
            "subset": str(entry["subset"]),
            "duration": float(duration) if duration not in (None, "") else None,
            "annotations": anns,
        }
    if keep is not None and not database:
        raise AnnotationError(f"{path}: no videos in subset(s) {sorted(keep)}")
    classes = sorted({a["label"] for e in database.values() for a in e["annotations"]})
    return {"database": database, "classes": classes}


# --------------------------------------------------------------------------------------
# W-TALC .npy folders


def _text(x: Any) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode("utf-8")
    return str(x)


def _youtube_id(url: str) -> str:
    m = re.search(r"[?&]v=([^&]+)", url)
    return m.group(1) if m else url


def read_wtalc_annotations(annotation_dir: str | os.PathLike, *, video_ids: str = "videoname") -> dict[str, Any]:
    """Read a W-TALC-format annotation folder (Thumos14reduced, ActivityNet1.2 of 3C-Net...).

    ``video_ids``: ``"videoname"`` uses ``videoname.npy`` as the key; ``"youtube"`` uses the
    YouTube id parsed from ``url.npy`` (ActivityNet folders), so the result can be compared
    with the official ActivityNet JSON. The result carries ``"classes"`` (``classlist.npy``
    order, which is the order the public features' class indices use) and ``"order"`` (the
    video keys in file order: the order of the rows of the matching features file). When the
    folder has ``labels_all.npy`` (the per-video labels the authors' loaders train on), the
    result also carries ``"video_labels"``: ``{key: [class, ...]}``; it differs from the
    classes of the segments for videos with weak labels only (no temporal annotations).
    """
    root = Path(annotation_dir)
    if not root.is_dir():
        raise AnnotationError(f"{root}: W-TALC annotation folder not found")
    if video_ids not in ("videoname", "youtube"):
        raise ValueError(f"video_ids must be 'videoname' or 'youtube', got {video_ids!r}")

    def load_optional(name: str) -> np.ndarray | None:
        p = root / f"{name}.npy"
        if not p.is_file():
            return None
        try:
            return safe_load_npy(p)
        except UnsafePickleError as e:
            raise AnnotationError(str(e)) from e

    def load(name: str) -> np.ndarray:
        arr = load_optional(name)
        if arr is None:
            raise AnnotationError(f"{root}: missing {name}.npy")
        return arr

    names = [_text(v) for v in load("videoname").ravel()]
    subsets = [_text(v) for v in load("subset").ravel()]
    classlist = [_text(v) for v in load("classlist").ravel()]
    segments = load("segments")
    labels = load("labels")
    duration = load_optional("duration")
    url = load("url") if video_ids == "youtube" else load_optional("url")
    labels_all = load_optional("labels_all")
    n = len(names)
    for what, arr in (("subset", subsets), ("segments", segments), ("labels", labels), ("labels_all", labels_all)):
        if arr is not None and len(arr) != n:
            raise AnnotationError(f"{root}: {what}.npy has {len(arr)} entries but videoname.npy has {n}")
    if duration is not None:
        duration = np.asarray(duration, dtype=np.float64).reshape(n, -1)[:, 0]
    if video_ids == "videoname":
        keys = names
    else:
        assert url is not None  # loaded as required above
        keys = [_youtube_id(_text(u)) for u in url.ravel()]
    dup = [k for k, c in Counter(keys).items() if c > 1]
    if dup:
        raise AnnotationError(f"{root}: duplicate video ids {dup[:5]}")
    known = set(classlist)
    database: dict[str, dict[str, Any]] = {}
    for i, key in enumerate(keys):
        segs, labs = list(segments[i]), list(labels[i])
        if len(segs) != len(labs):
            raise AnnotationError(
                f"{root}: video {names[i]!r} has {len(segs)} segments but {len(labs)} labels (segments.npy / labels.npy)"
            )
        anns = []
        for seg, lab in zip(segs, labs):
            lab = _text(lab)
            if lab not in known:
                raise AnnotationError(f"{root}: video {names[i]!r}: label {lab!r} is not in classlist.npy")
            s, t = (float(x) for x in seg)
            anns.append({"segment": [s, t], "label": lab})
        database[key] = {
            "subset": subsets[i],
            "duration": float(duration[i]) if duration is not None else None,
            "annotations": anns,
        }
        if video_ids == "youtube":
            database[key]["wtalc_name"] = names[i]
    out: dict[str, Any] = {"database": database, "classes": classlist, "order": keys}
    if labels_all is not None:
        video_labels: dict[str, list[str]] = {}
        for i, key in enumerate(keys):
            labs = [_text(x) for x in labels_all[i]]
            unknown = [lab for lab in labs if lab not in known]
            if unknown:
                raise AnnotationError(
                    f"{root}: video {names[i]!r}: label(s) {unknown} in labels_all.npy are not in classlist.npy"
                )
            video_labels[key] = labs
        out["video_labels"] = video_labels
    return out


# --------------------------------------------------------------------------------------
# Helpers shared by importers and the reproduction script


def count_segments(gt: Mapping[str, Any], *, subset: str | None = None, label: str | None = None) -> int:
    """Number of annotations (optionally one subset, one label)."""
    return sum(
        1
        for e in gt["database"].values()
        if subset is None or e["subset"] == subset
        for a in e["annotations"]
        if label is None or a["label"] == label
    )


def select_subset(gt: Mapping[str, Any], subset: str) -> dict[str, Any]:
    """Ground truth restricted to one subset (other top-level keys kept)."""
    out = {k: v for k, v in gt.items() if k != "database"}
    out["database"] = {v: e for v, e in gt["database"].items() if e["subset"] == subset}
    if not out["database"]:
        raise AnnotationError(
            f"no videos in subset {subset!r} (subsets present: {sorted({e['subset'] for e in gt['database'].values()})})"
        )
    return out


def write_ground_truth_json(path: str | os.PathLike, gt: Mapping[str, Any]) -> Path:
    """Write ground truth atomically (temp file in the same folder, then rename)."""
    validate_ground_truth(gt, source=str(path))
    return write_json_atomic(path, gt)
