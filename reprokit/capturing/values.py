"""Content digests of in-memory values: ``"ALGO:HEX"``, identical in every process and run.

Never Python's ``hash()`` (salted per process), never ``id()``, never dict order.  A value
is turned into a self-delimiting byte string that is hashed (BLAKE3 by default).  Every
value starts with a one-byte type tag, so ``1``, ``1.0``, ``True``, ``"1"`` and ``b"1"``
all differ; ``N`` below is an unsigned 64-bit little-endian length or count.

==========================  ===========================================================
value                       encoding (version 1)
==========================  ===========================================================
``None``                    ``N``
``True`` / ``False``        ``T`` / ``F``
``int``                     ``i`` N, two's complement big-endian bytes (minimal length)
``float``                   ``f`` IEEE-754 binary64 big-endian; every NaN as ``7ff8…0``;
                            ``-0.0`` keeps its sign (it differs from ``0.0``)
``complex``                 ``c`` real and imaginary parts as two floats
``str``                     ``s`` N, UTF-8 (lone surrogates kept, "surrogatepass")
bytes-like                  ``b`` N, the bytes (``bytes``, ``bytearray``, ``memoryview``)
``list`` / ``tuple``        ``l`` / ``t`` N items, each item encoded
``dict``                    ``d`` N pairs sorted by the key's encoding: key, value
``set`` / ``frozenset``     ``S`` / ``Z`` N items sorted by their encoding
date/time, ``Decimal``      ``x`` N type name (``datetime.date``…), N ``isoformat()``/``str``
numpy array                 ``A`` dtype, shape, N bytes: C order, little-endian, NaNs
                            canonical (a complex number's parts one by one), a long
                            double's padding bytes zero; object arrays ``O`` shape,
                            then each element
numpy scalar                ``a`` as a 0-d array
torch tensor                ``P`` dtype (``torch.bfloat16``…), shape, N bytes (detached,
                            on CPU, contiguous, NaNs canonical)
pandas Index/Series/Frame   ``I`` / ``Q`` / ``R``: names, index, columns, dtypes, values
==========================  ===========================================================

A dtype is N + its numpy ``dtype.str`` (or ``descr`` for structured dtypes), a shape is
N dimensions then N per dimension.  numpy, torch and pandas are imported only when the
value is one of theirs (``type(value).__module__``).  Anything else raises
:class:`~reprokit.exceptions.UnhashableValueError` naming the type and where it sits
(``$["a"][2]``).
"""

from __future__ import annotations

import datetime
import decimal
import json
import struct
import sys
from collections.abc import Callable
from typing import Any

from reprokit.capturing._filehash import Hasher, new_hasher
from reprokit.exceptions import UnhashableValueError, UsageError

__all__ = ["ArrayHasher", "hash_value"]

_U64 = struct.Struct("<Q").pack
_F64 = struct.Struct(">d").pack
_NAN = bytes.fromhex("7ff8000000000000")
_FLUSH_AT = 1 << 16

Where = tuple[Any, ...]  # (parent, step): a linked list, formatted only on error


class Sink:
    """Collects encoded bytes, feeding a hasher in 64 KiB batches (or keeping them)."""

    def __init__(self, hasher: Hasher | None = None) -> None:
        self.hasher = hasher
        self.buf = bytearray()

    def add(self, data: bytes) -> None:
        self.buf += data
        if self.hasher is not None and len(self.buf) >= _FLUSH_AT:
            self.flush()

    def add_sized(self, data: bytes | memoryview) -> None:
        """N then the bytes; large buffers go straight to the hasher, uncopied."""
        self.buf += _U64(len(data) if isinstance(data, bytes) else data.nbytes)
        if self.hasher is None or len(data) < _FLUSH_AT:
            self.buf += data
        else:
            self.flush()
            self.hasher.update(data)

    def add_text(self, text: str) -> None:
        self.add_sized(text.encode("utf-8", "surrogatepass"))

    def flush(self) -> None:
        if self.hasher is not None and self.buf:
            self.hasher.update(self.buf)
            self.buf = bytearray()

    def value(self) -> bytes:
        return bytes(self.buf)


