"""Python values → :class:`~reprokit.results.model.Result`, and back.

Types are recognised without importing their libraries: numpy, torch and pandas objects can
only exist if the notebook imported them, so ``sys.modules`` tells whether to look. A type
reprokit does not know goes to a ``reprokit.comparators`` plugin, if one declares it.
"""

from __future__ import annotations

import math
import numbers
import re
import reprlib
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reprokit.exceptions import TEXT_NOT_UNICODE, InputError, ResultValueError, UsageError
from reprokit.results.arrays import ArrayWriter, encode_array, load_array
from reprokit.results.jsonvalue import (
    check_text,
    decode_json,
    encode_float,
    encode_int,
    encode_json,
    type_name,
)
from reprokit.results.model import INLINE_LIMIT_BYTES, ArrayData, Column, Result

_ROW = re.compile(r"^\[(\d+)\]")  # the first step into a column's elements: its row position

if TYPE_CHECKING:
    import os

    import numpy as np


def encode_result(
    name: str,
    value: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    device_rtol: float | None = None,
    device_atol: float | None = None,
    writer: ArrayWriter | None = None,
    inline_limit: int = INLINE_LIMIT_BYTES,
) -> Result:
    """Describe ``value`` as a Result named ``name``.

    Raises :class:`ResultValueError` (naming the result, the type and where inside the value)
    for a type that cannot be recorded, and ``UsageError`` for a bad name or tolerance.
    """
    _check_name(name)
    rtol, atol = _check_tol(name, "rtol", rtol), _check_tol(name, "atol", atol)
    device_rtol = _check_tol(name, "device_rtol", device_rtol)
    device_atol = _check_tol(name, "device_atol", device_atol)
    scalar = _encode_scalar(value, name)
    if scalar is not None:
        kind, encoded = scalar
        encoded = encode_int(encoded, name=name) if kind == "int" else encoded
        found = Result(name, kind, encoded, type_name=type_name(value), rtol=rtol, atol=atol)
    else:
        parts = _encode_structured(name, value, writer, inline_limit)
        found = Result(name=name, type_name=type_name(value), rtol=rtol, atol=atol, **parts)
    return replace(found, device_rtol=device_rtol, device_atol=device_atol)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"a result name must be a non-empty string, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # the notebook and the lock are UTF-8
        raise UsageError(f"a result name must be valid Unicode text, got {name!r}") from None


def _check_tol(name: str, field: str, tol: float | None) -> float | None:
    if tol is None:
        return None
    value = _finite_real(tol)
    if value is None or value < 0:
        raise UsageError(
            f"result {name!r}: {field} must be a finite number >= 0, got {reprlib.repr(tol)}",
            option=field,
            names=(name,),
        )
    return value


def _finite_real(number: object) -> float | None:
    """``number`` as a finite float: a real number (a numpy scalar, a Fraction) but no bool;
    None for anything else. JSON has no infinity: an infinite tolerance made the notebook's
    result output, and so every result of the notebook, unreadable (and an int too large for
    a float is infinite)."""
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        return None  # numpy's bool is no numbers.Real
    narrow = not isinstance(number, numbers.Integral) and getattr(number, "itemsize", 8) < 8
    try:  # a float32's shortest text, as it was typed: 0.001, not 0.0010000000474974513
        value = float(str(number) if narrow else number)
    except (OverflowError, ValueError, TypeError):  # an int beyond the float range
        return None
    return value if math.isfinite(value) else None


def _encode_scalar(value: Any, name: str) -> tuple[str, Any] | None:
    if value is None:
        return "none", None
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float):
        return "float", encode_float(value)
    if isinstance(value, str):
        check_text(value, name=name)
        return "str", value
    return None


def _encode_structured(
    name: str, value: Any, writer: ArrayWriter | None, inline_limit: int
) -> dict[str, Any]:
    if isinstance(value, (list, tuple, dict)):
        return {"kind": "json", "value": encode_json(value, name=name)}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _encode_tensor(name, value, writer, inline_limit)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.Series):
        return _encode_series(name, value, writer, inline_limit)
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return _encode_frame(name, value, writer, inline_limit)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ma.MaskedArray):
        raise ResultValueError(  # its mask would be lost: the statistics would count masked data
            name, "numpy.ma.MaskedArray (record m.filled(np.nan) or m.compressed(), and m.mask)"
        )
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return _encode_numpy(name, value, writer, inline_limit)
    from reprokit.results.plugged import encode_with_plugin  # built-in types always win

    plugged = encode_with_plugin(name, value)
    if plugged is None:
        raise ResultValueError(name, type_name(value))
    return plugged


