"""Verdicts as JSON: every check, the environment diff and the data check, machine-readable.

The document is ``{"report_version": 1, "reproduced": bool, "verdicts": [Verdict, ...]}``;
each verdict is the :class:`~reprokit.compare.verify.Verdict` dataclass as JSON (non-finite
numbers, errors or anything else, are the strings ``"inf"``/``"-inf"``/``"nan"``, so strict
JSON parsers accept it), and reads back
with ``reprokit._serde.from_builtins(doc["verdicts"][k], Verdict)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from reprokit._fsutil import atomic_write_text
from reprokit._serde import to_builtins
from reprokit.compare.verify import Verdict
from reprokit.report.table import as_verdicts

__all__ = ["REPORT_VERSION", "verdicts_json", "write_json_report"]

REPORT_VERSION = 1


def verdicts_json(verdicts: Verdict | Sequence[Verdict]) -> str:
    listed = as_verdicts(verdicts)
    document = {
        "report_version": REPORT_VERSION,
        "reproduced": all(v.reproduced for v in listed),
        "verdicts": [_finite(to_builtins(v)) for v in listed],
    }
    return (
        json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    )


def _finite(value: Any) -> Any:
    """Every float that JSON cannot hold (a tolerance or value read from a lock one did not
    write) as the string ``"inf"``, ``"-inf"`` or ``"nan"``, like the errors."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json_report(verdicts: Verdict | Sequence[Verdict], path: str | os.PathLike[str]) -> None:
    atomic_write_text(path, verdicts_json(verdicts))
