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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np

LIBRARY = Path(__file__).with_name("_arraystats.so")
ABI = 1
"""The interface version the library must report (``reprokit_stats_abi``)."""


class RunSums(NamedTuple):
    """Min and max of a run, and the sum and sum of squares of its elements less a shift."""

    low: float
    high: float
    total: float
    squares: float


class _Kernels(NamedTuple):
    f32: Any  # ctypes functions
    f64: Any


def _kernels() -> _Kernels | None:
    """The library's two functions; None where ``REPROKIT_NATIVE=0`` (read at each call) or
    there is none to load."""
    return None if os.environ.get("REPROKIT_NATIVE") == "0" else _library()


@functools.cache
def _library() -> _Kernels | None:
    """The library's two functions, or None where there is none to load (or it is refused:
    not a regular file, not a library for this machine, another interface version)."""
    if not LIBRARY.is_file():
        return None
    try:
        library = ctypes.CDLL(str(LIBRARY))
        if library.reprokit_stats_abi() != ABI:
            return None
        kernels = _Kernels(library.reprokit_stats_f32, library.reprokit_stats_f64)
    except (OSError, AttributeError):  # another platform's file, or an older build
        return None
    for kernel in kernels:
        kernel.restype = None
        kernel.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)
    return kernels


def available() -> bool:
    """Whether the native statistics are loaded (reported by the array benchmark)."""
    return _kernels() is not None


def run_sums(run: np.ndarray, shift: float) -> RunSums | None:
    """One pass over ``run`` (1-D, C-contiguous, float32 or float64 in the machine's byte
    order): its min and max, and the sum and sum of squares of ``run - shift`` in float64.
    None where numpy must do it: no library, another dtype or layout, an empty run, or a run
    with a NaN or an infinity, or sums that overflowed (numpy counts and leaves those out)."""
    import numpy as np

    kernels = _kernels()
    if kernels is None or run.size == 0 or run.ndim != 1 or not run.flags.c_contiguous:
        return None
    if run.dtype == np.float32:
        kernel = kernels.f32
    elif run.dtype == np.float64:
        kernel = kernels.f64
    else:
        return None
    out = (ctypes.c_double * 4)()
    kernel(run.ctypes.data, run.size, shift, out)
    sums = RunSums(*out)
    finite = all(value - value == 0.0 for value in sums)  # NaN or ±inf: not 0
    return sums if finite else None
