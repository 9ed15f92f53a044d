"""The command that re-runs a verification, as every report shows it (the JSON verdict's
``command``, the HTML report's "Re-run", the pytest plugin's ``re-run:``).

Run as shown, it verifies the same way, so it carries every option of ``reprokit verify`` that
can change the verdict: the notebook's parameters (``-p``, ``--secret-param``), the lock
(``--lock``, ``--renamed``), the device, the kernel and its settings (``--kernel``,
``--deterministic``, ``--rebuild-env``), the limits that fail an execution (``--timeout``,
``--notebook-timeout``, ``--start-timeout``, ``--memory-limit``) and how results are compared
(``--rtol``, ``--atol``, ``--outputs``, ``--allow-data-drift``, ``--rehash``, ``--repeat``).
Left out, since they change where, how many at once or what is written, not the verdict:
``--jobs``, ``--executor``, ``--scheduler``, ``--output-dir``, ``--report``, ``--junit``,
``--json``, ``--ci``, ``--no-record``, ``--force`` (which only reuses a REPRODUCED verdict)
and ``--force-rebuild`` (the same environment, built again).

A path never names the folders of whoever ran it where that can be helped (reports are
attached to anonymous reviews): an absolute notebook or ``--lock`` path is written relative to
the current folder when it is inside it, else relative to the project root (the command is then
run from there, as from a bundle's unpacked folder), else as given.

A secret never appears: a secret parameter (``--secret-param``, or a ``-p`` whose value
redaction changes, :func:`~reprokit.capturing.redact.sensitive_parameters`) is given as
``--secret-param NAME``, which reads its value from the environment variable ``NAME``. Every
word is quoted for a POSIX shell (:func:`shlex.join`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reprokit.capturing.redact import sensitive_parameters
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.runner.params import parse_value

__all__ = ["rerun_command"]

_DEFAULTS = ExecutionOptions()

# ExecutionOptions field -> its flag, given when the value is not the default
_EXECUTION_FLAGS = (
    ("kernel", "--kernel"),
    ("timeout", "--timeout"),
    ("notebook_timeout", "--notebook-timeout"),
    ("start_timeout", "--start-timeout"),
    ("memory_limit", "--memory-limit"),
)


def rerun_command(
    notebook: str | os.PathLike[str],
    *,
    device: str,
    parameters: Mapping[str, Any] | None = None,
    execution: ExecutionOptions | None = None,
    comparison: ComparisonOptions | None = None,
    runs: int = 1,
    lock: str | os.PathLike[str] | None = None,
    renamed: bool = False,
    project_root: str | os.PathLike[str] | None = None,
) -> str:
    """``reprokit verify NOTEBOOK --device DEVICE ...``: the verification of ``notebook`` on
    ``device`` with these parameters and options, ``runs`` times each (``--repeat``), against
    ``lock`` when one was named (``--lock``, and ``--renamed``). An absolute notebook or lock
    path is written relative to the current folder, else to ``project_root``, where it is
    inside them."""
    execution = execution if execution is not None else ExecutionOptions()
    shown = _shown_path(notebook, project_root)
    words = ["reprokit", "verify", shown, "--device", device]
    words += _parameter_words(parameters or {}, execution.secret_parameters)
    if lock is not None:
        words += ["--lock", _shown_path(lock, project_root), *(["--renamed"] if renamed else [])]
    words += _execution_words(execution)
    words += _comparison_words(comparison if comparison is not None else ComparisonOptions())
    if runs > 1:
        words += ["--repeat", str(runs)]
    return shlex.join(words)


def _shown_path(
    path: str | os.PathLike[str], project_root: str | os.PathLike[str] | None = None
) -> str:
    """An absolute ``path`` relative to the current folder when it is inside it, else to
    ``project_root`` when it is inside that (``/``-separated); else, and a relative path
    always, as given."""
    given = Path(path)
    if not given.is_absolute():
        return os.fspath(path)
    for base in (Path.cwd(), *([Path(project_root)] if project_root is not None else [])):
        for inner, outer in ((given, base), (given.resolve(), base.resolve())):  # links too
            with contextlib.suppress(OSError, ValueError):
                return inner.relative_to(outer).as_posix()
    return os.fspath(path)


def _parameter_words(parameters: Mapping[str, Any], secret: Mapping[str, str]) -> list[str]:
    """``-p NAME=VALUE`` for each parameter, ``--secret-param NAME`` for each secret one."""
    hidden = sensitive_parameters(parameters)
    words: list[str] = []
    for name, value in parameters.items():
        words += ["--secret-param", name] if name in hidden else ["-p", f"{name}={_text(value)}"]
    for name in secret:
        words += ["--secret-param", name]
    return words


def _text(value: Any) -> str:
    """A parameter's value as ``-p`` reads it back (:func:`~reprokit.runner.params.parse_value`):
    text that would not read back as text (``"0.6"``, ``"true"``) and anything else as JSON."""
    if isinstance(value, str) and isinstance(parse_value(value), str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON (given through the API): as Python shows it
        return repr(value)


def _execution_words(execution: ExecutionOptions) -> list[str]:
    words: list[str] = []
    for field, flag in _EXECUTION_FLAGS:
        value = getattr(execution, field)
        if value is not None and value != getattr(_DEFAULTS, field):
            words += [flag, str(value)]
    if execution.deterministic:
        words.append("--deterministic")
    if execution.rebuild_env != "off":
        strict = execution.rebuild_env == "strict"
        words.append("--rebuild-env" if strict else f"--rebuild-env={execution.rebuild_env}")
    return words


def _comparison_words(comparison: ComparisonOptions) -> list[str]:
    words: list[str] = []
    for flag, value in (("--rtol", comparison.rtol), ("--atol", comparison.atol)):
        if value is not None:
            words += [flag, str(value)]
    for flag, on in (
        ("--outputs", comparison.outputs),
        ("--allow-data-drift", comparison.allow_data_drift),
        ("--rehash", comparison.rehash),
    ):
        if on:
            words.append(flag)
    return words
