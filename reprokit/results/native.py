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
    if not LIBRARY.is_file():
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
