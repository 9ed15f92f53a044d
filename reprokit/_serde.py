"""JSON round-trip for reprokit's dataclasses.

Encoding is stdlib-only (dataclasses + json) so the fast command-line paths stay
light; decoding validates types with msgspec (imported on first use) and turns a
validation failure into an :class:`~reprokit.exceptions.InputError` that names the
offending field (``$.python.version``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from reprokit.exceptions import InputError

T = TypeVar("T")


def to_builtins(obj: Any) -> Any:
    """Dataclasses, tuples and dicts → JSON-ready dicts/lists (dict keys kept as given)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_builtins(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_builtins(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtins(v) for v in obj]
    return obj


def to_json(obj: Any, *, indent: int | None = 1) -> str:
    """Stable JSON: sorted keys, one value per line (diff-friendly), trailing newline."""
    text = json.dumps(to_builtins(obj), sort_keys=True, indent=indent, ensure_ascii=False)
    return text + "\n"


def from_builtins(data: Any, cls: type[T], *, source: str = "<data>") -> T:
    """Validate ``data`` (parsed JSON) as ``cls``; errors name the source and the field."""
    import msgspec

    try:
        return msgspec.convert(data, type=cls, strict=True)
    except msgspec.ValidationError as exc:
        raise InputError(f"{source}: invalid {cls.__name__}: {exc}", path=source) from None


def from_json(text: str | bytes, cls: type[T], *, source: str = "<data>") -> T:
    """Parse and validate JSON text as ``cls``."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not valid JSON: {exc}", path=source) from None
    return from_builtins(data, cls, source=source)
