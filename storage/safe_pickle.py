"""Loading ``.npy`` files that hold object arrays without letting them run code.

The public W-TALC-format files (annotations such as ``segments.npy`` and the joint I3D
feature file) are NumPy object arrays, which NumPy stores as a pickle after the ``.npy``
header. ``np.load(allow_pickle=True)`` would unpickle them with the full pickle machinery,
and a pickle can call any importable function (``os.system``, ``builtins.exec``...) while it
loads. These files come from third parties, so they are read here instead:

* the ``.npy`` header is parsed with ``numpy.lib.format`` (magic, then header 1.0/2.0/3.0);
* a plain (non-object) array is read with ``allow_pickle=False``;
* an object array's pickle goes through :class:`RestrictedUnpickler`, whose ``find_class``
  admits only the globals NumPy itself emits for arrays, dtypes and scalars. Any other global
  is refused with :class:`UnsafePickleError` naming the file and the global *before* the
  pickle can call it (``find_class`` runs when the GLOBAL opcode is read, the call happens
  only at the later REDUCE opcode), so nothing from the file is executed.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "safe_load_npy", "restricted_loads", "ALLOWED_GLOBALS"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global outside the allow-list, or the file is not a valid .npy."""


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to what pickles of bytes use (protocol 2 writes
    ``_codecs.encode(text, 'latin1')`` for every ``bytes`` object). Only str -> bytes with a
    Latin-1/UTF-8/ASCII codec is allowed: those codecs have no side effects."""
    if not isinstance(obj, str):
        raise UnsafePickleError(f"_codecs.encode called on {type(obj).__name__}, expected str")
    name = codecs.lookup(encoding).name
    if name not in ("iso8859-1", "utf-8", "ascii"):
        raise UnsafePickleError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(obj, name, errors)


def _numpy_attr(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)


# (module, name) -> how to get the object. NumPy moved numpy.core to numpy._core in 2.0;
# files written by either version name their own, so both spellings are admitted.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED_GLOBALS[(_mod, "_reconstruct")] = ("numpy._core.multiarray", "_reconstruct")
    ALLOWED_GLOBALS[(_mod, "scalar")] = ("numpy._core.multiarray", "scalar")
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED_GLOBALS[(_mod, "_frombuffer")] = ("numpy._core.numeric", "_frombuffer")
ALLOWED_GLOBALS[("numpy", "ndarray")] = ("numpy", "ndarray")
ALLOWED_GLOBALS[("numpy", "dtype")] = ("numpy", "dtype")
ALLOWED_GLOBALS[("_codecs", "encode")] = _latin1_encode
ALLOWED_GLOBALS[("codecs", "encode")] = _latin1_encode


def _resolve(target: Any) -> Any:
    if isinstance(target, tuple):
        try:
            return _numpy_attr(*target)
        except (ImportError, AttributeError):  # NumPy < 2: the same objects live in numpy.core
            return _numpy_attr(target[0].replace("numpy._core", "numpy.core"), target[1])
    return target


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild NumPy arrays, dtypes, scalars, lists, tuples,
    dicts, strings and numbers. ``source`` names the file in error messages."""

    def __init__(self, file: io.BufferedIOBase, *, source: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding, errors="strict")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load: the pickle asks for the global '{module}.{name}', "
                "which is not a NumPy array/dtype constructor; loading it could run code from the file"
            )
        return _resolve(target)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused to load: the pickle uses persistent ids ({pid!r})")


def restricted_loads(data: bytes, *, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UnsafePickleError(f"{source}: not a valid pickled NumPy array ({type(e).__name__}: {e})") from e


def safe_load_npy(path: str | os.PathLike, *, encoding: str = "latin1") -> np.ndarray:
    """Load a ``.npy`` file; object arrays are unpickled with the restricted unpickler.

    ``encoding`` is what Python-2 pickles' ``str`` objects are decoded with (``latin1``
    keeps both text and the raw bytes of Python-2 numeric arrays intact, as NumPy advises).
    Raises :class:`UnsafePickleError` (a ``ValueError``) naming the file for a refused global
    or a malformed file, ``FileNotFoundError`` when it is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npy file")
    with open(path, "rb") as fh:
        try:
            version = npformat.read_magic(fh)
        except ValueError as e:
            raise UnsafePickleError(f"{path}: not a .npy file ({e})") from e
        try:
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(fh)
            else:
                # 3.0 differs from 2.0 only in allowing UTF-8 field names; NumPy parses it
                # through the same private helper (private, so absent from NumPy's stubs).
                shape, fortran, dtype = npformat._read_array_header(fh, version)  # type: ignore[attr-defined]  # noqa: SLF001
        except ValueError as e:
            raise UnsafePickleError(f"{path}: malformed .npy header ({e})") from e
        if not dtype.hasobject:
            fh.seek(0)
            try:
                return npformat.read_array(fh, allow_pickle=False)
            except ValueError as e:
                raise UnsafePickleError(f"{path}: truncated or malformed .npy data ({e})") from e
        arr = RestrictedUnpickler(fh, source=str(path), encoding=encoding)
        try:
            out = arr.load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise UnsafePickleError(f"{path}: not a valid pickled NumPy array ({type(e).__name__}: {e})") from e
    if not isinstance(out, np.ndarray):
        raise UnsafePickleError(f"{path}: the pickle holds a {type(out).__name__}, expected a NumPy array")
    if tuple(out.shape) != tuple(shape):
        raise UnsafePickleError(f"{path}: header says shape {shape} but the data has shape {out.shape}")
    return out