def _encode_numpy(
    name: str,
    value: Any,
    writer: ArrayWriter | None,
    inline_limit: int,
    *,
    device: str | None = None,
    source_dtype: str | None = None,
) -> dict[str, Any]:
    if value.shape == () and value.dtype.kind in "biufU":
        # numpy scalars and 0-d arrays (a loss, an accuracy) are scalars: they become metrics
        scalar = _encode_scalar(value.item(), name)
        if scalar is not None:
            kind, encoded = scalar
            return {"kind": kind, "value": encoded, "dtype": str(value.dtype), "device": device}
    if value.dtype.kind == "V" or (value.dtype.kind == "O" and value.shape == ()):
        raise ResultValueError(name, f"{type_name(value)} of dtype {value.dtype}")
    if value.dtype.kind == "U":
        _check_texts(name, value)
    array = encode_array(value, name=name, stem=name, writer=writer, inline_limit=inline_limit)
    if source_dtype is not None:
        array = replace(array, source_dtype=source_dtype)
    return {"kind": "array", "array": array, "device": device}


def _check_texts(name: str, array: np.ndarray) -> None:
    """Refuse a str array holding a lone surrogate (see ``check_text``), naming the first."""
    import numpy as np

    width = array.dtype.itemsize // 4  # UTF-32: one code point in 4 bytes
    if not array.size or not width:
        return
    codes = np.ascontiguousarray(array).reshape(-1).view(np.uint32)
    found = np.flatnonzero((codes >= 0xD800) & (codes <= 0xDFFF))
    if found.size:
        position = np.unravel_index(int(found[0]) // width, array.shape)
        where = "".join(f"[{int(i)}]" for i in position)
        raise ResultValueError(name, TEXT_NOT_UNICODE, where)


def _encode_tensor(
    name: str, tensor: Any, writer: ArrayWriter | None, inline_limit: int
) -> dict[str, Any]:
    try:
        array, source_dtype = tensor_values(tensor)
    except (TypeError, RuntimeError, NotImplementedError) as exc:  # nested, meta, ...
        why = str(exc).splitlines()[0] if str(exc) else f"{tensor.layout}, {tensor.dtype}"
        raise ResultValueError(name, f"torch.Tensor ({why})") from None
    return _encode_numpy(
        name, array, writer, inline_limit, device=str(tensor.device), source_dtype=source_dtype
    )


def tensor_values(tensor: Any) -> tuple[np.ndarray, str | None]:
    """A tensor's values as a numpy array on the host, and the tensor's dtype where numpy has
    none to keep it in: a quantized tensor dequantized, a sparse one made dense, bfloat16 and
    float8 widened to float32, complex32 to complex64. TypeError for a tensor without
    values (on the ``meta`` device)."""
    import torch

    values = tensor.detach()
    if values.device.type == "meta":
        raise TypeError("a tensor on the meta device holds no values")
    if values.is_nested:
        raise TypeError("a nested tensor: record its tensors one by one")
    source_dtype = str(values.dtype) if values.is_quantized else None
    if values.is_quantized:
        values = values.dequantize()
    if values.layout != torch.strided:
        values = values.to_dense()
    values = values.cpu().resolve_conj().resolve_neg()
    if values.dtype.is_floating_point and values.dtype not in _numpy_floats(torch):
        source_dtype, values = str(values.dtype), values.float()  # bfloat16, float8
    elif values.dtype == torch.complex32:
        source_dtype, values = str(values.dtype), values.to(torch.complex64)
    return values.numpy(), source_dtype


def _numpy_floats(torch: Any) -> tuple[Any, ...]:
    return (torch.float16, torch.float32, torch.float64)


def _series_values(series: Any) -> np.ndarray:
    """Values as numpy; nullable extension dtypes become float with NaN, or object with None;
    tz-aware datetimes ISO 8601 text with their offset (``2024-01-01T01:00:00+01:00``: numpy's
    datetimes have no time zone), compared exactly."""
    import numpy as np

    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        return np.asarray(series.to_numpy())
    if _tz_aware(series):
        texts = [None if t is None else t.isoformat() for t in _timestamps(series)]
        return np.asarray(texts, dtype=object)  # JSON in the lock, NaT as null
    kind = getattr(dtype, "kind", "O")
    if kind in "iufb" and series.hasnans:
        if kind in "iu" and _beyond_float(series.dropna().to_numpy(dtype=dtype.numpy_dtype)):
            return np.asarray(series.to_numpy(dtype=object, na_value=None))  # Python ints
        return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan))
    if kind in "iufb":
        return np.asarray(series.to_numpy(dtype=getattr(dtype, "numpy_dtype", None)))
    return np.asarray(series.to_numpy(dtype=object, na_value=None))


