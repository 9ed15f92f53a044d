"""Faithful JSON for result values: non-finite floats and ``$``-keys survive a round trip.

See :mod:`reprokit.results.model` for the encoding. Numpy scalars are accepted (as their
Python value) so ``[np.float32(0.5), 1]`` is a valid nested value; pandas' missing-value
markers (``pd.NA``, ``pd.NaT``) become ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from reprokit.exceptions import TEXT_NOT_UNICODE, InputError, ResultValueError

FLOAT_MARKER = "$float"
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Unsupported(Exception):
    """Internal: carries the offending type and path up to :func:`encode_json`."""

    def __init__(self, type_name: str, where: str) -> None:
        super().__init__(type_name, where)
        self.type_name = type_name
        self.where = where


class _Unwritable(Exception):
    """Internal: a value of a supported type that cannot be written (a cycle, nesting too deep,
    an int too long); carries why up to :func:`encode_json`."""


MAX_VALUE_DEPTH = 200
"""Deepest nesting of a result value (a lock holds at most 256 levels, the value's own
fields around it included)."""

MAX_INT_DIGITS = 4300
"""Longest int recorded: Python writes and reads no longer one as text (a lock refuses it)."""

_INT_LIMIT = 10**MAX_INT_DIGITS


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, *, name: str, where: str = "") -> None:
    """Raise :class:`ResultValueError` for text that holds a lone surrogate (``"\\ud800"``, as
    a bad decode leaves): UTF-8, which the notebook and the lock are written in, cannot hold it."""
    if not text.isascii() and _SURROGATE.search(text):
        raise ResultValueError(name, TEXT_NOT_UNICODE, where)


def type_name(value: object) -> str:
    """``float``, ``numpy.float32``, ``torch.Tensor``: the name a user recognises."""
    cls = type(value)
    module = cls.__module__.split(".")[0]
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def encode_float(value: float) -> Any:
    """A float as JSON: itself when finite, else the ``{"$float": ...}`` marker."""
    if math.isfinite(value):
        return value
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return {FLOAT_MARKER: text}


def encode_json(value: Any, *, name: str) -> Any:
    """Encode a nested value; :class:`ResultValueError` names the result, type and path, and
    :class:`~reprokit.exceptions.InputError` a value that holds itself, is nested more than
    :data:`MAX_VALUE_DEPTH` levels or holds an int of more than :data:`MAX_INT_DIGITS` digits."""
    try:
        return _encode(value, "", {})
    except _Unsupported as exc:
        raise ResultValueError(name, exc.type_name, exc.where) from None
    except _Unwritable as exc:
        raise InputError(f"result {name!r}: {exc}", name=name) from None


def _check_int(value: int, where: str = "") -> None:
    """Raise ``_Unwritable`` for an int too long to be written as text."""
    if -_INT_LIMIT < value < _INT_LIMIT:
        return
    place = f" at {where}" if where else ""
    raise _Unwritable(
        f"an int of more than {MAX_INT_DIGITS} digits{place} cannot be recorded "
        "(record it as a str, or its logarithm)"
    )


def encode_int(value: int, *, name: str) -> int:
    """``value`` itself; :class:`~reprokit.exceptions.InputError` when it is too long."""
    try:
        _check_int(value)
    except _Unwritable as exc:
        raise InputError(f"result {name!r}: {exc}", name=name) from None
    return value


def _encode(value: Any, where: str, above: dict[int, str]) -> Any:
    """``above``: the containers holding ``value``, by id, with their paths."""
    if isinstance(value, int) and not isinstance(value, bool):
        _check_int(value, where)
        return value
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise _Unsupported(TEXT_NOT_UNICODE, where or "the top level")
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return encode_float(value)
    if not isinstance(value, (list, tuple, Mapping)):
        return _encode_foreign(value, where, above)
    _enter(value, where, above)
    try:
        if isinstance(value, Mapping):
            return _encode_mapping(value, where, above)
        return [_encode(item, f"{where}[{i}]", above) for i, item in enumerate(value)]
    finally:
        del above[id(value)]


def _enter(container: Any, where: str, above: dict[int, str]) -> None:
    outer = above.get(id(container))
    if outer is not None:
        raise _Unwritable(
            f"the value holds itself: {where} is {outer or 'the whole value'} again (a cycle "
            "cannot be recorded)"
        )
    if len(above) >= MAX_VALUE_DEPTH:
        raise _Unwritable(f"nested more than {MAX_VALUE_DEPTH} levels (a lock could not hold it)")
    above[id(container)] = where


def _encode_mapping(value: Mapping[Any, Any], where: str, above: dict[int, str]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Unsupported(f"{type_name(key)} (dict key)", f"{where}[{key!r}]")
        if not key.isascii() and _SURROGATE.search(key):
            raise _Unsupported(f"{TEXT_NOT_UNICODE} (dict key)", f"{where}[{key!r}]")
        escaped = "$" + key if key.startswith("$") else key
        encoded[escaped] = _encode(item, f"{where}[{key!r}]", above)
    return encoded


def _encode_foreign(value: Any, where: str, above: dict[int, str]) -> Any:
    """Numpy scalars (by duck type, so numpy need not be imported) and pandas NA markers."""
    cls_name = type(value).__name__
    if cls_name in ("NAType", "NaTType"):
        return None
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return _encode(value.item(), where, above)
    raise _Unsupported(type_name(value), where or "the top level")


def decode_json(value: Any) -> Any:
    """Inverse of :func:`encode_json` (tuples come back as lists)."""
    if isinstance(value, list):
        return [decode_json(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and FLOAT_MARKER in value:
            return _special(value[FLOAT_MARKER])
        return {
            (key[1:] if key.startswith("$") else key): decode_json(item)
            for key, item in value.items()
        }
    return value


def _special(name: Any) -> float:
    """The float a ``{"$float": name}`` marker stands for; a value read from a file one did not
    write may hold anything there (:class:`~reprokit.exceptions.InputError`)."""
    if not isinstance(name, str) or name not in _SPECIAL:
        raise InputError(f"{FLOAT_MARKER} marker holds {str(name)[:40]!r}, not NaN or Infinity")
    return _SPECIAL[name]