def padding(dtype: Any) -> int:
    """Bytes of each real number of ``dtype`` that hold nothing: the x87 80-bit long double
    (Linux and macOS on x86) is stored in 12 or 16 bytes whose last 2 or 6 are left as they
    were (two equal arrays can differ there); 0 for every other type."""
    if dtype.kind not in "fc":
        return 0
    np = sys.modules["numpy"]
    width = dtype.itemsize // (2 if dtype.kind == "c" else 1)
    extended = width in (12, 16) and np.finfo(dtype).nmant == 63
    return width - 10 if extended else 0


def hash_value(value: Any, *, algorithm: str = "blake3") -> str:
    """``"ALGO:HEX"`` digest of ``value`` by content, type, dtype and shape (see above)."""
    from reprokit.capturing.hashing import SUPPORTED_ALGORITHMS

    name = algorithm.lower()
    if name not in SUPPORTED_ALGORITHMS:
        raise UsageError(
            f"unknown hash algorithm {algorithm!r}; choose one of {', '.join(SUPPORTED_ALGORITHMS)}"
        )
    hasher = new_hasher(name, threads=False)
    sink = Sink(hasher)
    encode(value, sink, (), set())
    sink.flush()
    return f"{name}:{hasher.hexdigest()}"


class ArrayHasher:
    """The digest :func:`hash_value` gives a numpy array (not an object array), computed from
    its elements fed block by block in C order: the array is never canonicalised (byte order,
    NaN bits) or copied whole.

    ``legacy``: the digest reprokit 0.1.0 gave instead, which took a complex number with a NaN
    in either part as NaN + 0j (so it changes only for such an array); an array file recorded
    then is checked against it."""

    def __init__(
        self, array: Any, *, algorithm: str = "blake3", threads: bool = False, legacy: bool = False
    ) -> None:
        from reprokit.capturing._valuetypes import array_head

        if array.dtype.hasobject:
            raise TypeError("an object array is hashed element by element: use hash_value")
        self._algorithm = algorithm
        self._legacy = legacy
        self._hasher = new_hasher(algorithm, threads=threads)
        self._expected = int(array.size) * array.dtype.itemsize
        self._fed = 0
        self._hasher.update(array_head(array))

    def update(self, block: Any, *, canonical: bool = False) -> None:
        """Feed the next elements (taken in C order). ``canonical``: the caller knows they are
        little-endian, C-contiguous and hold no NaN, which skips the checks."""
        from reprokit.capturing._valuetypes import canonical_block, legacy_block

        if self._legacy:
            block = legacy_block(block)
        elif not canonical:
            block = canonical_block(block)
        data = memoryview(block.reshape(-1).view(sys.modules["numpy"].uint8))
        self._fed += data.nbytes
        self._hasher.update(data)

    def hexdigest(self) -> str:
        """``"ALGO:HEX"``; ValueError unless exactly the array's bytes were fed."""
        if self._fed != self._expected:
            raise ValueError(f"fed {self._fed} bytes of an array of {self._expected}")
        return f"{self._algorithm}:{self._hasher.hexdigest()}"


def encode_bytes(value: Any, where: Where, active: set[int]) -> bytes:
    """The encoding of ``value`` as bytes (for sorting dict keys and set items)."""
    sink = Sink()
    encode(value, sink, where, active)
    return sink.value()


def encode(value: Any, sink: Sink, where: Where, active: set[int]) -> None:
    """Append the encoding of ``value`` to ``sink``."""
    simple = _SIMPLE.get(type(value))
    if simple is not None:
        simple(value, sink)
        return
    container = _CONTAINERS.get(type(value))
    if container is None:
        _encode_other(value, sink, where, active)
    else:
        _encode_container(container, value, sink, where, active)


def _encode_container(
    container: Callable[[Any, Sink, Where, set[int]], None],
    value: Any,
    sink: Sink,
    where: Where,
    active: set[int],
) -> None:
    key = id(value)
    if key in active:
        raise UnhashableValueError(f"recursive {type(value).__name__}", format_where(where))
    active.add(key)
    try:
        container(value, sink, where, active)
    finally:
        active.discard(key)


def _encode_other(value: Any, sink: Sink, where: Where, active: set[int]) -> None:
    module = type(value).__module__.partition(".")[0]
    if module in ("numpy", "torch", "pandas"):
        from reprokit.capturing import _valuetypes

        if _valuetypes.encode_foreign(module, value, sink, where, active):
            return
    for kind, handler in _SUBCLASSES:  # subclasses of builtins: IntEnum, OrderedDict, ...
        if isinstance(value, kind):
            if handler is None:
                _encode_container(_CONTAINERS[kind], value, sink, where, active)
            else:
                handler(value, sink)
            return
    raise UnhashableValueError(_type_name(value), format_where(where))


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def format_where(where: Where) -> str:
    steps: list[str] = []
    while where:
        where, step = where
        steps.append(step)
    return "$" + "".join(reversed(steps))


