"""``diff_parameters``: the notebook parameters given to a verification (``-p``,
``--secret-param``) whose value is not the one the lock recorded, as "what changed" items of
the verdict's environment diff (category ``parameters``, importance 0: another input is the
likeliest reason a result moved).

The lock keeps parameters redacted (:func:`~reprokit.capturing.redact.redact_parameters`), so a
value given now is compared in its redacted form: a secret-looking name (``api_token``) is then
the same on both sides and not reported, a credential-looking value (``postgres://u:pw@h/db``)
is reported when what redaction leaves of it (the host, the database) changed. A secret
parameter (``--secret-param``, or a ``-p`` value that redaction changes) is named, its values
never shown. A parameter the lock has no value for ran with the notebook's own (``defaults``,
its ``parameters`` cell), except a secret one: a lock never keeps a ``--secret-param``, so one
the lock lacks was most likely given as a secret then too, and is not reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reprokit.capturing.redact import REDACTED, redact_parameters, sensitive_parameters
from reprokit.compare import _hints as hints
from reprokit.compare.envdiff import EnvChange, EnvDiff

__all__ = ["diff_parameters", "with_parameter_changes"]

_ABSENT = object()
_SHOWN_CHARS = 60  # a long list or text is cut: the line names the parameter, the lock has it


def diff_parameters(
    recorded: Mapping[str, Any],
    given: Mapping[str, Any],
    secret: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[EnvChange, ...]:
    """One ``parameters`` change per parameter ``given`` (``-p``) or ``secret`` (name ->
    value, ``--secret-param``) whose value differs from the one the lock's run had: the lock's
    ``recorded`` value, else the notebook's in ``defaults`` (unknown without either: ``-``);
    sorted by name, a secret one with its values hidden."""
    secret = secret or {}
    hidden = sensitive_parameters(given) | set(secret)
    values = {**given, **secret}
    changes = []
    for name in sorted(values):
        before = recorded.get(name, _ABSENT)
        if before is _ABSENT and name in hidden:
            continue  # a lock never keeps a secret parameter: nothing to compare it with
        if before is _ABSENT:
            before = (defaults or {}).get(name, _ABSENT)
        now = redact_parameters({name: values[name]})[name]  # as the lock would keep it
        if before is not _ABSENT and _same(before, now):
            continue
        changes.append(_change(name, before, now, hidden=name in hidden))
    return tuple(changes)


def with_parameter_changes(found: EnvDiff | None, changes: tuple[EnvChange, ...]) -> EnvDiff | None:
    """``found`` with the parameter ``changes`` first (``None`` stays ``None`` without any)."""
    if not changes:
        return found
    return EnvDiff(changes + (found.changes if found is not None else ()))


def _same(before: Any, now: Any) -> bool:
    """Equal as JSON values: ``1`` is not ``1.0`` nor ``True`` (the notebook gets another
    type), a tuple given is the list the lock keeps."""
    return _json(before) == _json(now)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _change(name: str, before: Any, now: Any, *, hidden: bool) -> EnvChange:
    absent = before is _ABSENT
    reference = None if absent else REDACTED if hidden else _shown(before)
    current = REDACTED if hidden else _shown(now)
    hint = hints.SECRET_PARAMETER if hidden else hints.PARAMETER
    return EnvChange(
        "parameters", name, reference, current, "added" if absent else "changed", hint, 0
    )


def _shown(value: Any) -> str:
    """The value as the notebook's Python sees it (``0.5``, ``'cat'``), cut when long."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
