"""The restricted .npy loader: real W-TALC files load, files that try to run code are refused."""

from __future__ import annotations

import builtins
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from storage.safe_pickle import UnsafePickleError, restricted_loads, safe_load_npy

WTALC = "thumos14/wtalc/Thumos14reduced-Annotations"
ANET = "activitynet12/3c-net/ActivityNet1.2-Annotations"


class _Payload:
    """Pickles to a call of ``func(arg)`` when loaded: the classic pickle attack."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _globals_in(data: bytes) -> set[str]:
    names: set[str] = set()
    strings: list[str] = []  # the last strings pushed: STACK_GLOBAL takes module and name from them
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str) and "UNICODE" in op.name:
            strings.append(arg)
    return names


def _npy_with_object_payload(path: Path, payload) -> Path:
    """A W-TALC-like object array whose second element is the payload (np.save pickles it)."""
    arr = np.empty(2, dtype=object)
    arr[0] = np.arange(6, dtype=np.float32).reshape(2, 3)
    arr[1] = payload
    np.save(path, arr, allow_pickle=True)  # saving only records the reduce; nothing runs
    return path


def _pickle_bytes_of(path: Path) -> bytes:
    from numpy.lib import format as F

    with open(path, "rb") as fh:
        F.read_magic(fh)
        F.read_array_header_1_0(fh)
        return fh.read()


@pytest.mark.parametrize("name", ["segments", "labels", "labels_all", "videoname", "subset", "duration", "classlist"])
def test_real_wtalc_files_match_numpy(shared_data, name):
    path = shared_data / WTALC / f"{name}.npy"
    ours = safe_load_npy(path)
    ref = np.load(path, allow_pickle=True, encoding="latin1")  # trusted here: a known public file
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    for a, b in zip(ours.ravel(), ref.ravel()):
        assert np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def test_real_3cnet_labels_all_uses_codecs_and_loads(shared_data):
    # This file pickles bytes via _codecs.encode(..., 'latin1'): the loader must accept that.
    path = shared_data / ANET / "labels_all.npy"
    assert "_codecs.encode" in _globals_in(_pickle_bytes_of(path))
    arr = safe_load_npy(path)
    assert arr.shape == (7202,)
    assert all(isinstance(x, str) for x in arr[0])


@pytest.mark.parametrize("func", [os.system, builtins.exec])
def test_crafted_code_execution_is_refused_and_never_runs(tmp_path, func):
    marker = tmp_path / "PWNED"
    cmd = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').write('x')"
    path = _npy_with_object_payload(tmp_path / "evil.npy", _Payload(func, cmd))
    # The file really does carry the dangerous call (checked statically, never executed).
    globs = _globals_in(_pickle_bytes_of(path))
    assert any(g.endswith(".system") or g == "builtins.exec" for g in globs), globs
    with pytest.raises(UnsafePickleError) as err:
        safe_load_npy(path)
    msg = str(err.value)
    assert str(path) in msg
    assert ("system" in msg) if func is os.system else ("builtins.exec" in msg)
    assert not marker.exists(), "the payload ran"


def test_top_level_reduce_is_refused(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=2)
    with pytest.raises(UnsafePickleError, match="posix.system|nt.system"):
        restricted_loads(data, source="crafted.pkl")
    assert not marker.exists()
    # protocol 4 uses STACK_GLOBAL instead of GLOBAL: refused the same way
    data4 = pickle.dumps(_Payload(builtins.eval, "1+1"), protocol=4)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        restricted_loads(data4, source="crafted4.pkl")


def test_object_array_round_trip_with_numpy_scalars(tmp_path):
    arr = np.empty(3, dtype=object)
    arr[0] = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    arr[1] = [np.float64(1.5), b"bytes", "text", (1, 2)]
    arr[2] = {"k": np.int64(3)}
    np.save(tmp_path / "ok.npy", arr, allow_pickle=True)
    out = safe_load_npy(tmp_path / "ok.npy")
    assert np.array_equal(out[0], arr[0]) and out[0].dtype == np.float32
    assert out[1] == arr[1] and out[2] == arr[2]


def test_plain_arrays_and_bad_files(tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    assert safe_load_npy(tmp_path / "plain.npy").tolist() == np.arange(12).reshape(3, 4).tolist()
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(UnsafePickleError, match="junk.npy"):
        safe_load_npy(tmp_path / "junk.npy")
    full = (tmp_path / "plain.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(full[:-5])
    with pytest.raises(UnsafePickleError, match="short.npy"):
        safe_load_npy(tmp_path / "short.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        safe_load_npy(tmp_path / "missing.npy")


def test_codecs_encode_is_limited_to_harmless_codecs():
    ok = pickle.dumps(b"\xffabc", protocol=2)  # written as _codecs.encode('\xffabc', 'latin1')
    assert restricted_loads(ok) == b"\xffabc"
    evil = ok.replace(b"latin1", b"rot_13")
    with pytest.raises(UnsafePickleError, match="rot_13"):
        restricted_loads(evil, source="codec.pkl")
