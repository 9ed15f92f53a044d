"""Accumulates element outcomes into one Deviation and status (shared by every comparer).

Paths are kept as linked nodes and rendered only when reported, so a structure nested
100,000 deep costs O(depth), not O(depth²), to walk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reprokit.comparison import EXACT, Deviation, Tolerance, ValueComparison, ValueStatus


class PathNode:
    """One step of a location: ``$``, ``["key"]``, ``[2]``, ``[3, 1]``, ``.iloc[4]``."""

    __slots__ = ("parent", "segment")

    def __init__(self, parent: PathNode | None, segment: str) -> None:
        self.parent = parent
        self.segment = segment

    def child(self, segment: str) -> PathNode:
        return PathNode(self, segment)

    def render(self) -> str:
        parts: list[str] = []
        node: PathNode | None = self
        while node is not None:
            parts.append(node.segment)
            node = node.parent
        return "".join(reversed(parts))


Location = PathNode | str


def render(location: Location | None) -> str | None:
    if location is None or isinstance(location, str):
        return location
    return location.render()


@dataclass
class Tally:
    """Mutable running totals; :meth:`finish` freezes them into a ValueComparison."""

    total: int = 0
    mismatched: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_abs_at: Location | None = None
    first_at: Location | None = None
    first_note: str = ""
    identical: bool = True
    structural: bool = False  # a mismatch no count expresses (shape, dtype kind, digest)
    capped: bool = False  # a change that keeps the status from "reproduced"
    estimated: bool = False
    shape_change: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    dtype_change: tuple[str, str] | None = None
    type_change: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    def errors(self, abs_err: float, rel_err: float, at: Location) -> None:
        """Record the size of one difference (whether or not it is within tolerance)."""
        if abs_err > self.max_abs:
            self.max_abs, self.max_abs_at = abs_err, at
        if rel_err > self.max_rel:
            self.max_rel = rel_err

    def mismatch(self, at: Location, note: str, count: int = 1) -> None:
        self.mismatched += count
        self.identical = False
        if self.first_at is None:
            self.first_at, self.first_note = at, note

    def fail(self, at: Location, note: str) -> None:
        """A structural mismatch: differs whatever the counts say."""
        self.structural = True
        self.identical = False
        if self.first_at is None:
            self.first_at, self.first_note = at, note
        elif len(self.notes) < 8:  # later structural findings still belong in the message
            self.notes.append(note)

    def change(
        self,
        *,
        type_change: tuple[str, str] | None = None,
        dtype_change: tuple[str, str] | None = None,
        shape_change: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    ) -> None:
        """Keep the first change of each sort; any change caps the status."""
        self.capped = True
        self.identical = False
        if type_change is not None and self.type_change is None:
            self.type_change = type_change
        if dtype_change is not None and self.dtype_change is None:
            self.dtype_change = dtype_change
        if shape_change is not None and self.shape_change is None:
            self.shape_change = shape_change

    def note(self, text: str) -> None:
        """A change worth a line in the message that keeps the status from "reproduced"."""
        self.capped = True
        self.identical = False
        self.notes.append(text)

    def _changed(self) -> bool:
        return any(c is not None for c in (self.type_change, self.dtype_change, self.shape_change))

    def status(self, strict_types: bool) -> ValueStatus:
        if self.mismatched or self.structural:
            return "differs"
        if self.capped and strict_types:
            return "differs"
        if self.identical and not self.capped:
            return "reproduced"
        return "within_tolerance"

    def finish(self, tolerance: Tolerance, *, strict_types: bool = False) -> ValueComparison:
        status = self.status(strict_types)
        rtol, atol = tolerance.resolved()
        deviation = Deviation(
            max_abs_error=self.max_abs,
            max_rel_error=self.max_rel,
            mismatched_count=self.mismatched,
            total_count=self.total,
            mismatched_fraction=self.mismatched / self.total if self.total else 0.0,
            shape_change=self.shape_change,
            dtype_change=self.dtype_change,
            type_change=self.type_change,
            first_mismatch=render(self.first_at),
            max_abs_location=render(self.max_abs_at),
            estimated=self.estimated,
            message=self._message(status),
        )
        return ValueComparison(status, deviation, Tolerance(rtol=rtol, atol=atol))

    def _message(self, status: ValueStatus) -> str:
        scope = f"{self.total} element{'s' if self.total != 1 else ''}"
        if self.estimated:
            scope = f"a sample of {scope}"
        if status == "reproduced":
            parts = [f"identical ({scope})"]
        elif self.mismatched or self.structural:
            # "current 0.5, reference 0.7" for one value; "2 of 10 elements differ, first at
            # [3]: ..." for a structure (its root, "$", is the value itself: not named)
            verb = "differs" if self.mismatched == 1 else "differ"
            head = f"{self.mismatched} of {scope} {verb}" if self.mismatched > 0 else ""
            head = "" if self.total == 1 else head
            where = _clip(render(self.first_at))
            where = where[1:] if where and where.startswith("$") else where
            note = self.first_note
            first = f"first at {where}: {note}" if where and where not in note else note
            parts = [p for p in (head, first) if p]
        else:
            parts = [f"{scope} within tolerance"]
            if not (self.max_abs or self.max_rel or self.notes or self._changed()):
                parts.append("equal but not bit for bit: a zero changed sign")
        if self.max_abs or self.max_rel:
            parts.append(f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g}")
        for label, change in (
            ("type", self.type_change),
            ("dtype", self.dtype_change),
            ("shape", self.shape_change),
        ):
            text = f"{label} {change[0]} -> {change[1]}" if change is not None else ""
            if text and not any(text in part for part in parts):
                parts.append(text)
        parts.extend(self.notes)
        if status == "differs" and self.capped and not (self.mismatched or self.structural):
            parts.append("types must match (strict_types)")
        return "; ".join(parts)


@dataclass(frozen=True)
class Outcome:
    """One scalar pair: within tolerance?, identical?, and the size of the difference."""

    within: bool
    identical: bool
    abs_err: float
    rel_err: float


def float_outcome(current: float, reference: float, rtol: float, atol: float) -> Outcome:
    """Compare two Python floats under the module's NaN/inf/signed-zero rules."""
    if current == reference:
        same_sign = math.copysign(1.0, current) == math.copysign(1.0, reference)
        return Outcome(True, same_sign, 0.0, 0.0)
    if math.isnan(current) and math.isnan(reference):
        return Outcome(True, True, 0.0, 0.0)
    if not (math.isfinite(current) and math.isfinite(reference)):
        return Outcome(False, False, math.inf, math.inf)
    diff = abs(current - reference)
    bound = abs(reference)
    rel = diff / bound if bound else math.inf
    within = math.isfinite(diff) and diff <= atol + rtol * bound
    return Outcome(within, False, diff, rel)


