"""Summaries of arrays too large to keep, and their comparison within tolerance.

An :class:`ArraySummary` holds the digest (BLAKE3 of the C-order bytes), dtype, shape,
statistics over the finite elements, NaN/inf counts, and the elements at a seeded sample of
flat positions. The positions depend only on ``(seed, size, sample_size)``, so two summaries of
same-shaped arrays sample the same elements on any machine (pure-Python SplitMix64; no numpy
random stream, whose output may change between numpy versions).

:func:`compare_summaries` decides:

- same digest, dtype and shape: ``reproduced`` (every element identical);
- shape change, different NaN/+inf/-inf counts, or a sampled element out of tolerance:
  ``differs``;
- a statistic that moved further than the tolerance allows: ``differs``. The bounds are
  necessary conditions (if every element passes ``|a-b| <= atol + rtol*|b|`` then
  ``|Δmean| <= atol + rtol*mean|b|`` and ``|Δmin|, |Δmax|, |Δstd| <= atol + rtol*max|b|``),
  so a violated bound proves a difference;
- same dtype and an exact comparison (integers, bools, strings; or floats with no tolerance):
  a different digest proves the bits differ: ``differs`` (for floats this includes a -0.0/0.0
  or NaN-payload change, which ``compare_arrays`` would call equal: a summary cannot tell);
- otherwise ``within_tolerance`` with ``Deviation.estimated`` True: counts and errors are over
  the sample, not every element.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from reprokit.compare._tally import Tally, float_outcome, short
from reprokit.comparison import EXACT, Tolerance, ValueComparison
from reprokit.exceptions import InputError

__all__ = [
    "ArraySummary",
    "compare_summaries",
    "dtype_kind",
    "sample_indices",
    "sample_values",
    "summarize_array",
]

SampleValue = float | int | bool | str


@dataclass(frozen=True)
class ArraySummary:
    """What is kept of a large array (JSON round-trips with ``reprokit._serde``)."""

    shape: tuple[int, ...]
    dtype: str  # numpy's name ("float32", "<U5"); a tensor's torch name ("bfloat16")
    digest: str  # "blake3:<hex>" of the C-order bytes
    count: int
    nan_count: int = 0
    posinf_count: int = 0
    neginf_count: int = 0
    min: float | int | None = None  # over finite elements; None when not numeric or none finite
    max: float | int | None = None
    mean: float | None = None
    std: float | None = None  # population (ddof=0)
    abs_mean: float | None = None  # mean of |x|: bounds how far the mean may move
    sample_seed: int = 0
    sample_indices: tuple[int, ...] = ()  # flat C-order positions, sorted
    sample_values: tuple[SampleValue, ...] = ()


def sample_indices(size: int, sample_size: int, seed: int) -> tuple[int, ...]:
    """``sample_size`` distinct sorted positions in ``range(size)`` (all of them if fewer)."""
    if size <= sample_size:
        return tuple(range(size))
    chosen: set[int] = set()
    state = seed & _MASK
    while len(chosen) < sample_size:
        state = (state + 0x9E3779B97F4A7C15) & _MASK
        chosen.add((_mix64(state) * size) >> 64)  # multiply-shift: uniform enough, no modulo
    return tuple(sorted(chosen))


_MASK = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def summarize_array(array: Any, *, sample_size: int = 1024, seed: int = 0) -> ArraySummary:
    """Digest, statistics and a seeded sample of a numpy array or torch tensor."""
    from reprokit.compare._stats import array_stats, digest_bytes
    from reprokit.compare.arrays import as_numpy, dtype_name

    arr = as_numpy(array)
    if arr.dtype.kind == "O":
        raise InputError("an object array cannot be summarized (its bytes are pointers)")
    if sample_size < 0:
        raise InputError(f"sample_size must be >= 0, got {sample_size}")
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.copy(order="C").reshape(-1)
    positions = sample_indices(flat.size, sample_size, seed)
    picked = flat[list(positions)].tolist() if positions else []
    textual = arr.dtype.kind not in "biuf"
    stats = array_stats(flat)
    return ArraySummary(
        shape=tuple(int(k) for k in arr.shape),
        dtype=dtype_name(array, arr),
        digest=digest_bytes(flat),
        count=int(flat.size),
        sample_seed=seed,
        sample_indices=positions,
        sample_values=tuple(str(v) if textual else v for v in picked),
        **stats,
    )


def compare_summaries(
    reference: ArraySummary,
    current: ArraySummary,
    tolerance: Tolerance | None = None,
    *,
    strict_types: bool = False,
    path: str = "$",
) -> ValueComparison:
    """Compare two summaries (see the module docstring for the rules)."""
    tol = tolerance if tolerance is not None else EXACT
    tally = Tally(estimated=True)
    if reference.dtype != current.dtype:
        tally.change(dtype_change=(reference.dtype, current.dtype))
    if reference.shape != current.shape:
        tally.change(shape_change=(reference.shape, current.shape))
        tally.total = max(reference.count, current.count)
        tally.fail(path, f"shape {reference.shape} -> {current.shape}")
        return tally.finish(tol, strict_types=strict_types)
    if reference.digest == current.digest and reference.dtype == current.dtype:
        tally.estimated = False
        tally.total = reference.count
        return tally.finish(tol, strict_types=strict_types)
    kinds = dtype_kind(reference.dtype) + dtype_kind(current.dtype)
    floating = any(k in "fc" for k in kinds)
    rtol, atol = tol.resolved() if floating else (0.0, 0.0)
    _tally_sample(tally, reference, current, rtol, atol, floating, path)
    _tally_counts(tally, reference, current, path)
    _tally_stats(tally, reference, current, rtol, atol, path)
    if reference.dtype == current.dtype and (not floating or tol.is_exact):
        tally.fail(path, "digests differ: the contents are not identical")
    tally.identical = False
    return tally.finish(tol, strict_types=strict_types)


def _tally_sample(
    tally: Tally,
    ref: ArraySummary,
    cur: ArraySummary,
    rtol: float,
    atol: float,
    floating: bool,
    path: str,
) -> None:
    current = dict(zip(cur.sample_indices, cur.sample_values, strict=False))
    for index, value in zip(ref.sample_indices, ref.sample_values, strict=False):
        if index not in current:
            continue
        other = current[index]
        tally.total += 1
        at = _location(path, ref.shape, index)
        if floating and _is_number(value) and _is_number(other):
            outcome = float_outcome(float(other), float(value), rtol, atol)
            tally.errors(outcome.abs_err, outcome.rel_err, at)
            within = outcome.within
        else:
            within = type(value) is type(other) and value == other
        if not within:
            tally.mismatch(at, f"current {short(other)}, reference {short(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tally_counts(tally: Tally, ref: ArraySummary, cur: ArraySummary, path: str) -> None:
    for label, a, b in (
        ("NaN", ref.nan_count, cur.nan_count),
        ("+inf", ref.posinf_count, cur.posinf_count),
        ("-inf", ref.neginf_count, cur.neginf_count),
    ):
        if a != b:
            tally.fail(path, f"{label} count {a} -> {b}")


def _tally_stats(
    tally: Tally, ref: ArraySummary, cur: ArraySummary, rtol: float, atol: float, path: str
) -> None:
    if ref.min is None or ref.max is None or cur.min is None or cur.max is None:
        if (ref.min is None) != (cur.min is None):
            tally.fail(path, "finite elements on one side only")
        return
    magnitude = max(abs(float(ref.min)), abs(float(ref.max)))
    slack = 1e-12 * magnitude  # float64 rounding of the statistics themselves
    spread = atol + rtol * magnitude + slack
    bounds = [
        ("min", float(ref.min), float(cur.min), spread),
        ("max", float(ref.max), float(cur.max), spread),
        ("std", ref.std, cur.std, spread),
        ("mean", ref.mean, cur.mean, atol + rtol * (ref.abs_mean or 0.0) + slack),
    ]
    for label, a, b, allowed in bounds:
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue  # a statistic that overflowed bounds nothing
        if math.isnan(allowed):
            continue  # neither does a bound that overflowed (abs_mean of ±1e308 values)
        moved = abs(b - a)
        if not moved <= allowed:
            tally.fail(
                path, f"{label} {a:.6g} -> {b:.6g}: moved {moved:.3g}, allowed {allowed:.3g}"
            )


def dtype_kind(dtype: str) -> str:
    """numpy's kind letter (f, c, u, i, b) of a dtype named as a result records it
    ("float32", ">f8", "float128", "longdouble"), or of a torch name ("bfloat16"); "o" for
    anything else ("<U5", "datetime64[s]"). Without numpy: summaries compare without it."""
    name = dtype.lstrip("<>=|")
    if name == "?" or (len(name) > 1 and name[0] in "fciub" and name[1:].isdigit()):
        return "b" if name[0] in "?b" else name[0]  # a type code: "f8", "i4", "b1"
    for prefix, letter in _KIND_PREFIXES:
        if name.startswith(prefix):
            return letter
    return "o"


_KIND_PREFIXES: tuple[tuple[str, str], ...] = (
    ("bfloat", "f"),
    ("float", "f"),
    ("longdouble", "f"),
    ("double", "f"),
    ("half", "f"),
    ("single", "f"),
    ("complex", "c"),
    ("clongdouble", "c"),
    ("uint", "u"),
    ("int", "i"),
    ("bool", "b"),
)


def sample_values(stored: Any, kind: str) -> tuple[SampleValue, ...] | None:
    """Sampled elements as a lock keeps them, decoded; a float kept as text (a long double)
    as a number. None where they hold complex numbers (no summary comparison for them)."""
    from reprokit.results.jsonvalue import decode_json

    values = []
    for item in stored:
        value = decode_json(item)
        if isinstance(value, (list, dict)):
            return None
        if kind == "f" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        values.append(value)
    return tuple(values)


def _location(path: str, shape: tuple[int, ...], flat: int) -> str:
    if not shape:
        return path
    index = []
    for extent in reversed(shape):
        flat, k = divmod(flat, extent) if extent else (flat, 0)
        index.append(k)
    return f"{path}[{', '.join(str(k) for k in reversed(index))}]"
