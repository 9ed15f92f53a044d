"""``compare_values``: any supported value against its reference, walked with an explicit stack.

Supported: None, bool, int, float, complex, str, bytes, set/frozenset, lists/tuples (one kind:
JSON cannot tell them apart), mappings, numpy arrays and scalars, torch tensors, pandas
Series/DataFrame/Index, nested in any way and to any depth (no recursion; a cycle is walked
once). A value of another type, as a whole, goes to the ``reprokit.comparators`` plugin that
declares its type (see :mod:`reprokit.plugins`); anything else raises
:class:`~reprokit.exceptions.InputError` naming the path.
numpy, torch and pandas are never imported here: a value can only be one of theirs if its
library is already in ``sys.modules``.

Containers: a missing or unexpected key, or element beyond the shorter list, is one mismatched
element at its path (``$["layers"][2]``). The first mismatch in walk order (reference order,
then keys only the current value has) is reported, and the largest absolute error separately.
"""

from __future__ import annotations

import cmath
import json
import math
import numbers
import sys
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from reprokit.compare._tally import (
    Outcome,
    PathNode,
    Tally,
    float_outcome,
    render,
    run_tally,
    short,
)
from reprokit.comparison import EXACT, Tolerance, ValueComparison
from reprokit.exceptions import InputError

__all__ = ["compare_values"]

_NUMBERS = frozenset({"bool", "int", "float", "complex"})
_LEAF_TYPES = frozenset({float, int, str, bool, bytes, type(None)})
_ARRAY_PARTNERS = frozenset({"array", "seq", "int", "float", "complex"})
_EXACT_KINDS: dict[type, str] = {
    type(None): "none",
    bool: "bool",
    int: "int",
    float: "float",
    complex: "complex",
    str: "str",
    bytes: "bytes",
    bytearray: "bytes",
    list: "seq",
    tuple: "seq",
    dict: "map",
    set: "set",
    frozenset: "set",
}


