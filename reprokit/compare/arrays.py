"""``compare_arrays``: numpy arrays and torch tensors, shape and dtype first, then the values.

- Shapes must match (no broadcasting); a shape change is ``differs``.
- bool is not a number: bool against a numeric dtype differs. Integer arrays, bools, strings,
  datetimes (NaT equals NaT) and records are compared exactly, whatever the tolerance.
- Floating and complex values (or an integer array against a float one) follow the float rule
  of :mod:`reprokit.comparison`, computed in the wider dtype (float16 in float32).
- A dtype change is reported and keeps the status from ``reproduced``; object arrays are
  compared element by element with :func:`~reprokit.compare.values.compare_values` rules.
- torch tensors are compared as numpy arrays (``detach().cpu()``; bfloat16 and float8 through
  float32); their dtype is reported as torch names it (``bfloat16``). Tensor against ndarray is
  not a type change here (results are stored as ``.npy``); ``verify`` names it, from the type
  each result declared.

Large arrays are walked in chunks (see ``_kernels``), on up to :data:`MAX_WORKERS` threads.
Non-contiguous arrays are copied to C order once.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from reprokit._fsutil import usable_cores
from reprokit.compare._kernels import ExactKernel, FloatKernel, Stats
from reprokit.compare._tally import Tally, run_tally, short
from reprokit.comparison import Tolerance, ValueComparison
from reprokit.exceptions import InputError

__all__ = ["as_numpy", "compare_arrays", "dtype_name", "tally_arrays"]

MAX_WORKERS = 4
PARALLEL_MIN = 1 << 22
"""Arrays with fewer elements than this are compared on one thread."""


def compare_arrays(
    reference: Any,
    current: Any,
    tolerance: Tolerance | None = None,
    *,
    strict_types: bool = False,
    path: str = "$",
) -> ValueComparison:
    """Compare two arrays (numpy, torch, or anything ``numpy.asarray`` takes)."""
    return run_tally(
        tally_arrays, reference, current, tolerance, strict_types=strict_types, path=path
    )


def tally_arrays(tally: Tally, reference: Any, current: Any, tol: Tolerance, path: str) -> None:
    """Add the comparison of two arrays to ``tally`` (for values nested in containers)."""
    ref, cur = as_numpy(reference, path), as_numpy(current, path)
    names = (dtype_name(reference, ref), dtype_name(current, cur))
    if names[0] != names[1]:
        tally.change(dtype_change=names)
    if ref.shape != cur.shape:
        tally.change(shape_change=(tuple(ref.shape), tuple(cur.shape)))
        tally.total += max(ref.size, cur.size)
        tally.fail(path, f"shape {tuple(ref.shape)} -> {tuple(cur.shape)}")
        return
    plan = _plan(ref.dtype, cur.dtype)
    if plan == "object":
        from reprokit.compare.values import tally_values

        tally_values(tally, ref.tolist(), cur.tolist(), tol, path)
    elif plan == "incompatible":
        tally.total += ref.size
        tally.fail(path, f"dtype {names[0]} cannot be compared with {names[1]}")
    else:
        stats = _run(ref, cur, plan, tol)
        _account(tally, ref, cur, stats, path)
        if stats.bad and plan == "exact" and ref.dtype.kind in "iu" and not tol.is_exact:
            tally.note("integers compare exactly, whatever the tolerance")


def as_numpy(value: Any, path: str = "$") -> Any:
    """A numpy view or copy of ``value``; InputError when it is not rectangular."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        try:
            return _tensor_to_numpy(value, torch)
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"{path}: cannot read the tensor: {exc}", path=path) from None
    if isinstance(value, np.ndarray):
        return value
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.Index):
        return value.to_numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not an array: {exc}", path=path) from None


def dtype_name(original: Any, array: Any) -> str:
    """``float32``, ``<U5``, ``datetime64[ns]``; a tensor's own name (``bfloat16``)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(original, torch.Tensor):
        return str(original.dtype).removeprefix("torch.")
    return str(array.dtype)


def _tensor_to_numpy(tensor: Any, torch: Any) -> Any:
    from reprokit.results.encode import tensor_values  # as the result was recorded

    return tensor_values(tensor)[0]


def _plan(rd: Any, cd: Any) -> str:
    rk, ck = rd.kind, cd.kind
    if "O" in (rk, ck):
        return "object"
    if rk == ck == "b" or (rk in "iu" and ck in "iu"):
        return "exact"
    if "b" in (rk, ck):
        return "incompatible"
    if rk in "iufc" and ck in "iufc":
        return "float"
    if (rk == ck and rk in "MmUS") or (rk == ck == "V" and rd == cd):
        return "exact"
    return "incompatible"


def _run(ref: Any, cur: Any, plan: str, tol: Tolerance) -> Stats:
    b, a = ref.reshape(-1), cur.reshape(-1)  # a copy only when not C-contiguous
    same = ref.dtype == cur.dtype

    def kernel() -> FloatKernel | ExactKernel:
        if plan == "exact":
            return ExactKernel(same, ref.dtype.kind + cur.dtype.kind)
        rtol, atol = tol.resolved()
        return FloatKernel(_compute_dtype(ref.dtype, cur.dtype), rtol, atol, same)

    n = a.size
    workers = _workers(n)
    if workers == 1:
        return kernel().run(a, b, 0, n)
    step = -(-n // workers)
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    with ThreadPoolExecutor(len(bounds), thread_name_prefix="reprokit-compare") as pool:
        parts = list(pool.map(lambda r: kernel().run(a, b, r[0], r[1]), bounds))
    total = Stats()
    for part in parts:
        total.absorb(part)
    return total


def _compute_dtype(rd: Any, cd: Any) -> Any:
    """The dtype two arrays are compared in: numpy's common type, except float32 for half
    (numpy's half arithmetic is emulated and slow), and a long double where a 64-bit integer
    meets a float (float64 would round 2**53 + 1 to 2**53, hiding the difference) and the
    platform's long double holds 64 bits of mantissa (x86; elsewhere it is float64)."""
    compute = np.result_type(rd, cd)
    if compute == np.float16:
        return np.dtype(np.float32)
    wide_int = any(d.kind in "iu" and d.itemsize >= 8 for d in (rd, cd))
    if wide_int and compute.kind in "fc" and compute.itemsize <= 16 and _LONG_MANTISSA >= 63:
        return np.dtype(np.clongdouble if compute.kind == "c" else np.longdouble)
    return compute


_LONG_MANTISSA = int(np.finfo(np.longdouble).nmant)


def _workers(n: int) -> int:
    if n < PARALLEL_MIN:
        return 1
    return max(1, min(usable_cores(), MAX_WORKERS, n // (PARALLEL_MIN // 2)))


def _account(tally: Tally, ref: Any, cur: Any, st: Stats, path: str) -> None:
    tally.total += st.total
    if st.bad:
        flat = st.first_bad
        note = f"current {_element(cur, flat)}, reference {_element(ref, flat)}"
        tally.mismatch(_location(path, ref.shape, flat), note, st.bad)
    if st.max_abs_at >= 0:
        tally.errors(st.max_abs, st.max_rel, _location(path, ref.shape, st.max_abs_at))
    tally.max_rel = max(tally.max_rel, st.max_rel)
    if not st.identical:
        tally.identical = False


def _element(array: Any, flat: int) -> str:
    return short(array[np.unravel_index(flat, array.shape)].item())


def _location(path: str, shape: tuple[int, ...], flat: int) -> str:
    if not shape:
        return path
    index = np.unravel_index(flat, shape)
    return f"{path}[{', '.join(str(int(k)) for k in index)}]"
