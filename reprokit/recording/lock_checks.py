"""What a lock must satisfy before anything runs: a lock comes from a repository one did not
write, so it is read as untrusted input.

- the file is a regular file of at most :data:`MAX_LOCK_BYTES` (a FIFO, a device or a link to
  ``/dev/zero`` is refused before reading), inside the project of the folder it is named in
  (a link leading outside, ``fit.repro.json -> /etc/passwd``, is refused before reading);
- the JSON has no integer of more than 4300 digits (Python's limit), no lone surrogate, and
  is nested at most :data:`MAX_DEPTH` levels (the
  notebook parameters at most :data:`MAX_PARAMETER_DEPTH`, which papermill renders as code);
- every field meets the limits of ``docs/lock.schema.json``: the enumerations, the digest
  patterns, ``schema_version`` at least 1, tolerances and array statistics finite (``1e400``
  reads as infinity) and tolerances not negative, dtypes numpy knows, shapes not negative,
  inline array elements that match the declared shape and dtype;
- every path is relative and stays inside its base (the project for the notebook and the
  data, the lock's folder for array files), and an array file, when present, is a regular
  file inside the lock's folder (links resolved) whose ``.npy`` header says the declared shape
  and dtype.

Each refusal is a :class:`~reprokit.exceptions.LockError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from reprokit._serde import is_utf8
from reprokit.capturing.model import DataManifest
from reprokit.exceptions import InputError, LockError, PathError
from reprokit.recording.lock_model import Lock
from reprokit.results.model import KINDS, ArrayData, Result

__all__ = [
    "MAX_DEPTH",
    "MAX_LOCK_BYTES",
    "MAX_PARAMETER_DEPTH",
    "check_lock",
    "check_relative",
    "load_lock_json",
    "one_line",
]

MAX_LOCK_BYTES = 64 * 1024 * 1024
"""Largest lock file read (arrays above 64 KiB live in the sidecar folder, not in the lock)."""

MAX_DEPTH = 256
"""Deepest nesting of the lock's JSON."""

MAX_PARAMETER_DEPTH = 64
"""Deepest nesting of one notebook parameter value (it becomes Python source in the notebook)."""

_DIGEST = re.compile(r"(blake3|sha256|md5):[0-9a-f]+")
_HEX = re.compile(r"[0-9a-f]+")
_ENUMS = {"cell_type": ("code", "markdown", "raw"), "device": ("cpu", "cuda")}


def load_lock_json(path: Path, source: str) -> Any:
    """The JSON value of the lock file at ``path``, read within the limits above."""
    from reprokit.recording.target import find_project_root
    from reprokit.results.untrusted import inside_folder, read_regular

    try:
        # the project of the folder the lock is named in: its own link is not followed for it
        inside_folder(path, find_project_root(path.absolute().parent))
        raw = read_regular(path, MAX_LOCK_BYTES, what="lock")
    except PathError as exc:
        raise LockError(source, exc.reason) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LockError(source, "not UTF-8 text") from None
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise LockError(source, _not_json(text, exc)) from None
    except RecursionError:
        raise LockError(source, "not a lock: JSON nested too deeply") from None
    check_document(data, source)
    return data


_CONFLICT_MARKERS = ("<<<<<<< ", "||||||| ", ">>>>>>> ")  # and "=======" alone


def _not_json(text: str, error: json.JSONDecodeError) -> str:
    """Why the lock is not JSON: git's merge-conflict markers, when it has them (a merge that
    left the lock half-resolved), else the parser's own words."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(_CONFLICT_MARKERS) or line == "=======":
            return f"not valid JSON: merge-conflict markers (line {number}); resolve the conflict"
    return f"not valid JSON: {error}"


class _LongInteger:
    """An integer literal too long to convert (Python refuses more than 4300 digits): kept
    until the walk below can name its field."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def _bounded_int(text: str) -> int | _LongInteger:
    try:
        return int(text)
    except ValueError:
        return _LongInteger(text)