class _Absent:
    """Stands for the side of a pair that has no value (missing key, short list)."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
_ROOT_SEGMENT = "$"


def compare_values(
    reference: Any,
    current: Any,
    tolerance: Tolerance | None = None,
    *,
    strict_types: bool = False,
) -> ValueComparison:
    """Compare ``current`` with ``reference`` under ``tolerance`` (default: exact).

    Raises :class:`~reprokit.exceptions.InputError` for a value of an unsupported type. A value
    that is no built-in type goes to the ``reprokit.comparators`` plugin declaring its type
    (``strict_types`` is then the plugin's business).
    """
    if builtin_kind(reference) is None or builtin_kind(current) is None:
        from reprokit.compare.plugged import compare_with_plugin

        plugged = compare_with_plugin(reference, current, tolerance or EXACT)
        if plugged is not None:
            return plugged
    return run_tally(
        tally_values, reference, current, tolerance, strict_types=strict_types, path=_ROOT_SEGMENT
    )


def tally_values(tally: Tally, reference: Any, current: Any, tol: Tolerance, path: str) -> None:
    """Add the comparison of two values to ``tally``, locations under ``path``."""
    _Walker(tally, tol).walk(reference, current, path)


class _Walker:
    def __init__(self, tally: Tally, tolerance: Tolerance) -> None:
        self.tally = tally
        self.tolerance = tolerance
        self.rtol, self.atol = tolerance.resolved()
        self.seen: set[tuple[int, int]] = set()
        self.stack: list[tuple[PathNode, Any, Any]] = []

    def walk(self, reference: Any, current: Any, root: str) -> None:
        self.stack.append((PathNode(None, root), reference, current))
        while self.stack:
            at, ref, cur = self.stack.pop()
            self.visit(at, ref, cur)

    def visit(self, at: PathNode, ref: Any, cur: Any) -> None:
        if isinstance(ref, _Gap):
            self.tally.total += ref.count
            self.tally.mismatch(at, ref.note, ref.count)
            return
        if ref is _ABSENT or cur is _ABSENT:
            self.tally.total += 1
            self.tally.mismatch(at, "missing in current" if cur is _ABSENT else "unexpected")
            return
        ref, cur = _plain(ref), _plain(cur)
        rk, ck = _kind(ref, at), _kind(cur, at)
        if rk == ck == "map":
            self.maps(at, ref, cur)
        elif rk == ck == "seq":
            self.seqs(at, ref, cur)
        elif "array" in (rk, ck) and rk in _ARRAY_PARTNERS and ck in _ARRAY_PARTNERS:
            self.arrays(at, ref, cur, rk != ck)
        elif rk == ck and rk in ("frame", "series"):
            self.frames(at, ref, cur, rk)
        elif rk in _NUMBERS and ck in _NUMBERS:
            self.numbers(at, ref, cur, rk, ck)
        elif rk == ck:
            self.tally.total += 1
            if not _exactly_equal(ref, cur):
                self.tally.mismatch(at, f"current {short(cur)}, reference {short(ref)}")
        else:
            self.kind_change(at, ref, cur)

    def kind_change(self, at: PathNode, ref: Any, cur: Any) -> None:
        self.tally.total += 1
        names = (type(ref).__name__, type(cur).__name__)
        self.tally.change(type_change=names)
        note = f"current {short(cur)} ({names[1]}), reference {short(ref)} ({names[0]})"
        self.tally.mismatch(at, note)

    def maps(self, at: PathNode, ref: Mapping[Any, Any], cur: Mapping[Any, Any]) -> None:
        if self._seen(ref, cur):
            return
        pairs = []
        for k, v in ref.items():
            other = cur.get(k, _ABSENT)
            if not self._same_leaf(v, other):
                pairs.append((at.child(_key_segment(k)), v, other))
        pairs += [(at.child(_key_segment(k)), _ABSENT, v) for k, v in cur.items() if k not in ref]
        self.stack.extend(reversed(pairs))

    def seqs(self, at: PathNode, ref: Any, cur: Any) -> None:
        if self._seen(ref, cur):
            return
        common = min(len(ref), len(cur))
        if len(ref) != len(cur):
            # one block for the tail: a million extra elements are not a million stack entries
            gap = abs(len(ref) - len(cur))
            side = "missing in current" if len(ref) > len(cur) else "unexpected"
            note = f"length {len(ref)} -> {len(cur)}: {gap} element(s) {side}"
            self.stack.append((at.child(f"[{common}]"), _Gap(gap, note), None))
        pairs = [
            (at.child(f"[{i}]"), ref[i], cur[i])
            for i in range(common)
            if not self._same_leaf(ref[i], cur[i])
        ]
        self.stack.extend(reversed(pairs))

    def _same_leaf(self, ref: Any, cur: Any) -> bool:
        """Fast path: identical plain scalars are counted here, never pushed on the stack.

        Only identical pairs are skipped, and they record no mismatch and no error, so the
        walk order of everything that is reported stays the same.
        """
        kind = type(ref)
        if kind is not type(cur) or kind not in _LEAF_TYPES or ref != cur:
            return False
        if kind is float and not ref and math.copysign(1.0, ref) != math.copysign(1.0, cur):
            return False  # -0.0 against 0.0: equal, not identical
        self.tally.total += 1
        return True

    def _seen(self, ref: Any, cur: Any) -> bool:
        key = (id(ref), id(cur))
        if key in self.seen:
            return True
        self.seen.add(key)
        return False

    def numbers(self, at: PathNode, ref: Any, cur: Any, rk: str, ck: str) -> None:
        tally = self.tally
        if rk != ck and "bool" in (rk, ck):
            self.kind_change(at, ref, cur)
            return
        tally.total += 1
        if rk != ck:
            tally.change(type_change=(rk, ck))
        if rk == ck and rk in ("bool", "int"):
            if ref != cur:
                if rk == "int":  # a bool is not a number: no error size
                    diff = _int_distance(ref, cur)
                    tally.errors(diff, _relative(diff, ref), at)
                tally.mismatch(at, f"current {short(cur)}, reference {short(ref)}")
            return
        outcome = _numeric_outcome(ref, cur, self.rtol, self.atol, "complex" in (rk, ck))
        tally.errors(outcome.abs_err, outcome.rel_err, at)
        if not outcome.identical:
            tally.identical = False
        if not outcome.within:
            tally.mismatch(at, f"current {short(cur)}, reference {short(ref)}")

    def arrays(self, at: PathNode, ref: Any, cur: Any, container_change: bool) -> None:
        from reprokit.compare.arrays import as_numpy, tally_arrays

        path = at.render()
        if container_change:
            names = (type(ref).__name__, type(cur).__name__)
            try:  # the side that is a list or a scalar becomes an array, if it is rectangular
                ref, cur = as_numpy(ref, path), as_numpy(cur, path)
            except InputError:
                self.kind_change(at, ref, cur)
                return
            self.tally.change(type_change=names)
        tally_arrays(self.tally, ref, cur, self.tolerance, path)

    def frames(self, at: PathNode, ref: Any, cur: Any, kind: str) -> None:
        from reprokit.compare.frames import tally_frames, tally_series

        tally = tally_frames if kind == "frame" else tally_series
        tally(self.tally, ref, cur, self.tolerance, at.render())


class _Gap:
    """A block of elements present on one side only."""

    def __init__(self, count: int, note: str) -> None:
        self.count = count
        self.note = note


def _numeric_outcome(ref: Any, cur: Any, rtol: float, atol: float, as_complex: bool) -> Outcome:
    """The float rule for int/float/complex pairs; a huge int is an infinite distance away."""
    if _int_and_finite_float(ref, cur) or _int_and_finite_float(cur, ref):
        return _exact_outcome(Fraction(ref), Fraction(cur), rtol, atol)
    try:
        if as_complex:
            return _complex_outcome(complex(ref), complex(cur), rtol, atol)
        return float_outcome(float(cur), float(ref), rtol, atol)
    except OverflowError:
        return Outcome(False, False, math.inf, math.inf)


def _int_and_finite_float(one: Any, other: Any) -> bool:
    return isinstance(one, int) and isinstance(other, float) and math.isfinite(other)


def _exact_outcome(ref: Fraction, cur: Fraction, rtol: float, atol: float) -> Outcome:
    """An int against a finite float, in exact arithmetic: ``2**53 + 1`` is not ``2.0**53``,
    which a conversion to float would make it."""
    diff, bound = abs(cur - ref), abs(ref)
    if not diff:
        return Outcome(True, True, 0.0, 0.0)
    within = diff <= Fraction(atol) + Fraction(rtol) * bound
    return Outcome(within, False, _as_float(diff), _as_float(diff / bound) if bound else math.inf)


def _as_float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _complex_outcome(ref: complex, cur: complex, rtol: float, atol: float) -> Outcome:
    if ref == cur or (_same_part(ref.real, cur.real) and _same_part(ref.imag, cur.imag)):
        return Outcome(True, True, 0.0, 0.0)
    if not (cmath.isfinite(ref) and cmath.isfinite(cur)):
        return Outcome(False, False, math.inf, math.inf)
    diff, bound = abs(cur - ref), abs(ref)
    rel = diff / bound if bound else math.inf
    return Outcome(math.isfinite(diff) and diff <= atol + rtol * bound, False, diff, rel)


def _same_part(ref: float, cur: float) -> bool:
    """One part of a complex pair: equal, or NaN on both sides (``complex(nan, 1)`` is not
    ``complex(1, nan)``, though ``cmath.isnan`` holds for both)."""
    return ref == cur or (math.isnan(ref) and math.isnan(cur))


def _int_distance(ref: int, cur: int) -> float:
    try:
        return float(abs(int(cur) - int(ref)))
    except OverflowError:
        return float("inf")


def _relative(diff: float, ref: int) -> float:
    try:
        return diff / abs(ref) if ref else math.inf
    except OverflowError:  # a reference beyond float range: any finite distance is tiny
        return 0.0 if math.isfinite(diff) else math.inf


def _exactly_equal(ref: Any, cur: Any) -> bool:
    try:
        return bool(ref == cur)
    except (TypeError, ValueError):
        return False


def _key_segment(key: Any) -> str:
    if isinstance(key, str):
        return f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"[{short(key)}]"


def _plain(value: Any) -> Any:
    """numpy scalars become the Python scalar of their kind (datetime64/void: a 0-d array)."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(value, np.generic):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating, np.complexfloating)):
        return value.item() if not isinstance(value, np.longdouble) else float(value)
    if isinstance(value, (np.str_, np.bytes_)):
        return value
    return np.asarray(value)


def builtin_kind(value: Any) -> str | None:
    """The walker's kind of ``value`` (numpy scalars as their Python kind), None when reprokit
    does not know its type."""
    return _builtin_kind(_plain(value))


def _builtin_kind(value: Any) -> str | None:
    kind = _EXACT_KINDS.get(type(value))
    if kind is not None:
        return kind
    for module, name, kind in _LIBRARY_KINDS:
        cls = getattr(sys.modules.get(module), name, None)  # None: not (fully) imported
        if cls is not None and isinstance(value, cls):
            return kind
    for base, kind in _ABSTRACT_KINDS:
        if isinstance(value, base):
            return kind
    return None


def _kind(value: Any, at: PathNode) -> str:
    kind = _builtin_kind(value)
    if kind is not None:
        return kind
    where = render(at) or _ROOT_SEGMENT
    raise InputError(
        f"cannot compare a value of type {type(value).__qualname__} at {where}: supported are "
        "None, bool, int, float, complex, str, bytes, sets, lists/tuples, dicts, numpy arrays, "
        "torch tensors and pandas objects",
        path=where,
    )


_LIBRARY_KINDS: tuple[tuple[str, str, str], ...] = (
    ("numpy", "ndarray", "array"),
    ("torch", "Tensor", "array"),
    ("pandas", "DataFrame", "frame"),
    ("pandas", "Series", "series"),
    ("pandas", "Index", "array"),
)
_ABSTRACT_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "bool"),
    (str, "str"),
    ((bytes, bytearray), "bytes"),
    (numbers.Integral, "int"),
    (numbers.Real, "float"),
    (numbers.Complex, "complex"),
    (Mapping, "map"),
    ((list, tuple), "seq"),
    ((set, frozenset), "set"),
)
