"""The optional native statistics: one C pass over a run of float32 or float64 elements.

``arraystats.c`` beside this module is compiled at install into ``_arraystats.so`` (see
``tools/build_native.py``) and loaded here with ctypes, which releases the GIL while it runs
(the hashing thread of :func:`~reprokit.results.arraypass.write_described` goes on meanwhile).
Where it was not built (no C compiler, Windows, ``REPROKIT_NATIVE=0``), :func:`run_sums`
answers None and the statistics are computed with numpy: the same figures to within float64
rounding (about 10⁻¹⁴ of them), three times slower.

Setting ``REPROKIT_NATIVE=0`` in the environment also stops a built library from being used.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np

LIBRARY = Path(__file__).with_name("_arraystats.so")
ABI = 4
"""The interface version the library must report (``reprokit_stats_abi``)."""


class RunSums(NamedTuple):
    """Min and max of a run's elements other than NaN, the sum and sum of squares of them
    less a shift, how many there are, how many NaNs the run holds, and how many of those have
    bits other than numpy's ``np.nan`` (the NaN a digest takes every NaN as)."""

    low: float
    high: float
    total: float
    squares: float
    kept: int  # elements other than NaN
    nan: int = 0
    odd_nan: int = 0


class _Kernels(NamedTuple):
    """The library's functions (ctypes), by dtype: (no NaN expected, NaNs left out)."""

    f32: tuple[Any, Any]
    f64: tuple[Any, Any]


def _kernels() -> _Kernels | None:
    """The library's functions; None where ``REPROKIT_NATIVE=0`` (read at each call) or
    there is none to load."""
    return None if os.environ.get("REPROKIT_NATIVE") == "0" else _library()


@functools.cache
def _library() -> _Kernels | None:
    """The library's functions, or None where there is none to load (or it is refused: not a
    regular file, not a library for this machine, another interface version)."""
    if not LIBRARY.is_file() or not _intact(LIBRARY):
        return None
    try:
        library = ctypes.CDLL(str(LIBRARY))
        if library.reprokit_stats_abi() != ABI:
            return None
        kernels = _Kernels(
            (library.reprokit_stats_f32, library.reprokit_stats_skipnan_f32),
            (library.reprokit_stats_f64, library.reprokit_stats_skipnan_f64),
        )
    except (OSError, AttributeError):  # another platform's file, or an older build
        return None
    for kernel in (*kernels.f32, *kernels.f64):
        kernel.restype = None
        kernel.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)
    return kernels


def _intact(path: Path) -> bool:
    """Whether an ELF library's headers, segments and section table all lie inside its file.
    ``dlopen`` of a truncated one (a copy cut short, a full disk) maps pages past its end, and
    the process dies of SIGBUS when they are read: no exception to catch. A file that is not
    ELF is left to ``dlopen`` where libraries are not ELF (macOS), refused where they are."""
    import struct
    import sys

    try:
        with path.open("rb") as handle:  # read no more than a library could be
            data = handle.read(_MAX_LIBRARY_BYTES + 1)
    except (OSError, MemoryError):
        return False
    if data[:4] != b"\x7fELF":
        return not sys.platform.startswith("linux") and len(data) <= _MAX_LIBRARY_BYTES
    if len(data) < 64 or len(data) > _MAX_LIBRARY_BYTES or data[5] not in (1, 2):
        return False
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    header = order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH")
    _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = struct.unpack_from(
        header, data, 16
    )
    segment = order + ("IIQQQQQQ" if wide else "IIIIIIII")
    if phentsize < struct.calcsize(segment) or phoff + phnum * phentsize > len(data):
        return False
    if shoff + shnum * shentsize > len(data):
        return False
    for at in range(phoff, phoff + phnum * phentsize, phentsize):
        entry = struct.unpack_from(segment, data, at)
        offset, size = (entry[2], entry[5]) if wide else (entry[1], entry[4])
        if offset + size > len(data):
            return False
    return True


_MAX_LIBRARY_BYTES = 16 * 1024 * 1024
"""Larger than any build of ``arraystats.c`` (about 30 KB): a bigger file is not it."""


def available() -> bool:
    """Whether the native statistics are loaded (reported by the array benchmark)."""
    return _kernels() is not None


def run_sums(run: np.ndarray, shift: float, *, nan_first: bool = False) -> RunSums | None:
    """One pass over ``run`` (1-D, C-contiguous, float32 or float64 in the machine's byte
    order): the min, max, sum and sum of squares of ``run - shift`` in float64 over its
    elements other than NaN, and the counts. A run with a NaN takes a second, slower pass that
    leaves them out and counts them (``nan_first``: that pass only, for a run that likely
    holds one; on a run that does not, it gives the same figures). None where numpy must do
    it: no library, another dtype or layout, an empty run, an infinity, or sums that
    overflowed (numpy counts the infinities and says which statistic is lost)."""
    import numpy as np

    kernels = _kernels()
    if kernels is None or run.size == 0 or run.ndim != 1 or not run.flags.c_contiguous:
        return None
    if run.dtype == np.float32:
        plain, skipnan = kernels.f32
    elif run.dtype == np.float64:
        plain, skipnan = kernels.f64
    else:
        return None
    out = (ctypes.c_double * 6)()
    if not nan_first:
        plain(run.ctypes.data, run.size, shift, out)
        if _finite(out[:4]):
            low, high, total, squares = out[:4]
            return RunSums(low, high, total, squares, run.size)
    skipnan(run.ctypes.data, run.size, shift, out)
    low, high, total, squares, kept, usual = out
    count = int(kept)
    if not count:  # only NaNs
        return RunSums(math.nan, math.nan, 0.0, 0.0, 0, run.size, run.size - int(usual))
    if not _finite(out[:4]):
        return None
    nan = run.size - count
    return RunSums(low, high, total, squares, count, nan, nan - int(usual))


def _finite(values: Any) -> bool:
    return all(value - value == 0.0 for value in values)  # NaN or ±inf: not 0
