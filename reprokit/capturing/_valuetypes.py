"""Encodings of numpy, torch and pandas values for :mod:`reprokit.capturing.values`.

Imported only when a value of one of those libraries is met, and each library is taken
from ``sys.modules`` (it is necessarily imported already, since the value exists).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from reprokit.capturing.values import _U64, Sink, Where, encode, format_where, padding
from reprokit.exceptions import UnhashableValueError

_BIG_ENDIAN = sys.byteorder == "big"


def encode_foreign(module: str, value: Any, sink: Sink, where: Where, active: set[int]) -> bool:
    """Encode a numpy/torch/pandas value; False when it is none of the supported kinds."""
    if module == "numpy":
        return _numpy(value, sink, where, active)
    if module == "torch":
        return _torch(value, sink, where)
    return _pandas(value, sink, where, active)


def _shape(sink: Sink, shape: tuple[int, ...]) -> None:
    sink.add(_U64(len(shape)) + b"".join(_U64(int(n)) for n in shape))


# -- numpy -------------------------------------------------------------------------------


def _numpy(value: Any, sink: Sink, where: Where, active: set[int]) -> bool:
    np = sys.modules["numpy"]
    if isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            _array(np.ma.getdata(value), sink, where, active)
            _array(np.ma.getmaskarray(value), sink, where, active)
        else:
            _array(value, sink, where, active)
        return True
    if isinstance(value, np.generic):
        sink.add(b"a")
        _array(np.asarray(value), sink, where, active)
        return True
    return False


def _dtype_text(dtype: Any) -> str:
    return str(dtype.str) if dtype.fields is None else repr(dtype.descr)


def _array(arr: Any, sink: Sink, where: Where, active: set[int]) -> None:
    np = sys.modules["numpy"]
    if arr.dtype.hasobject:
        if arr.dtype.fields is not None:
            raise UnhashableValueError(
                "numpy structured array with object fields", format_where(where)
            )
        sink.add(b"O")
        _shape(sink, arr.shape)
        for index, item in enumerate(arr.ravel(order="C")):
            encode(item, sink, (where, f"[{index}]"), active)
        return
    arr = _canonical(np, arr)
    sink.add(b"A")
    sink.add_text(_dtype_text(arr.dtype))
    _shape(sink, arr.shape)
    sink.add_sized(memoryview(arr.reshape(-1).view(np.uint8)))


def array_head(arr: Any) -> bytes:
    """What precedes an array's element bytes in its encoding: tag, dtype, shape, byte count."""
    dtype = arr.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and _BIG_ENDIAN):
        dtype = dtype.newbyteorder("<")
    head = Sink()
    head.add(b"A")
    head.add_text(_dtype_text(dtype))
    _shape(head, tuple(arr.shape))
    head.add(_U64(int(arr.size) * dtype.itemsize))
    return head.value()


def canonical_block(arr: Any) -> Any:
    """``arr`` as its encoding holds it (see :func:`_canonical`), copied only where needed."""
    return _canonical(sys.modules["numpy"], arr)


def _canonical(np: Any, arr: Any) -> Any:
    """Little-endian, C-contiguous, every NaN the same bits (platforms differ on NaN signs),
    and a long double's padding bytes zero (see :func:`padding`)."""
    order = arr.dtype.byteorder
    if order == ">" or (order == "=" and _BIG_ENDIAN):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.kind in "fc" and arr.size:
        arr = _nans_canonical(np, arr)
    pad = padding(arr.dtype)
    if pad and arr.size:
        arr = np.array(arr, order="C")  # a copy: the caller's array is left as it is
        width = arr.dtype.itemsize // (2 if arr.dtype.kind == "c" else 1)
        arr.reshape(-1).view(np.uint8).reshape(-1, width)[:, width - pad :] = 0
    return np.ascontiguousarray(arr)


