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
            raise UsageError(
                f"-p {item!r}: expected NAME=VALUE with a Python name", option="-p", value=item
            )
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
            names=tuple(unknown),
        )


def parse_secret_assignments(
    items: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``--secret-param NAME=VALUE`` or ``--secret-param NAME`` (the value is then read from
    the environment variable ``NAME``, which keeps it out of the process list and the shell
    history). Values stay text: a secret is never parsed as JSON."""
    import os

    env = os.environ if environ is None else environ
    parsed: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise UsageError(
                f"--secret-param {name!r}: expected NAME=VALUE or NAME with a Python name",
                option="--secret-param",
                value=name,
            )
        if not sep:
            if name not in env:
                raise UsageError(
                    f"--secret-param {name}: no value given and no environment variable {name}",
                    option="--secret-param",
                    value=name,
                )
            value = env[name]
        parsed[name] = value
    return parsed


def check_secrets(
    notebook: str,
    names: Iterable[str],
    parameters: Mapping[str, Any],
    declared: tuple[str, ...] | None,
) -> None:
    """A secret parameter is declared like any other, and not also given in the clear."""
    names = tuple(names)
    both = sorted(set(names) & set(parameters))
    if both:
        raise UsageError(
            f"parameter(s) {', '.join(both)} given both as -p and as --secret-param",
            option="--secret-param",
            names=tuple(both),
        )
    check_declared(notebook, dict.fromkeys(names), declared)