def _beyond_float(values: np.ndarray) -> bool:
    """Whether an integer of ``values`` is not exactly a float64 (beyond ±2**53 and odd
    there): a nullable integer column with one is kept exactly, not as floats."""
    big = values[(values > 2**53) | (values < -(2**53))]
    return any(int(float(v)) != v for v in big.tolist())


def _tz_aware(series: Any) -> bool:
    return isinstance(series.dtype, sys.modules["pandas"].DatetimeTZDtype)


def _timestamps(series: Any) -> list[Any]:
    """The series' timestamps, NaT as None."""
    return [None if t is sys.modules["pandas"].NaT else t for t in series]


def _encode_column(
    name: str,
    series: Any,
    stem: str,
    writer: ArrayWriter | None,
    limit: int,
    label: str,
    dtype: Any = None,
) -> ArrayData:
    """One Series, a DataFrame column or an index as an array; a refusal says where (``label``:
    ``column 't'``, ``index``; empty for a Series). ``dtype``: the declared one, where it is
    not the Series' (an index's: ``to_series`` may infer another)."""
    try:
        return encode_array(
            _series_values(series),
            name=name,
            stem=stem,
            writer=writer,
            source_dtype=pandas_dtype_name(series.dtype if dtype is None else dtype),
            inline_limit=limit,
        )
    except ResultValueError as exc:
        where = _ROW.sub(r"row \1", exc.where, count=1)
        raise ResultValueError(name, exc.type_name, f"{label} {where}".strip()) from None


def pandas_dtype_name(dtype: Any) -> str:
    """The dtype as pandas declares it (``int64``, ``Int64``, ``string``, ``datetime64[ns,
    UTC]``); a categorical with its categories and order (``category(['a', 'b'], ordered)``),
    or, when they are long, their count and a digest of them."""
    pandas = sys.modules["pandas"]
    if not isinstance(dtype, pandas.CategoricalDtype):
        return str(dtype)
    categories = dtype.categories
    listed = repr(categories.tolist())
    if len(listed) > _CATEGORIES_SHOWN:
        import hashlib

        digest = hashlib.blake2b(listed.encode("utf-8", "backslashreplace"), digest_size=6)
        listed = f"{len(categories)} categories {digest.hexdigest()}"
    ordered = ", ordered" if dtype.ordered else ""
    return f"category({listed}{ordered})"


_CATEGORIES_SHOWN = 120  # characters: longer category lists are named by count and digest


def axis_names(axis: Any) -> tuple[str | None, ...] | None:
    """An index's or columns axis's level names, as text; None for one unnamed level."""
    names = tuple(None if n is None else str(n) for n in axis.names)
    return None if names == (None,) else names


def _encode_index(name: str, index: Any, writer: ArrayWriter | None, limit: int) -> Any:
    pandas = sys.modules["pandas"]
    if isinstance(index, pandas.RangeIndex) and index.start == 0 and index.step == 1:
        return None  # the default index: nothing to record
    if index.dtype == object:  # before to_series, whose inferred str dtype fails on them
        _check_labels(name, (label for label in index if isinstance(label, str)), "index label")
    series = index.to_series()
    return _encode_column(name, series, f"{name}.index", writer, limit, "index", index.dtype)


def _encode_series(
    name: str, series: Any, writer: ArrayWriter | None, limit: int
) -> dict[str, Any]:
    _check_labels(name, [series.name], "Series name")
    _check_labels(name, series.index.names, "index name")
    return {
        "kind": "series",
        "array": _encode_column(name, series, name, writer, limit, ""),
        "index": _encode_index(name, series.index, writer, limit),
        "index_names": axis_names(series.index),
        "value": None if series.name is None else str(series.name),
    }


