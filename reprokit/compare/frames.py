"""``compare_frames`` / ``compare_series``: pandas objects, structure first, then values.

Order of checks for a DataFrame: columns (matched by label; a missing or unexpected column is
a difference, a changed order is reported and keeps the status from ``reproduced``), then the
index (labels compared exactly with ``Index.equals``; with a different length the values are
not compared, with the same length they are compared by position), then each column:

- numeric columns (numpy or nullable ``Int64``/``Float64``; NA as NaN) follow the array rules:
  floats within tolerance, integers exactly;
- every other column (bool, strings, categories, datetimes, objects) exactly, NA equal to NA.

A dtype change (``float64`` → ``float32``, ``int64`` → ``Int64``) is reported like an array's.
Element locations are row positions: ``$["loss"].iloc[4]``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from reprokit.compare._tally import Tally, run_tally, short
from reprokit.compare.arrays import tally_arrays
from reprokit.comparison import EXACT, Tolerance, ValueComparison

__all__ = ["compare_frames", "compare_series", "tally_frames", "tally_series"]


def compare_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tolerance: Tolerance | None = None,
    *,
    strict_types: bool = False,
    path: str = "$",
) -> ValueComparison:
    """Compare two DataFrames: columns, index, then values column by column."""
    return run_tally(
        tally_frames, reference, current, tolerance, strict_types=strict_types, path=path
    )


def compare_series(
    reference: pd.Series,
    current: pd.Series,
    tolerance: Tolerance | None = None,
    *,
    strict_types: bool = False,
    path: str = "$",
) -> ValueComparison:
    """Compare two Series: name (a change is noted, not a failure), index, then values."""
    return run_tally(
        tally_series, reference, current, tolerance, strict_types=strict_types, path=path
    )


def tally_series(tally: Tally, ref: pd.Series, cur: pd.Series, tol: Tolerance, path: str) -> None:
    if not _same_label(ref.name, cur.name):  # metadata: said, and never "reproduced"
        tally.note(f"name {short(ref.name)} -> {short(cur.name)}")
    if _tally_index(tally, ref.index, cur.index, path):
        _tally_column(tally, ref, cur, tol, path)


def tally_frames(
    tally: Tally, ref: pd.DataFrame, cur: pd.DataFrame, tol: Tolerance, path: str
) -> None:
    _note_names(tally, "columns", ref.columns, cur.columns)
    ref_keys, cur_keys = _column_keys(ref.columns), _column_keys(cur.columns)
    cur_pos = {key: pos for pos, key in enumerate(cur_keys)}
    same_rows = _tally_index(tally, ref.index, cur.index, path)
    for pos, key in enumerate(ref_keys):
        col_path = f"{path}[{_label(key[0])}]"
        if key not in cur_pos:
            tally.total += max(len(ref), 1)
            tally.mismatch(col_path, "column missing in current", max(len(ref), 1))
        elif same_rows:
            _tally_column(tally, ref.iloc[:, pos], cur.iloc[:, cur_pos[key]], tol, col_path)
    known = set(ref_keys)
    for key in cur_keys:
        if key not in known:
            tally.total += max(len(cur), 1)
            tally.mismatch(f"{path}[{_label(key[0])}]", "unexpected column", max(len(cur), 1))
    common_ref = [k for k in ref_keys if k in cur_pos]
    common_cur = [k for k in cur_keys if k in known]
    if common_ref != common_cur:
        tally.note(f"column order changed: {_labels(common_ref)} -> {_labels(common_cur)}")


def _column_keys(columns: pd.Index) -> list[tuple[Any, int]]:
    """(label, occurrence): duplicate labels pair up in order."""
    seen: dict[Any, int] = {}
    keys = []
    for label in columns:
        key = label if _hashable(label) else repr(label)
        seen[key] = seen.get(key, -1) + 1
        keys.append((key, seen[key]))
    return keys


def _hashable(label: Any) -> bool:
    try:
        hash(label)
    except TypeError:
        return False
    return True


def _label(label: Any) -> str:
    return json.dumps(label, ensure_ascii=False) if isinstance(label, str) else short(label)


def _labels(keys: list[tuple[Any, int]], limit: int = 6) -> str:
    shown = ", ".join(_label(k[0]) for k in keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"


def _tally_index(tally: Tally, ref: pd.Index, cur: pd.Index, path: str) -> bool:
    """Index labels must be equal (a change of the index's name is noted); True when the
    values can still be compared by position."""
    _note_names(tally, "index", ref, cur)
    if ref.equals(cur):
        return True
    if len(ref) != len(cur):
        tally.total += max(len(ref), len(cur))
        tally.fail(f"{path}.index", f"index length {len(ref)} -> {len(cur)}")
        return False
    first = next(i for i, (a, b) in enumerate(zip(ref, cur, strict=True)) if not _same_label(a, b))
    note = f"index label {short(cur[first])}, reference {short(ref[first])}"
    tally.fail(f"{path}.index[{first}]", note)
    return True


def _note_names(tally: Tally, what: str, ref: pd.Index, cur: pd.Index) -> None:
    """Note a renamed index or columns axis (``epoch`` -> ``step``): metadata, not values."""
    before, after = list(ref.names), list(cur.names)
    if len(before) != len(after) or not all(map(_same_label, before, after)):
        shown = [short(n) for n in before], [short(n) for n in after]
        tally.note(f"{what} name {', '.join(shown[0])} -> {', '.join(shown[1])}")


def _same_label(a: Any, b: Any) -> bool:
    if pd.isna(a) is True and pd.isna(b) is True:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _tally_column(tally: Tally, ref: pd.Series, cur: pd.Series, tol: Tolerance, path: str) -> None:
    names = (str(ref.dtype), str(cur.dtype))
    if names[0] != names[1]:
        tally.change(dtype_change=names)
    at = f"{path}.iloc"
    rk, ck = _column_kind(ref), _column_kind(cur)
    if rk == ck == "numpy":
        tally_arrays(tally, ref.to_numpy(), cur.to_numpy(), tol, at)
    elif rk != "other" and ck != "other":
        integers = pd.api.types.is_integer_dtype(ref.dtype) and pd.api.types.is_integer_dtype(
            cur.dtype
        )
        tally_arrays(tally, _as_float(ref), _as_float(cur), EXACT if integers else tol, at)
    elif (rk == "other") == (ck == "other") or _ints_against_numbers(ref, cur):
        _tally_exact(tally, ref, cur, at)
    else:
        tally.total += len(ref)
        tally.fail(path, f"a {names[0]} column cannot be compared with a {names[1]} column")


def _ints_against_numbers(ref: pd.Series, cur: pd.Series) -> bool:
    """A nullable integer column kept as Python ints (it held one that float64 cannot, see
    ``reprokit.results.encode``) against a numeric one: compared exactly, element by element
    (``2**53 + 1`` is not ``2.0**53``), not refused as another kind of column."""
    objects, numbers = (ref, cur) if ref.dtype == object else (cur, ref)
    if objects.dtype != object or _column_kind(numbers) != "numpy" or numbers.dtype.kind == "b":
        return False
    return all(type(v) is int for v in objects.dropna())


def _column_kind(column: pd.Series) -> str:
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        return "numpy"
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "other"
    return "nullable"


def _as_float(column: pd.Series) -> Any:
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


class _Missing:
    """NA of any flavour, made equal to itself (``pd.NA == pd.NA`` is not a bool)."""

    def __repr__(self) -> str:
        return "<NA>"


_NA = _Missing()


def _tally_exact(tally: Tally, ref: pd.Series, cur: pd.Series, at: str) -> None:
    """Element equality on object arrays; NA (None, NaN, NaT, pd.NA) equals NA."""
    ra, ca = ref.to_numpy(dtype=object, copy=True), cur.to_numpy(dtype=object, copy=True)
    ra[ref.isna().to_numpy()] = _NA
    ca[cur.isna().to_numpy()] = _NA
    equal = _elementwise_equal(ra, ca)
    tally.total += len(ra)
    bad = len(ra) - int(np.count_nonzero(equal))
    if bad:
        first = int(np.argmin(equal))
        note = f"current {short(ca[first])}, reference {short(ra[first])}"
        tally.mismatch(f"{at}[{first}]", note, bad)


def _elementwise_equal(ra: Any, ca: Any) -> Any:
    try:
        equal = ra == ca
        if isinstance(equal, np.ndarray) and equal.dtype == np.bool_:
            return equal
    except (TypeError, ValueError):  # an element whose == is not a bool (an array, pd.NA)
        pass
    return np.fromiter((_same_label(a, b) for a, b in zip(ra, ca, strict=True)), np.bool_, len(ra))