def step_key(key: Any) -> str:
    text = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)
    return f"[{text}]"


# -- builtins ----------------------------------------------------------------------------


def _none(_value: None, sink: Sink) -> None:
    sink.add(b"N")


def _bool(value: bool, sink: Sink) -> None:
    sink.add(b"T" if value else b"F")


def _int(value: int, sink: Sink) -> None:
    data = int(value).to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
    sink.add(b"i" + _U64(len(data)) + data)


def _float_bytes(value: float) -> bytes:
    return _F64(value) if value == value else _NAN


def _float(value: float, sink: Sink) -> None:
    sink.add(b"f" + _float_bytes(value))


def _complex(value: complex, sink: Sink) -> None:
    sink.add(b"c" + _float_bytes(value.real) + _float_bytes(value.imag))


def _str(value: str, sink: Sink) -> None:
    sink.add(b"s")
    sink.add_text(value)


def _bytes(value: bytes | bytearray | memoryview, sink: Sink) -> None:
    sink.add(b"b")
    if isinstance(value, memoryview):
        value = value.cast("B") if value.c_contiguous else memoryview(value.tobytes())
    sink.add_sized(bytes(value) if isinstance(value, bytearray) else value)


def _stamp(value: Any, sink: Sink) -> None:
    kind = type(value)
    for base in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta):
        if isinstance(value, base):
            kind = base
            break
    text = str(value) if isinstance(value, (decimal.Decimal, datetime.timedelta)) else None
    sink.add(b"x")
    sink.add_text(f"{kind.__module__}.{kind.__qualname__}")
    sink.add_text(text if text is not None else value.isoformat())


_SIMPLE: dict[type, Callable[[Any, Sink], None]] = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    complex: _complex,
    str: _str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    datetime.datetime: _stamp,
    datetime.date: _stamp,
    datetime.time: _stamp,
    datetime.timedelta: _stamp,
    decimal.Decimal: _stamp,
}


def _sequence(tag: bytes) -> Callable[[Any, Sink, Where, set[int]], None]:
    def encode_items(value: Any, sink: Sink, where: Where, active: set[int]) -> None:
        sink.add(tag + _U64(len(value)))
        for index, item in enumerate(value):
            encode(item, sink, (where, f"[{index}]"), active)

    return encode_items


def _dict(value: dict[Any, Any], sink: Sink, where: Where, active: set[int]) -> None:
    pairs = [(encode_bytes(k, (where, step_key(k)), active), k) for k in value]
    pairs.sort(key=lambda pair: pair[0])
    sink.add(b"d" + _U64(len(pairs)))
    for encoded, key in pairs:
        sink.add(encoded)
        encode(value[key], sink, (where, step_key(key)), active)


def _set(tag: bytes) -> Callable[[Any, Sink, Where, set[int]], None]:
    def encode_items(value: Any, sink: Sink, where: Where, active: set[int]) -> None:
        items = sorted(encode_bytes(item, (where, "{…}"), active) for item in value)
        sink.add(tag + _U64(len(items)))
        for item in items:
            sink.add(item)

    return encode_items


_CONTAINERS: dict[type, Callable[[Any, Sink, Where, set[int]], None]] = {
    list: _sequence(b"l"),
    tuple: _sequence(b"t"),
    dict: _dict,
    set: _set(b"S"),
    frozenset: _set(b"Z"),
}

# isinstance fallbacks, most specific first (bool before int)
_SUBCLASSES: tuple[tuple[type, Callable[[Any, Sink], None] | None], ...] = (
    (bool, _bool),
    (int, _int),
    (float, _float),
    (complex, _complex),
    (str, _str),
    (bytes, _bytes),
    (bytearray, _bytes),
    (datetime.datetime, _stamp),
    (datetime.date, _stamp),
    (datetime.time, _stamp),
    (datetime.timedelta, _stamp),
    (decimal.Decimal, _stamp),
    (tuple, None),
    (list, None),
    (dict, None),
    (frozenset, None),
    (set, None),
)