def _nans_canonical(np: Any, arr: Any) -> Any:
    """``arr`` with every NaN the same bits, copied only where it holds one. A complex
    number's parts are taken one by one: a NaN real part does not hide its imaginary part."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not np.isnan(arr).any():
            return arr
        arr = np.array(arr, order="C")  # a copy: the caller's array is left as it is
        parts = arr.reshape(-1).view(arr.real.dtype) if arr.dtype.kind == "c" else arr
        parts[np.isnan(parts)] = np.nan
    return arr


def legacy_block(arr: Any) -> Any:
    """``arr`` as reprokit 0.1.0's digests held it: a complex number with a NaN in either part
    as NaN + 0j, which hid the other part. Only to accept a digest recorded so."""
    np = sys.modules["numpy"]
    if arr.dtype.kind == "c" and arr.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nans = np.isnan(arr)
        if nans.any():
            arr = arr.copy()
            arr[nans] = np.nan
    return _canonical(np, arr)


# -- torch -------------------------------------------------------------------------------


def _torch(value: Any, sink: Sink, where: Where) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return False
    tensor = value.detach()
    if tensor.is_quantized or tensor.device.type == "meta":
        kind = "quantized" if tensor.is_quantized else "meta"
        raise UnhashableValueError(f"torch.Tensor ({kind})", format_where(where))
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    tensor = tensor.cpu().resolve_conj().resolve_neg()
    if (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel():
        tensor = _tensor_nans_canonical(torch, tensor)
    flat = tensor.contiguous().reshape(-1).view(torch.uint8)
    sink.add(b"P")
    sink.add_text(str(tensor.dtype))
    _shape(sink, tuple(tensor.shape))
    sink.add_sized(_tensor_bytes(flat))
    return True


def _tensor_nans_canonical(torch: Any, tensor: Any) -> Any:
    """``tensor`` with every NaN the same bits (a complex number's parts one by one, as for
    numpy), cloned only where it holds one."""
    parts = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    nans = torch.isnan(parts)
    if not bool(nans.any()):
        return tensor
    tensor = tensor.clone()
    parts = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    parts[nans] = float("nan")
    return tensor


def _tensor_bytes(flat: Any) -> memoryview:
    try:
        return memoryview(flat.numpy())
    except (RuntimeError, TypeError):  # torch without numpy
        return memoryview(bytes(flat.tolist()))


# -- pandas ------------------------------------------------------------------------------


def _pandas(value: Any, sink: Sink, where: Where, active: set[int]) -> bool:
    pd = sys.modules.get("pandas")
    if pd is None:
        return False
    if isinstance(value, pd.DataFrame):
        sink.add(b"R")
        _index(pd, value.columns, sink, (where, ".columns"), active)
        _index(pd, value.index, sink, (where, ".index"), active)
        sink.add(_U64(value.shape[1]))
        for position in range(value.shape[1]):
            column = value.iloc[:, position]
            _values(pd, column.array, column.dtype, sink, (where, f".iloc[:, {position}]"), active)
        return True
    if isinstance(value, pd.Series):
        sink.add(b"Q")
        encode(value.name, sink, (where, ".name"), active)
        _index(pd, value.index, sink, (where, ".index"), active)
        _values(pd, value.array, value.dtype, sink, where, active)
        return True
    if isinstance(value, pd.Index):
        _index(pd, value, sink, where, active)
        return True
    if value is pd.NA or value is pd.NaT:
        sink.add(b"n")
        sink.add_text(repr(value))
        return True
    return False


def _index(pd: Any, index: Any, sink: Sink, where: Where, active: set[int]) -> None:
    sink.add(b"I")
    encode(list(index.names), sink, (where, ".names"), active)
    _values(pd, index.array, index.dtype, sink, where, active)


def _values(pd: Any, array: Any, dtype: Any, sink: Sink, where: Where, active: set[int]) -> None:
    """A column's dtype, then its values: numpy-backed as arrays, extension types per item."""
    np = sys.modules["numpy"]
    sink.add_text(str(dtype))
    if isinstance(dtype, np.dtype):
        _array(np.asarray(array), sink, where, active)
    else:  # categorical, nullable integers, strings, tz-aware times, ...
        _array(np.asarray(array, dtype=object), sink, where, active)
