"""What a comparison says: the tolerance it applied, the deviation it measured, a status.

Tolerance semantics (``numpy.isclose`` with the reference as ``b``)::

    |current - reference| <= atol + rtol * |reference|

- ``Tolerance()`` (both ``None``) is *exact*: a float must be equal to reproduce (no ULP
  slack: a last-bit difference is a difference, and it is reported with its size so the author
  can declare a tolerance knowingly). A part left ``None`` counts as 0, so ``rtol=1e-3`` alone
  accepts 1.0005 against 1.0, and ``atol`` alone is symmetric.
- The tolerance applies to floating-point values (and complex, by modulus). Integers, bools,
  strings, bytes, None, datetimes are compared exactly whatever the tolerance: a declared
  tolerance on ``{"epochs": 10, "loss": 0.31}`` is meant for the loss.
- NaN equals NaN; +inf equals +inf, never -inf or a finite number (whatever the tolerance);
  -0.0 against 0.0 is equal but not identical: ``within_tolerance``.
- A float on one side and an int on the other are compared numerically and the type change is
  reported. A bool is not a number: ``True`` against ``1`` differs.
- A dtype change (float32 against float64) is reported in :attr:`Deviation.dtype_change`; the
  values are compared in the wider type and the status is at best ``within_tolerance``, never
  ``reproduced``. ``strict_types=True`` turns any type or dtype change into ``differs``.

Errors: an element whose absolute difference is infinite or undefined (NaN against a number,
inf against a finite number) has ``max_abs_error``/``max_rel_error`` ``inf``; a relative error
against a zero reference is ``inf`` (0 when both are 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from reprokit.exceptions import UsageError

ValueStatus = Literal["reproduced", "within_tolerance", "differs"]
"""Status of one value comparison; the result layer adds ``missing`` and ``unexpected``."""

STATUS_ORDER: tuple[ValueStatus, ...] = ("reproduced", "within_tolerance", "differs")
"""Statuses from best to worst."""

CheckStatus = Literal[ValueStatus, "missing", "unexpected", "nondeterministic"]
"""Status of a checked result or cell output: a value status, ``missing`` (only in the
reference), ``unexpected`` (only in the current execution) or ``nondeterministic`` (a result
outside its tolerance whose own repeated runs disagree: ``verify --repeat N``)."""


@dataclass(frozen=True)
class Tolerance:
    """Relative and absolute tolerance; ``None`` means "not declared" and counts as 0."""

    rtol: float | None = None
    atol: float | None = None

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{name} must be a number, got {value!r}", option=name)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{name} must be a finite number >= 0, got {value!r}", option=name)

    @property
    def is_exact(self) -> bool:
        """True when nothing but equality passes (both parts undeclared or 0)."""
        return not self.rtol and not self.atol

    def resolved(self) -> tuple[float, float]:
        """``(rtol, atol)`` as floats, an undeclared part as 0.0."""
        return float(self.rtol or 0.0), float(self.atol or 0.0)


EXACT = Tolerance()
"""The default: no tolerance declared."""


@dataclass(frozen=True)
class Deviation:
    """How far the current value is from the reference.

    Counts are over leaf elements (array elements, scalars, dict/list entries; a missing or
    unexpected key or element counts as one mismatched element). ``estimated`` is True when the
    figures come from a sample (array summaries), not from every element. Locations are paths
    like ``$["layers"][2]`` (JSON path, Python indexing), ``$["w"][3, 1]`` for an array element,
    ``$["loss"].iloc[4]`` for a pandas row position.
    """

    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    mismatched_count: int = 0
    total_count: int = 0
    mismatched_fraction: float = 0.0
    shape_change: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    dtype_change: tuple[str, str] | None = None  # (reference, current)
    type_change: tuple[str, str] | None = None  # (reference, current), e.g. ("int", "float")
    first_mismatch: str | None = None  # location of the first element out of tolerance
    max_abs_location: str | None = None  # location of the largest absolute error
    estimated: bool = False
    message: str = ""


@dataclass(frozen=True)
class ValueComparison:
    """The verdict on one value, the deviation behind it and the tolerance applied."""

    status: ValueStatus
    deviation: Deviation
    tolerance_applied: Tolerance

    @property
    def passed(self) -> bool:
        """True for ``reproduced`` and ``within_tolerance``."""
        return self.status != "differs"