def _clip(location: str | None, limit: int = 160) -> str | None:
    """A location short enough for a message (the Deviation keeps it whole)."""
    if location is None or len(location) <= limit:
        return location
    return f"{location[: limit // 2]}...{location[-limit // 2 :]}"


def short(value: object, limit: int = 60) -> str:
    """A bounded, never-failing repr for messages: a container shown only when it is a few
    plain scalars (``(1, 'b')``), else by its type and length."""
    if isinstance(value, (list, tuple)) and _plain_items(value):
        items = ", ".join(short(v) for v in value) + ("," if len(value) == 1 else "")
        text = f"({items})" if isinstance(value, tuple) else f"[{items}]"
        if len(text) <= limit:
            return text
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"int of {value.bit_length()} bits"
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if kind and kind in "biufcUS" and getattr(value, "shape", None) == ():  # np.int64(3): 3
        with contextlib.suppress(Exception):
            value = value.item()  # type: ignore[attr-defined]
    try:
        text = repr(value)
    except (ValueError, TypeError, RecursionError) as exc:
        text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain_items(value: list[Any] | tuple[Any, ...]) -> bool:
    plain = (type(None), bool, int, float, str)
    return len(value) <= 8 and all(
        type(v) in plain or getattr(v, "shape", None) == () for v in value
    )


TallyFunction = Callable[["Tally", Any, Any, Tolerance, str], None]


def run_tally(
    tally_function: TallyFunction,
    reference: Any,
    current: Any,
    tolerance: Tolerance | None,
    *,
    strict_types: bool,
    path: str,
) -> ValueComparison:
    """The body of every public ``compare_*``: tally the differences, then decide the status."""
    tol = tolerance if tolerance is not None else EXACT
    tally = Tally()
    tally_function(tally, reference, current, tol, path)
    return tally.finish(tol, strict_types=strict_types)
