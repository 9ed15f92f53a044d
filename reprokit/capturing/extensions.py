"""Facts added by ``reprokit.collectors`` plugins: run each one, never let one break capture.

A collector that raises, or returns something that is not JSON (an object, a NaN, a dict
with non-string keys), is recorded as unavailable with the reason, and a
:class:`~reprokit.exceptions.ReprokitWarning` names it. What a collector returns is redacted
like everything else reprokit writes: a value under a secret-looking key (``token``,
``password``) becomes ``<redacted>``, and credential-looking text inside strings does too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from reprokit._warn import warn_user
from reprokit.capturing.model import ExtensionInfo
from reprokit.capturing.redact import REDACTED, looks_secret_name, redact_text, redact_url
from reprokit.plugins import LoadedCollector, collectors

__all__ = ["collect_extensions", "flat_facts", "json_data"]


class NotJSONError(ValueError):
    """A collector's output that cannot be written as JSON (``where`` locates the part)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")
        self.what = what
        self.where = where


def collect_extensions() -> dict[str, ExtensionInfo]:
    """What every installed collector reports, keyed by its entry-point name."""
    return {plugin.name: _run(plugin) for plugin in collectors()}


def _run(plugin: LoadedCollector) -> ExtensionInfo:
    try:
        output = plugin.collect()
    except Exception as exc:  # a plugin's bug must not cost the user their snapshot
        return _unavailable(plugin, f"collector raised {type(exc).__name__}: {exc}")
    try:
        data = json_data(output)
    except NotJSONError as exc:
        return _unavailable(plugin, f"collector returned {exc.what} (not JSON) at {exc.where}")
    return ExtensionInfo(available=True, data=data)


def _unavailable(plugin: LoadedCollector, reason: str) -> ExtensionInfo:
    reason = redact_text(reason)  # an exception message can quote a secret
    warn_user(
        f"reprokit plugin {plugin.name!r} (reprokit.collectors): {reason}; recorded as unavailable"
    )
    return ExtensionInfo(available=False, reason=reason)


def json_data(value: Any, where: str = "$") -> Any:
    """``value`` as plain, redacted JSON data; dataclasses become dicts, tuples lists.

    Raises :class:`NotJSONError` for anything else (non-finite floats included: plain JSON
    has no such numbers).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return redact_url(value) if isinstance(value, str) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONError(f"the float {value!r}", where)
        return value
    if isinstance(value, (list, tuple)):
        return [json_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return _json_mapping(value, where)
    raise NotJSONError(f"a {type(value).__module__}.{type(value).__qualname__}", where)


def _json_mapping(value: dict[Any, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise NotJSONError(f"a {type(key).__name__} dict key", f"{where}[{key!r}]")
        out[key] = REDACTED if looks_secret_name(key) else json_data(item, f"{where}.{key}")
    return out


def flat_facts(extensions: Mapping[str, ExtensionInfo]) -> dict[str, str]:
    """Every plugin fact as ``plugin.key.subkey -> text``, for reports and diffs.

    Nested dicts become dotted paths; any other value is its text (lists as compact JSON). An
    unavailable plugin is one entry, ``plugin -> "unavailable (reason)"``.
    """
    facts: dict[str, str] = {}
    for name in sorted(extensions):
        info = extensions[name]
        if not info.available:
            facts[name] = f"unavailable ({info.reason})" if info.reason else "unavailable"
        else:
            _flatten(name, info.data, facts)
    return facts


def _flatten(path: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(f"{path}.{key}", value[key], out)
    elif isinstance(value, str):
        out[path] = value
    else:
        out[path] = json.dumps(value, sort_keys=True, ensure_ascii=False)
