"""Notebook parameters: ``NAME=VALUE`` parsing and the check against the ``parameters`` cell."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from reprokit.exceptions import UsageError

_PYTHON_WORDS: dict[str, Any] = {"True": True, "False": False, "None": None}


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (``3``, ``0.5``, ``true``, ``[1, 2]``),
    Python's ``True``/``False``/``None``, else the text itself."""
    if text in _PYTHON_WORDS:
        return _PYTHON_WORDS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["n=3", "name=abc"]`` → ``{"n": 3, "name": "abc"}``; a later name wins."""
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"-p {item!r}: expected NAME=VALUE with a Python name", item=item)
        parsed[name] = parse_value(value)
    return parsed


def check_declared(
    notebook: str, parameters: Mapping[str, Any], declared: tuple[str, ...] | None
) -> None:
    """Every parameter given must be assigned in the notebook's ``parameters`` cell."""
    if not parameters:
        return
    if declared is None:
        raise UsageError(
            f"{notebook}: parameters given ({', '.join(sorted(parameters))}) but the notebook "
            "has no cell tagged 'parameters'",
            path=notebook,
        )
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        names = ", ".join(declared) or "none"
        raise UsageError(
            f"{notebook}: parameter(s) {', '.join(unknown)} not declared in the 'parameters' "
            f"cell (declared: {names})",
            path=notebook,
            unknown=unknown,
        )
