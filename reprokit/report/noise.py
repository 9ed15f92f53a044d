"""Noise in words: what ``record --repeat`` measured, why ``record`` refused, which results a
``verify --repeat`` found nondeterministic, and what ``calibrate`` stored.

Each function takes the data the comparison returned and returns lines; none prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reprokit.capturing.redact import redact_text
from reprokit.comparison import Tolerance

if TYPE_CHECKING:
    from reprokit.compare.noise import Noise
    from reprokit.compare.verify import Verdict
    from reprokit.recording.lock_model import DeviceTolerance, ResultSpread

__all__ = [
    "describe_calibration",
    "describe_noise",
    "describe_spread",
    "describe_unstable",
    "nondeterministic_lines",
]


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def _tolerance(tol: Tolerance) -> str:
    if tol.is_exact:
        return "exact"
    return " ".join(f"{n}={v:.3g}" for n, v in (("rtol", tol.rtol), ("atol", tol.atol)) if v)


def describe_spread(spread: ResultSpread) -> str:
    """``abs 2e-03 rel 4e-03, 100% of elements moved, over 3 runs``; ``none over 3 runs``."""
    if spread.mismatched_fraction == 0 and spread.max_abs_error == 0.0:
        return f"no movement over {spread.runs} runs"
    moved = f"{spread.mismatched_fraction:.0%} of elements moved"
    size = f"abs {_number(spread.max_abs_error)} rel {_number(spread.max_rel_error)}"
    return f"{size}, {moved}, over {spread.runs} runs"


def describe_noise(notebook: str, noise: Noise, *, widened: bool = False) -> list[str]:
    """What the runs showed: the results that moved (``widened``: and the tolerances the lock
    got for them) and the cells whose output is volatile."""
    lines = [f"{notebook}: {noise.runs} runs compared"]
    wider = {n.name: n for n in noise.unstable if n.widened is not None and widened}
    for name, spread in sorted(noise.spreads.items()):
        if spread.mismatched_fraction == 0 and spread.max_abs_error == 0.0:
            continue
        line = f"result {name!r} moved: {describe_spread(spread)}"
        if name in wider:
            tol = wider[name].widened
            assert tol is not None
            line += f"; tolerance widened to {_tolerance(tol)}"
        lines.append(line)
    for cell in noise.volatile:
        lines.append(f"cell {cell.index + 1}: output volatile, {len(cell.spans)} span(s) masked")
    if len(lines) == 1:
        lines.append("every result and output was identical in every run")
    return [redact_text(line) for line in lines]


def describe_unstable(notebook: str, noise: Noise) -> list[str]:
    """One line per result that moved beyond its declared tolerance (``record`` exits 1),
    then the likely causes."""
    lines = []
    for noisy in noise.unstable:
        tol = _tolerance(noisy.declared)
        cannot = "" if noisy.widened is not None else "; no tolerance can cover it"
        lines.append(
            f"error: {notebook}: result {noisy.name!r} is not stable: "
            f"{describe_spread(noisy.spread)} (tolerance {tol}){cannot}"
        )
    lines += [f"  likely cause: {cause}" for cause in noise.causes]
    widenable = any(noisy.widened is not None for noisy in noise.unstable)
    if widenable:
        lines.append("  no lock written; or record the spread: --widen-tolerances")
    else:
        lines.append("  no lock written")
    return [redact_text(line) for line in lines]


def nondeterministic_lines(verdict: Verdict) -> list[str]:
    """``verify --repeat``: each nondeterministic result with both spreads and what to fix."""
    lines = []
    for check in verdict.checks:
        if check.status != "nondeterministic":
            continue
        recorded = (
            describe_spread(check.recorded_spread)
            if check.recorded_spread is not None
            else "not measured (recorded with one run)"
        )
        here = describe_spread(check.spread) if check.spread is not None else "-"
        lines.append(
            f"{check.name}: nondeterministic: spread here {here}; recorded {recorded}; "
            f"{check.message}"
        )
    return [redact_text(line) for line in lines]


def describe_calibration(
    lock_path: str,
    deviations: Mapping[str, ResultSpread],
    tolerances: Mapping[str, DeviceTolerance],
    uncovered: Sequence[str],
) -> list[str]:
    """``calibrate``: each result's measured CPU/CUDA deviation and the device tolerance
    stored for it, or why none could be."""
    lines = [f"calibrated {lock_path}: device tolerances (measured CPU/CUDA)"]
    for name, spread in sorted(deviations.items()):
        tol = tolerances.get(name)
        stored = f"tolerance {_tolerance(Tolerance(tol.rtol, tol.atol))}" if tol else "none needed"
        if name in uncovered:
            stored = "NOT COVERED: it moved where no tolerance applies (exact types, shape)"
        lines.append(f"  {name}: {describe_spread(spread)}; {stored}")
    return [redact_text(line) for line in lines]
