"""A result's value in a few words, as the data model sees it (the way ``repr`` describes an
object): what a verdict keeps as the reference and the obtained value of each result, and what
the report stage's renderings (:mod:`reprokit.report.render`) put in their lines and tables.
"""

from __future__ import annotations

from reprokit.capturing.redact import redact_text
from reprokit.results.jsonvalue import decode_json
from reprokit.results.model import ArrayData, Result

__all__ = ["short_value", "value_text"]

_MAX_VALUE_TEXT = 200


def value_text(result: Result) -> str:
    """The value in a few words: ``0.931``, ``float32 [3x4] min=… max=…``, ``DataFrame [...]``,
    a plugin's own description; long texts are cut with ``…``. Arrays kept by reference end
    with `` → <file>``."""
    if result.kind in ("array", "series") and result.array is not None:
        return _array_text(result.array)
    if result.kind == "dataframe":
        rows = result.columns[0].data.shape[0] if result.columns else 0
        names = ", ".join(c.name for c in result.columns)
        return f"DataFrame [{rows} rows x {len(result.columns)} columns: {names}]"
    if result.kind == "plugin":
        return _short(_plugin_text(result))
    return _short(repr(decode_json(result.value)))


def short_value(result: Result, limit: int = 60) -> str:
    """:func:`value_text` without where the array file is, at most ``limit`` characters."""
    text = _redacted(value_text(result)).split(" \u2192 ", 1)[0]
    if len(text) <= limit:
        return text
    head = text[: limit - 3]
    if " " in head and result.kind in ("array", "series", "dataframe"):
        head = head[: head.rindex(" ")]  # whole statistics only: never "std=49..."
    return head + "..."


def _short(text: str) -> str:
    """``text`` redacted, then cut: a credential cut first would be too short to be seen as
    one, and its first part would be shown (``ghp_0123456789a...``)."""
    text = _redacted(text)
    return text if len(text) <= _MAX_VALUE_TEXT else text[: _MAX_VALUE_TEXT - 1] + "…"


def _redacted(text: str) -> str:
    """``text`` with credential-looking parts replaced; of a text over :data:`_REDACTED_HEAD`
    characters only its head, of which at most :data:`_MAX_VALUE_TEXT` are shown."""
    return redact_text(text[:_REDACTED_HEAD])


_REDACTED_HEAD = 1 << 16


def _number(value: float | None) -> str:
    return "overflow" if value is None else f"{value:.6g}"  # None: beyond float64


def _array_text(data: ArrayData) -> str:
    shape = "x".join(str(n) for n in data.shape) or "scalar"
    text = f"{data.dtype} [{shape}]"
    stats = data.stats
    if stats is not None and stats.min is not None:
        text += f" min={stats.min:.6g} max={stats.max:.6g}"
        text += f" mean={_number(stats.mean)} std={_number(stats.std)}"
    if stats is not None and (stats.nan_count or stats.posinf_count or stats.neginf_count):
        text += f" nan={stats.nan_count} +inf={stats.posinf_count} -inf={stats.neginf_count}"
    if data.file is not None:
        text += f" → {data.file}"
    return text


def _plugin_text(result: Result) -> str:
    """The plugin's ``describe(payload)`` when it has one (``1.5 mV``), else the payload."""
    from reprokit.plugins import comparator_named

    payload = decode_json(result.value)
    plugin = comparator_named(result.plugin or "")
    describe = getattr(plugin.comparator, "describe", None) if plugin is not None else None
    if callable(describe):
        try:
            return str(describe(payload))
        except Exception:  # a rendering is not worth failing for: show the payload instead
            pass
    return repr(payload)
