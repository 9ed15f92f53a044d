"""Comparison of values that a ``reprokit.comparators`` plugin encodes.

:func:`~reprokit.compare.values.compare_values` comes here only when a side is not a built-in
type: a :class:`~reprokit.results.plugged.PluginValue` read back from a lock or a notebook, or
a live object of a type a plugin declares. Both sides must belong to the same plugin; its
``compare`` then decides. A plugin that is not installed, raises, or returns something other
than a :class:`~reprokit.comparison.ValueComparison` is an
:class:`~reprokit.exceptions.InputError` naming it (verification turns that into ``differs``
with the message).
"""

from __future__ import annotations

from typing import Any

from reprokit.comparison import STATUS_ORDER, Deviation, Tolerance, ValueComparison
from reprokit.exceptions import InputError
from reprokit.results.plugged import PluginValue, plugin_value

__all__ = ["compare_with_plugin"]


def compare_with_plugin(
    reference: Any, current: Any, tolerance: Tolerance
) -> ValueComparison | None:
    """The plugin's comparison of the two values; None when neither side is a plugin's."""
    ref, cur = _plugged(reference), _plugged(current)
    if ref is None and cur is None:
        return None
    if ref is None or cur is None or ref.plugin != cur.plugin:
        return _kind_change(_label(reference, ref), _label(current, cur), tolerance)
    return _run_plugin(ref, cur, tolerance)


def _plugged(value: Any) -> PluginValue | None:
    from reprokit.compare.values import builtin_kind

    if isinstance(value, PluginValue):
        return value
    return None if builtin_kind(value) is not None else plugin_value(value)  # built-ins win


def _label(value: Any, plugged: PluginValue | None) -> str:
    return type(value).__name__ if plugged is None else f"plugin {plugged.plugin}"


def _kind_change(reference: str, current: str, tolerance: Tolerance) -> ValueComparison:
    deviation = Deviation(
        mismatched_count=1,
        total_count=1,
        mismatched_fraction=1.0,
        type_change=(reference, current),
        first_mismatch="$",
        message=f"current is {current}, reference is {reference}",
    )
    return ValueComparison("differs", deviation, tolerance)


def _run_plugin(ref: PluginValue, cur: PluginValue, tolerance: Tolerance) -> ValueComparison:
    from reprokit.plugins import comparator_named

    plugin = comparator_named(ref.plugin)
    where = f"plugin {ref.plugin!r} (reprokit.comparators)"
    if plugin is None:
        raise InputError(
            f"{where} is not installed here: install it to compare the values it encoded",
            plugin=ref.plugin,
        )
    try:
        comparison = plugin.comparator.compare(ref.payload, cur.payload, tolerance)
    except Exception as exc:  # the plugin's bug, reported as the comparison's failure
        raise InputError(
            f"{where} failed to compare: {type(exc).__name__}: {exc}", plugin=ref.plugin
        ) from exc
    if not isinstance(comparison, ValueComparison) or comparison.status not in STATUS_ORDER:
        raise InputError(
            f"{where} returned {comparison!r} from compare, not a ValueComparison",
            plugin=ref.plugin,
        )
    return comparison
