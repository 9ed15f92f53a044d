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

FAST_INDENT_LIMIT = 1024 * 1024  # bytes: larger JSON from to_json_fast stays on one line


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
    """Stable JSON: sorted keys, one value per line (diff-friendly), trailing newline.

    A lone surrogate (a file name whose bytes are not UTF-8, as Python decodes it) is written
    as JSON's ``\\udcXX`` escape, so the text encodes as UTF-8 and reads back the same; any
    other text is unchanged."""
    text = json.dumps(to_builtins(obj), sort_keys=True, indent=indent, ensure_ascii=False)
    return _surrogates_escaped(text + "\n")


def _surrogates_escaped(text: str) -> str:
    if is_utf8(text):
        return text
    # only lone surrogates cannot be encoded: each becomes \udcXX
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: False only for a lone surrogate (how Python holds a
    file name's bytes that are not UTF-8)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_json_fast(obj: Any) -> str:
    """:func:`to_json`'s JSON (sorted keys; one value per line up to :data:`FAST_INDENT_LIMIT`
    bytes, one line above), written by msgspec: a snapshot with 100,000 data files in 0.1 s,
    not 0.9 s.

    Numbers may be spelled differently (``0.00001`` for ``1e-05``), non-finite floats become
    ``null``: for files read back as data (a run's folder), never for a lock, whose bytes must
    not change between versions. msgspec reads a dataclass's fields from its ``__dict__``: a
    field filled lazily (a folder's file list) is not seen: see
    ``capturing.hashing.manifest_json``.
    """
    compact = compact_json(obj)
    if compact is None:  # what only json.dumps writes
        return to_json(obj)
    return laid_out(compact).decode("utf-8")


def compact_json(obj: Any) -> bytes | None:
    """``obj`` as one line of JSON with sorted keys, by msgspec (a ``msgspec.Raw`` inside is
    written as it is); None where msgspec cannot write it (a lone surrogate in a string)."""
    import msgspec

    try:
        return msgspec.json.encode(obj, order="sorted")
    except (TypeError, UnicodeError, msgspec.EncodeError):
        return None


def laid_out(compact: bytes) -> bytes:
    """:func:`compact_json`'s bytes as :func:`to_json_fast` writes them: one value per line up
    to :data:`FAST_INDENT_LIMIT` bytes, and a final newline."""
    import msgspec

    if len(compact) <= FAST_INDENT_LIMIT:
        compact = msgspec.json.format(compact, indent=1)
    return compact + b"\n"


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
