"""Results of types reprokit does not know, encoded by a ``reprokit.comparators`` plugin.

Only consulted after every built-in type has been ruled out, and only for a result value as a
whole: a plugin type nested inside a list or dict is still an error naming its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reprokit.exceptions import InputError, ResultValueError
from reprokit.results.jsonvalue import decode_json, encode_json, type_name

__all__ = ["PluginValue", "encode_with_plugin", "plugin_value"]


@dataclass(frozen=True)
class PluginValue:
    """A value as a comparator plugin encoded it: the plugin's name and its payload, as read
    back from JSON (lists, not tuples; non-finite floats restored).

    What :func:`~reprokit.results.encode.decode_result` returns for a ``plugin`` result, and
    what :func:`~reprokit.compare.values.compare_values` hands to that plugin's ``compare``.
    """

    plugin: str
    payload: Any


def encode_with_plugin(name: str, value: Any) -> dict[str, Any] | None:
    """The Result fields of ``value`` as its plugin encodes it; None when no plugin handles it.

    A plugin that raises, or returns a payload that is not JSON, is an
    :class:`~reprokit.exceptions.InputError` naming the result and the plugin.
    """
    found = plugin_value(value, name=name)
    if found is None:
        return None
    encoded = encode_json(found.payload, name=name)  # checked JSON-able by plugin_value
    return {"kind": "plugin", "value": encoded, "plugin": found.plugin}


def plugin_value(value: Any, *, name: str = "") -> PluginValue | None:
    """``value`` encoded by the comparator plugin for its type, its payload in the form a
    Result gives back; None when no installed plugin declares the type."""
    from reprokit.plugins import comparator_for

    plugin = comparator_for(value)
    if plugin is None:
        return None
    label = f"result {name!r}: " if name else ""
    what = f"{label}plugin {plugin.name!r} (reprokit.comparators)"
    try:
        payload = plugin.comparator.encode(value)
    except Exception as exc:  # the plugin's bug, reported as bad input naming it
        raise InputError(
            f"{what} could not encode a {type_name(value)}: {type(exc).__name__}: {exc}",
            name=name,
            plugin=plugin.name,
        ) from exc
    try:
        # through JSON and back: the plugin compares what a lock would give it, nothing else
        return PluginValue(plugin.name, decode_json(encode_json(payload, name=name)))
    except ResultValueError as exc:
        raise InputError(
            f"{what} encoded a {type_name(value)} into a payload that is not JSON: "
            f"{exc.type_name} at {exc.where or 'the top level'}",
            name=name,
            plugin=plugin.name,
        ) from None
