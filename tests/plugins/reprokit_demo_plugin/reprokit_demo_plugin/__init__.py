"""A minimal reprokit plugin: fake instrument metadata, and results with a unit.

- ``instrument`` (``reprokit.collectors``): what an instrument would report about itself. The
  firmware comes from ``REPROKIT_DEMO_FIRMWARE`` so that a test can change it between runs.
- ``measurement`` (``reprokit.comparators``): :class:`Measurement` results. The units must be
  equal; the values are compared under the result's tolerance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from reprokit.comparison import Deviation, Tolerance, ValueComparison


@dataclass(frozen=True)
class Measurement:
    value: float
    unit: str


@dataclass(frozen=True)
class InstrumentInfo:
    model: str
    serial: str
    firmware: str


def instrument() -> InstrumentInfo:
    firmware = os.environ.get("REPROKIT_DEMO_FIRMWARE", "1.0")
    return InstrumentInfo(model="DemoScope 3000", serial="DS-0042", firmware=firmware)


class MeasurementComparator:
    types = (Measurement,)

    def encode(self, value: Measurement) -> dict[str, Any]:
        return {"value": value.value, "unit": value.unit}

    def describe(self, payload: dict[str, Any]) -> str:
        return f"{payload['value']:g} {payload['unit']}"

    def compare(
        self, reference: dict[str, Any], current: dict[str, Any], tolerance: Tolerance
    ) -> ValueComparison:
        if reference["unit"] != current["unit"]:
            message = f"unit {current['unit']!r}, reference {reference['unit']!r}"
            return _differs(tolerance, message, "$.unit")
        ref, cur, unit = float(reference["value"]), float(current["value"]), reference["unit"]
        rtol, atol = tolerance.resolved()
        error = abs(cur - ref)
        relative = error / abs(ref) if ref else (0.0 if error == 0 else math.inf)
        if error == 0:
            status = "reproduced"
        elif error <= atol + rtol * abs(ref):
            status = "within_tolerance"
        else:
            status = "differs"
        deviation = Deviation(
            max_abs_error=error,
            max_rel_error=relative,
            mismatched_count=int(status == "differs"),
            total_count=1,
            mismatched_fraction=float(status == "differs"),
            first_mismatch="$.value" if status == "differs" else None,
            message=f"{cur:g} {unit} against {ref:g} {unit}: off by {error:g} {unit}",
        )
        return ValueComparison(status, deviation, tolerance)


def _differs(tolerance: Tolerance, message: str, where: str) -> ValueComparison:
    deviation = Deviation(
        mismatched_count=1,
        total_count=1,
        mismatched_fraction=1.0,
        first_mismatch=where,
        message=message,
    )
    return ValueComparison("differs", deviation, tolerance)


measurement = MeasurementComparator()