def _encode_frame(name: str, frame: Any, writer: ArrayWriter | None, limit: int) -> dict[str, Any]:
    _check_labels(name, frame.columns, "column")
    _check_labels(name, [*frame.index.names, *frame.columns.names], "axis name")
    columns = []
    for position, label in enumerate(frame.columns):
        column = frame.iloc[:, position]
        where = f"column {str(label)!r}"
        data = _encode_column(name, column, f"{name}.{label}", writer, limit, where)
        columns.append(Column(name=str(label), data=data))
    return {
        "kind": "dataframe",
        "columns": tuple(columns),
        "index": _encode_index(name, frame.index, writer, limit),
        "index_names": axis_names(frame.index),
        "columns_names": axis_names(frame.columns),
    }


def _check_labels(name: str, labels: Any, what: str) -> None:
    """Refuse a label or axis name kept as text that UTF-8 cannot write (see ``check_text``)."""
    for label in labels:
        if label is not None:
            check_text(str(label), name=name, where=f"{what} {str(label)!r}")


def decode_result(result: Result, *, base: str | os.PathLike[str] | None = None) -> Any:
    """The value a Result describes: Python scalars/containers, numpy arrays, pandas objects;
    for a ``plugin`` result, a :class:`~reprokit.results.plugged.PluginValue` (the payload).

    Scalars that came from numpy or torch come back as numpy scalars of the recorded dtype;
    tensors come back as numpy arrays. ``base`` locates by-reference arrays (see
    :func:`~reprokit.results.arrays.load_array`).
    """
    if result.kind in ("none", "bool", "int", "str", "float", "json"):
        value = decode_json(result.value)
        return _as_dtype(value, result.dtype) if result.dtype else value
    if result.kind == "array" and result.array is not None:
        return load_array(result.array, base=base)
    if result.kind == "plugin":
        from reprokit.results.plugged import PluginValue

        return PluginValue(result.plugin or "", decode_json(result.value))
    import pandas as pd

    index = _decoded_index(result, base)
    if result.kind == "series" and result.array is not None:
        name = decode_json(result.value)
        if isinstance(name, (list, dict)):
            raise InputError(
                f"result {result.name!r}: a Series name cannot be {type(name).__name__}"
            )
        series = pd.Series(load_array(result.array, base=base), index=index, name=name)
        return _named_axis(series, "index", result.index_names)
    if result.kind == "dataframe":
        # by position: labels may repeat (two columns "a", or 0 and "0", both kept as "0")
        data = {k: load_array(c.data, base=base) for k, c in enumerate(result.columns)}
        frame = pd.DataFrame(data, index=index)
        frame.columns = pd.Index([c.name for c in result.columns], dtype=object)
        frame = _named_axis(frame, "columns", result.columns_names)
        return _named_axis(frame, "index", result.index_names)
    raise UsageError(f"result {result.name!r}: unknown kind {result.kind!r}", names=(result.name,))


def _decoded_index(result: Result, base: str | os.PathLike[str] | None) -> Any:
    """The recorded index: a MultiIndex again where its levels were named (its labels are
    kept as lists); None for the default one."""
    if result.index is None:
        return None
    labels = load_array(result.index, base=base)
    names = result.index_names or ()
    if len(names) < 2:
        return labels
    import pandas as pd

    if any(not isinstance(label, (list, tuple)) or len(label) != len(names) for label in labels):
        raise InputError(
            f"result {result.name!r}: index_names has {len(names)} levels, the index's labels "
            f"are not {len(names)}-tuples"
        )
    return pd.MultiIndex.from_tuples([tuple(label) for label in labels], names=list(names))


def _named_axis(value: Any, axis: str, names: tuple[str | None, ...] | None) -> Any:
    """``value`` with its ``index`` or ``columns`` axis named as recorded (a MultiIndex is
    named as it is made; the columns of several levels are kept as one level of text)."""
    if names is None or len(names) != getattr(value, axis).nlevels:
        return value
    return value.rename_axis(list(names), axis=axis)


def _as_dtype(value: Any, dtype: str) -> Any:
    import numpy as np

    try:
        scalar = np.dtype(dtype).type
        return scalar(math.nan) if isinstance(value, float) and math.isnan(value) else scalar(value)
    except (TypeError, ValueError, OverflowError, SyntaxError) as exc:  # a lock one did not write
        raise InputError(f"a {dtype!r} scalar cannot hold {str(value)[:40]!r}: {exc}") from None