def check_document(data: Any, source: str) -> None:
    """Nesting depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH or _parameter_depth(where, depth):
            raise LockError(source, "nested too deeply", _field(where))
        if isinstance(value, str):
            _check_text(value, source, where)
        elif isinstance(value, _LongInteger):
            raise LockError(source, f"an integer of {value.digits} digits", _field(where))
        elif isinstance(value, dict):
            for key, inner in value.items():
                _check_text(key, source, (*where, key))
                stack.append((inner, depth + 1, (*where, key)))
        elif isinstance(value, list):
            stack.extend((inner, depth + 1, (*where, k)) for k, inner in enumerate(value))


def _parameter_depth(where: tuple[Any, ...], depth: int) -> bool:
    return where[:2] == ("parameters", "values") and depth - 3 > MAX_PARAMETER_DEPTH


def _check_text(text: str, source: str, where: tuple[Any, ...]) -> None:
    if not is_utf8(text):
        raise LockError(source, "a string holds a lone surrogate (\\ud800-\\udfff)", _field(where))


def _field(where: tuple[Any, ...]) -> str:
    out = ""
    for key in where:
        out += f"[{key}]" if isinstance(key, int) else f".{one_line(key)}"
    return out.lstrip(".") or "$"


def one_line(text: str) -> str:
    """``text`` as shown in an error: a key or path from the lock may hold a newline or a
    control character, and an error is one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# ----------------------------------------------------------------------------- fields


def check_lock(lock: Lock, lock_path: Path) -> None:
    """Every field of a converted lock within the schema's limits and every path inside."""
    source = str(lock_path)
    if lock.schema_version < 1:
        raise LockError(
            source, f"schema_version {lock.schema_version} is below 1", "schema_version"
        )
    _check_notebook(lock, source)
    for name, tolerance in lock.device_tolerances.items():
        field = f"device_tolerances.{one_line(name)}"
        _check_tolerances(source, field, tolerance.rtol, tolerance.atol)
    _check_manifest(lock.data, source, "data", paths=True)
    if lock.snapshot is not None:  # shown, never opened: its paths need not be inside
        _check_manifest(lock.snapshot.data, source, "snapshot.data", paths=False)
        accelerator = lock.snapshot.accelerator
        if accelerator is not None:
            sources = ("torch", "nvml", "torch+nvml", "none")
            _check_choice(accelerator.source, sources, source, "snapshot.accelerator.source")
    for name, result in lock.results.items():
        _check_result(result, lock_path, f"results.{one_line(name)}")
    _check_noise(lock, source)


_SPAN_KINDS = ("number", "word", "text")


def _check_noise(lock: Lock, source: str) -> None:
    """Schema 2's noise fields: spreads are numbers >= 0 (or ``"inf"``/``"nan"``), a volatile
    cell's template has one more literal than spans and only known span kinds, a calibration
    names known devices."""
    for name, spread in lock.spreads.items():
        field = f"spreads.{one_line(name)}"
        for part in ("max_abs_error", "max_rel_error"):
            value = getattr(spread, part)
            ok = value in ("inf", "nan") if isinstance(value, str) else value >= 0
            if not ok or (isinstance(value, float) and math.isinf(value)):
                raise LockError(source, f"{part} must be >= 0, 'inf' or 'nan'", f"{field}.{part}")
        _check_tolerances(source, field, spread.declared_rtol, spread.declared_atol)
        _check_tolerances(source, field + ".factor", spread.factor, None)
        if spread.runs < 1 or not 0 <= spread.mismatched_fraction <= 1:
            raise LockError(source, "runs must be >= 1 and mismatched_fraction in [0, 1]", field)
    for k, cell in enumerate(lock.volatile):
        if cell.index < 0 or cell.runs < 1:
            raise LockError(source, "index must be >= 0 and runs >= 1", f"volatile[{k}]")
        if len(cell.literals) != len(cell.spans) + 1:
            raise LockError(source, "needs one more literal than spans", f"volatile[{k}].literals")
        for kind in cell.spans:
            _check_choice(kind, _SPAN_KINDS, source, f"volatile[{k}].spans")
    if lock.calibration is not None:
        _check_tolerances(source, "calibration.factor", lock.calibration.factor, None)
        for device in lock.calibration.devices:
            _check_choice(device, _ENUMS["device"], source, "calibration.devices")


def _check_manifest(manifest: DataManifest | None, source: str, field: str, paths: bool) -> None:
    for k, entry in enumerate(manifest.entries if manifest else ()):
        where = f"{field}.entries[{k}]"
        if paths:
            check_relative(entry.path, source, f"{where}.path")
        _check_choice(entry.kind, ("file", "dir"), source, f"{where}.kind")
        _check_choice(entry.algorithm, ("blake3", "sha256", "md5"), source, f"{where}.algorithm")
        _check_pattern(entry.digest, _HEX, source, f"{where}.digest")
        for n, item in enumerate(entry.files):
            if paths:  # relative to its folder: a ``..`` out of it would be hashed or shown
                check_relative(item.path, source, f"{where}.files[{n}].path", "its folder")
            _check_pattern(item.digest, _HEX, source, f"{where}.files[{n}].digest")


def _check_notebook(lock: Lock, source: str) -> None:
    check_relative(lock.notebook.path, source, "notebook.path")
    _check_pattern(lock.notebook.digest, _DIGEST, source, "notebook.digest")
    for k, cell in enumerate(lock.notebook.cells):
        _check_choice(cell.cell_type, _ENUMS["cell_type"], source, f"notebook.cells[{k}].cell_type")
        _check_pattern(cell.digest, _DIGEST, source, f"notebook.cells[{k}].digest")
    for k, output in enumerate(lock.outputs):
        _check_pattern(output.digest, _DIGEST, source, f"outputs[{k}].digest")
    _check_choice(lock.parameters.device, _ENUMS["device"], source, "parameters.device")


def _check_result(result: Result, lock_path: Path, field: str) -> None:
    source = str(lock_path)
    _check_choice(result.kind, KINDS, source, f"{field}.kind")
    if result.dtype is not None:
        _check_dtype(result.dtype, source, f"{field}.dtype")
    _check_tolerances(source, field, result.rtol, result.atol)
    _check_tolerances(source, field + ".device", result.device_rtol, result.device_atol)
    parts = [("array", result.array), ("index", result.index)]
    parts += [(f"columns[{k}].data", c.data) for k, c in enumerate(result.columns)]
    for part, data in parts:
        if data is not None:
            _check_array(data, lock_path, f"{field}.{part}")


def _check_dtype(name: str, source: str, field: str) -> None:
    from reprokit.results.arrays import check_dtype_name

    try:
        check_dtype_name(name)
    except InputError as exc:
        raise LockError(source, exc.message, field) from None


def _check_tolerances(source: str, field: str, rtol: float | None, atol: float | None) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise LockError(source, f"{name} must be a finite number >= 0, got {value!r}", field)


def _check_array(data: ArrayData, lock_path: Path, field: str) -> None:
    from reprokit.results.arrays import check_array_data

    source = str(lock_path)
    _check_pattern(data.digest, _DIGEST, source, f"{field}.digest")
    try:
        check_array_data(data)
    except InputError as exc:  # its path: the part of the array at fault (inline, shape, ...)
        part = f"{field}.{exc.path}" if exc.path else field
        raise LockError(source, one_line(exc.message), part) from None
    if data.file is not None:
        check_relative(data.file, source, f"{field}.file")
        _check_array_file(data, lock_path, field)


def _check_array_file(data: ArrayData, lock_path: Path, field: str) -> None:
    """An array file that is there must be readable as declared (header only; a missing one
    is reported when compared: its sample and statistics stand in for it)."""
    from reprokit.results.arrays import check_array_file

    path = lock_path.parent / str(data.file)
    if not os.path.lexists(path):
        return
    try:
        check_array_file(data, lock_path.parent)
    except InputError as exc:
        raise LockError(str(lock_path), one_line(exc.message), f"{field}.file") from None


def _check_choice(value: str, allowed: tuple[str, ...], source: str, field: str) -> None:
    if value not in allowed:
        raise LockError(source, f"{value!r} is not one of {', '.join(allowed)}", field)


def _check_pattern(value: str, pattern: re.Pattern[str], source: str, field: str) -> None:
    if not pattern.fullmatch(value):
        raise LockError(source, f"{value[:80]!r} is not a digest", field)


def check_relative(text: str, source: str, field: str, base: str = "the project root") -> None:
    """A relative path that stays inside its base folder (no ``..`` escape, not absolute)."""
    normal = os.path.normpath(text)
    if (
        not text
        or "\0" in text
        or os.path.isabs(text)
        or normal == ".."
        or normal.startswith(".." + os.sep)
    ):
        raise LockError(source, f"path {text!r} escapes {base}", field)
