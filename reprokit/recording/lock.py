"""Lock files: the reference a notebook is verified against.

``<stem>.repro.json`` sits beside the notebook; arrays too large to be inline go into the
sidecar folder ``<stem>.repro/`` and the lock refers to them relative to its own folder.
The JSON has sorted keys and one value per line, and nothing machine- or run-specific
outside ``created_at`` and the snapshot, so re-recording an unchanged deterministic notebook
rewrites the same bytes there (a clean ``git diff``).

Reading treats the lock as untrusted input (:mod:`reprokit.recording.lock_checks`): it refuses
a lock from a newer schema, a special or oversized file, a field outside the published schema's
limits (the error names the file and the field), and any path that escapes the project or the
lock's folder: a lock comes from a repository one did not write, and verification must not read
or hash files outside it. The project root is never taken from the lock.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from reprokit._fsutil import COPY_CHUNK, atomic_copy, atomic_write_bytes, atomic_write_text
from reprokit._serde import from_builtins, is_utf8, to_json
from reprokit._version import __version__
from reprokit._warn import warn_user
from reprokit.capturing.model import DataManifest, Snapshot
from reprokit.exceptions import (
    InputError,
    LockError,
    PathError,
    ReprokitWarning,
    SchemaVersionError,
    UsageError,
)
from reprokit.notebook.files import INJECTED_TAG, load_notebook, unsynced_cells
from reprokit.notebook.textnotebooks import pair_notebook
from reprokit.recording.lock_checks import (
    MAX_LOCK_BYTES,
    check_document,
    check_lock,
    load_lock_json,
    one_line,
)
from reprokit.recording.lock_model import (
    LOCK_SCHEMA_VERSION,
    OUTPUT_TEXT_LIMIT,
    CellFingerprint,
    CellSource,
    DeviceTolerance,
    Lock,
    LockParameters,
    NotebookSource,
)
from reprokit.results.model import (
    INLINE_LIMIT_BYTES,
    RESULT_MIME,
    RUN_ENDED_MIME,
    RUN_STATUS_MIME,
    SNAPSHOT_MIME,
    ArrayData,
    Result,
)
from reprokit.results.notebook import NotebookResults, read_notebook, restore_snapshot

__all__ = [
    "LOCK_SCHEMA_VERSION",
    "CellFingerprint",
    "CellSource",
    "DeviceTolerance",
    "Lock",
    "LockParameters",
    "NotebookSource",
    "build_lock",
    "cells_as_locked",
    "changed_cells",
    "check_source",
    "is_lock_path",
    "lock_path_for",
    "lock_present",
    "moved_since_recorded",
    "notebook_cells",
    "output_fingerprints",
    "output_ignored",
    "project_root_of",
    "read_lock",
    "refuse_shared_locks",
    "sidecar_for",
    "source_cells",
    "write_lock",
]

_LOCK_SUFFIX = ".repro.json"


def lock_path_for(notebook: str | os.PathLike[str]) -> Path:
    """``fig3.ipynb`` → ``fig3.repro.json`` in the same folder (any jupytext suffix too)."""
    path = Path(notebook)
    return path.with_name(f"{path.stem}{_LOCK_SUFFIX}")


def refuse_shared_locks(notebooks: Iterable[Path]) -> None:
    """Two notebooks whose lock is one file (``fit.ipynb`` and ``fit.py``, a jupytext pair
    named both, or one notebook named twice) would overwrite it or be checked against it both:
    a :class:`UsageError` naming both, before anything runs."""
    owners: dict[Path, Path] = {}
    for notebook in notebooks:
        lock = lock_path_for(notebook)
        key = lock.parent.resolve() / lock.name
        if key in owners:
            raise UsageError(
                f"{owners[key]} and {notebook} would both use the lock {lock}: give only one "
                f"of them (of a jupytext pair, the .ipynb)",
                path=str(notebook),
            )
        owners[key] = notebook


def is_lock_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a lock (``*.repro.json``); the file need not exist."""
    return Path(path).name.endswith(_LOCK_SUFFIX)


def lock_present(lock_path: str | os.PathLike[str]) -> bool:
    """Whether anything is at ``lock_path``, a FIFO or a dangling link too: :func:`read_lock`
    refuses what is not a regular file inside the project, rather than taking it for no lock."""
    path = Path(lock_path)
    return path.exists() or path.is_symlink()


def sidecar_for(lock_path: str | os.PathLike[str]) -> Path:
    """The folder of a lock's by-reference arrays: ``fig3.repro.json`` → ``fig3.repro/``."""
    path = Path(lock_path)
    name = path.name.removesuffix(".json")
    return path.with_name(name if name.endswith(".repro") else f"{path.stem}.repro")


# ----------------------------------------------------------------------------- notebook source


def _blake3(data: bytes) -> str:
    import blake3

    return "blake3:" + blake3.blake3(data).hexdigest()


def _source_text(cell: Any) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def _is_injected(cell: Any) -> bool:
    return INJECTED_TAG in cell.get("metadata", {}).get("tags", ())


def source_cells(node: Any) -> tuple[CellSource, ...]:
    """Per-cell digests of the sources (outputs and metadata do not count); the runner's
    injected-parameters cell is left out, so an executed notebook numbers its cells as its
    source file does."""
    cells = [c for c in node.get("cells", []) if not _is_injected(c)]
    out = []
    for index, cell in enumerate(cells):
        kind = str(cell.get("cell_type", "code"))
        digest = _blake3(f"{kind}\0{_source_text(cell)}".encode())
        out.append(CellSource(index, kind, digest))
    return tuple(out)


def _notebook_source(path: str, node: Any) -> NotebookSource:
    cells = source_cells(node)
    digest = _blake3("\n".join(c.digest for c in cells).encode("ascii"))
    return NotebookSource(path=path, digest=digest, cells=cells)


def output_fingerprints(
    node: Any,
    text_limit: int | None = OUTPUT_TEXT_LIMIT,
    *,
    merge_streams: bool = True,
    printed_end_line: bool = False,
    project_root: str | os.PathLike[str] | None = None,
) -> tuple[CellFingerprint, ...]:
    """Digests of each code cell's masked text output, with the text itself when at most
    ``text_limit`` characters (``None``: always); reprokit's own outputs left out (the
    snapshot's rendering changes every run, results are compared on their own). A cell that
    nbval is told to ignore or skip (:func:`output_ignored`) is fingerprinted as empty: its
    output is never compared. ``project_root``: masked as ``<PROJECT>`` (a clone elsewhere
    prints its own)."""
    from reprokit.notebook.text import cell_text, mask_volatile

    cells = [c for c in node.get("cells", []) if not _is_injected(c)]
    out = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        outputs = cell.get("outputs", ())
        if printed_end_line:  # as locks written before it was reprokit's own had it: printed
            outputs = [_as_printed(o) for o in outputs]
        kept = [o for o in outputs if not _is_reprokit_output(o) and not output_ignored(cell)]
        printed = cell_text({"outputs": kept}, merge_streams=merge_streams)
        text = mask_volatile(printed, project_root)
        kept_text = text if text_limit is None or len(text) <= text_limit else None
        out.append(CellFingerprint(index, _blake3(text.encode("utf-8")), kept_text))
    return tuple(out)


_NBVAL_IGNORE_TAGS = frozenset({"nbval-ignore-output", "nbval-skip"})
_NBVAL_IGNORE_MARKS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP")


def output_ignored(cell: Any) -> bool:
    """nbval's annotations, honoured so that a notebook annotated for nbval works unchanged:
    the tags ``nbval-ignore-output``/``nbval-skip`` or a first line ``# NBVAL_IGNORE_OUTPUT``/
    ``# NBVAL_SKIP``. reprokit still executes a skipped cell (later cells may need what it
    does); only its output is not compared."""
    tags = cell.get("metadata", {}).get("tags", ())
    if _NBVAL_IGNORE_TAGS & set(tags if isinstance(tags, list) else ()):
        return True
    lines = _source_text(cell).lstrip().splitlines()
    return bool(lines) and lines[0].strip().upper().startswith(_NBVAL_IGNORE_MARKS)


def _as_printed(output: Any) -> Any:
    """``%repro end``'s output as the stdout line it was until December 2026."""
    data = output.get("data", {})
    if not (isinstance(data, dict) and RUN_ENDED_MIME in data):
        return output
    text = data.get("text/plain", "")
    text = text if isinstance(text, str) else "".join(text)
    return {"output_type": "stream", "name": "stdout", "text": text + "\n"}


def _is_reprokit_output(output: Any) -> bool:
    data = output.get("data", {})
    return isinstance(data, dict) and not _REPROKIT_MIMES.isdisjoint(data)


_REPROKIT_MIMES = frozenset({RESULT_MIME, SNAPSHOT_MIME, RUN_ENDED_MIME, RUN_STATUS_MIME})


def notebook_cells(notebook: str | os.PathLike[str]) -> tuple[CellSource, ...]:
    """Per-cell source digests of the notebook file, read exactly as a lock records them."""
    return source_cells(load_notebook(notebook))


def cells_as_locked(
    notebook: str | os.PathLike[str],
    recorded: Sequence[CellSource],
    current: tuple[CellSource, ...] | None = None,
) -> tuple[CellSource, ...]:
    """``notebook``'s cells as its lock compares them: :func:`notebook_cells`, except that in
    a jupytext text (``fit.py``) each cell that its paired ``.ipynb`` (the file its lock was
    usually recorded from) holds too, but for whitespace at the cell's end, counts as that
    ``.ipynb``'s cell: jupytext writes no such whitespace, so the text's own digests would
    differ where nothing changed. ``current``: ``notebook_cells(notebook)``, when read."""
    current = notebook_cells(notebook) if current is None else current
    if not changed_cells(recorded, current):
        return current
    paired = pair_notebook(Path(notebook))
    if paired is None:
        return current
    unsynced, theirs = set(unsynced_cells(paired, Path(notebook))), notebook_cells(paired)
    return tuple(
        cell if k in unsynced or k >= len(theirs) else theirs[k] for k, cell in enumerate(current)
    )


def changed_cells(recorded: Sequence[CellSource], current: Sequence[CellSource]) -> list[int]:
    """Indices whose source digest differs; an index present on one side only counts too (a
    cell added at the end, or removed)."""
    return [
        k
        for k in range(max(len(current), len(recorded)))
        if k >= len(current) or k >= len(recorded) or current[k].digest != recorded[k].digest
    ]


def check_source(lock: Lock, notebook: str | os.PathLike[str]) -> list[int]:
    """Indices of cells whose source changed since the lock was written (added and removed
    cells included); warns with :class:`ReprokitWarning` naming them when there are any."""
    changed = changed_cells(lock.notebook.cells, cells_as_locked(notebook, lock.notebook.cells))
    if changed:
        shown = ", ".join(str(k + 1) for k in changed[:20]) + (" ..." if len(changed) > 20 else "")
        warnings.warn(
            f"{notebook}: source changed since the lock was written, cells {shown}",
            ReprokitWarning,
            stacklevel=2,
        )
    return changed


# ----------------------------------------------------------------------------- building


def build_lock(
    notebook_path: str | os.PathLike[str],
    executed: NotebookResults | str | os.PathLike[str] | Any,
    *,
    project_root: str | os.PathLike[str],
    parameters: dict[str, Any] | None = None,
    device: str = "cpu",
    seed: int | None = None,
    data: DataManifest | None = None,
    run_id: str | None = None,
    device_tolerances: dict[str, DeviceTolerance] | None = None,
    outputs: tuple[CellFingerprint, ...] | None = None,
) -> Lock:
    """The lock of ``notebook_path`` from its executed version.

    ``executed`` is the executed notebook (path or nbformat node: results, snapshot and cell
    output fingerprints) or only its :class:`NotebookResults` (no fingerprints then).
    ``seed`` defaults to the snapshot's; ``data`` to the snapshot's manifest, its paths made
    relative to ``project_root`` (a path outside it raises :class:`LockError`). ``outputs``
    replaces the fingerprints taken from ``executed``.
    """
    root = Path(project_root).resolve()
    notebook = Path(notebook_path).resolve()
    rel_notebook = _relative_to_root(notebook, root, "notebook.path", str(notebook))
    results, fingerprints = _executed_parts(executed, str(notebook_path), root)
    snapshot = _portable(_whole_snapshot(results, str(notebook)))
    if seed is None and snapshot is not None and snapshot.seeds is not None:
        seed = snapshot.seeds.seed
    manifest = data if data is not None else (snapshot.data if snapshot else None)
    return Lock(
        schema_version=LOCK_SCHEMA_VERSION,
        reprokit_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        notebook=_notebook_source(rel_notebook, load_notebook(notebook)),
        parameters=LockParameters(seed, _device_kind(device), _json_params(parameters or {})),
        results=dict(sorted(results.results.items())),
        snapshot=snapshot,
        data=None if manifest is None else _lockable(_relative_manifest(manifest, root)),
        outputs=fingerprints if outputs is None else outputs,
        device_tolerances=_device_tolerances(results.results, device_tolerances),
        run_id=run_id,
    )


def _portable(snapshot: Snapshot | None) -> Snapshot | None:
    """The snapshot as a lock keeps it: without the recording machine's interpreter paths
    (``in_virtualenv``, the version and the wheel tags say what a rebuild needs) and its
    repository's absolute folder (``git.root``: a lock travels, a path names its author), its
    data as :func:`_lockable` keeps it."""
    if snapshot is None:
        return None
    python = replace(snapshot.python, executable=None, prefix=None)
    git = replace(snapshot.git, root=None)
    return replace(snapshot, python=python, git=git, data=_lockable(snapshot.data))


def _lockable(manifest: DataManifest | None) -> DataManifest | None:
    """A lock is read as untrusted input and refuses lone surrogates, which is how Python
    holds a file name whose bytes are not UTF-8: a folder with such a file keeps its digest
    (taken over the names' bytes, so ``verify`` still compares it) but not its file list, and a
    skipped special file's name is shown escaped. A data path itself named so is refused."""
    if manifest is None:
        return None
    entries = []
    for k, entry in enumerate(manifest.entries):
        if not is_utf8(entry.path):
            shown = os.fsencode(entry.path).decode("utf-8", "backslashreplace")
            raise LockError(
                shown,
                "a data path whose name is not UTF-8 cannot be locked",
                f"data.entries[{k}].path",
            )
        if not all(is_utf8(f.path) for f in entry.files):
            warn_user(
                f"{entry.path}: a file name is not UTF-8; the lock keeps the folder's digest but "
                "not its file list"
            )
            entry = replace(entry, files=())
        skipped = tuple(os.fsencode(x).decode("utf-8", "backslashreplace") for x in entry.skipped)
        entries.append(replace(entry, skipped=skipped))
    return replace(manifest, entries=tuple(entries))


def _whole_snapshot(results: NotebookResults, notebook: str) -> Snapshot | None:
    """The executed notebook's snapshot with its data file lists, read back from the run's
    folder when the notebook carries a summary; the summary, with a warning, when that folder
    does not have it."""
    results = restore_snapshot(results)
    if results.summary is not None and results.summary.files:
        warn_user(
            f"{notebook}: the run folder holding the data manifest of the executed notebook is "
            "gone; the lock keeps each data path's digest but not its file list"
        )
    return results.snapshot


def _executed_parts(
    executed: Any, notebook: str, root: Path
) -> tuple[NotebookResults, tuple[CellFingerprint, ...]]:
    """Results and output fingerprints (``root``, the project's, masked as ``<PROJECT>``); a bad
    payload is named by ``notebook``, the file the user wrote, whose cells the executed
    notebook's follow."""
    if isinstance(executed, NotebookResults):
        return executed, ()
    node = load_notebook(executed) if isinstance(executed, (str, os.PathLike)) else executed
    return read_notebook(node, source=notebook), output_fingerprints(node, project_root=root)


def _device_tolerances(
    results: dict[str, Result], given: dict[str, DeviceTolerance] | None
) -> dict[str, DeviceTolerance]:
    """The cross-device tolerances the notebook declared (``device_rtol``/``device_atol``),
    overridden by those ``given``; sorted by result name."""
    declared = {
        name: DeviceTolerance(r.device_rtol, r.device_atol)
        for name, r in results.items()
        if r.device_rtol is not None or r.device_atol is not None
    }
    return dict(sorted((declared | (given or {})).items()))


def _device_kind(device: str) -> str:
    """``cuda:1`` → ``cuda``: the lock records the kind of device, not the slot."""
    return device.split(":", 1)[0].strip().lower() or "cpu"


def _json_params(values: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the lock keeps them: redacted as MLflow params are (a secret-looking
    name or credential-looking value becomes ``<redacted>``), JSON-checked, sorted."""
    from reprokit.capturing.redact import redact_parameters

    values = redact_parameters(values)
    try:
        json.dumps(values, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LockError("<parameters>", f"not JSON-serialisable: {exc}", "parameters") from None
    return dict(sorted(values.items()))


def check_lock_parameters(values: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, a parameter a lock cannot keep (JSON has no NaN or
    infinity, and no Python object): :class:`UsageError` naming it."""
    for name, value in values.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(
                f"-p {name}={value!r}: a lock keeps parameters as JSON, which has no NaN, "
                "infinity or Python object; give a number, string, list or dict",
                path=name,
            ) from None


def _relative_to_root(path: Path, root: Path, field: str, shown: str) -> str:
    """``path`` relative to the project root, as the notebook named it (a link inside the
    project stays the link: the run declares it so, and a verification compares the two);
    one that leads outside the project, through a link or not, is refused."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise LockError(shown, f"outside the project root {root}", field)
    lexical = Path(os.path.normpath(path))
    for base in (root, root.resolve()):
        if lexical.is_relative_to(base):
            return lexical.relative_to(base).as_posix()
    return resolved.relative_to(root.resolve()).as_posix()


def _relative_manifest(manifest: DataManifest, root: Path) -> DataManifest:
    entries = []
    for k, entry in enumerate(manifest.entries):
        path = Path(entry.path)
        absolute = path if path.is_absolute() else root / path
        rel = _relative_to_root(absolute, root, f"data.entries[{k}].path", entry.path)
        entries.append(replace(entry, path=rel))
    return replace(manifest, entries=tuple(entries))


# ----------------------------------------------------------------------------- writing


def write_lock(lock: Lock, path: str | os.PathLike[str]) -> Lock:
    """Write ``lock`` to ``path`` atomically; arrays above the inline limit (and arrays held by
    reference in a run folder) are copied into the sidecar folder first. Returns the lock as
    written (array references rewritten), which is what :func:`read_lock` gives back. A lock
    :func:`read_lock` would refuse for its size (:data:`MAX_LOCK_BYTES`) is a
    :class:`LockError` naming its largest results, and nothing is written."""
    target = Path(path)
    sidecar = sidecar_for(target)
    pending: dict[str, Callable[[], None]] = {}  # sidecar file -> what writes it
    results = {
        name: _place_result_arrays(result, target.parent, sidecar, pending)
        for name, result in sorted(lock.results.items())
    }
    stored = replace(lock, results=results)
    text = to_json(stored)
    if "\\ud" in text:  # a lone surrogate, escaped: the reader refuses it; say so now
        check_document(json.loads(text), str(target))
    _check_lock_size(text, stored, str(target))
    for write in pending.values():
        write()
    atomic_write_text(target, text)
    _prune_sidecar(sidecar, target.parent, set(pending))
    return stored


def _check_lock_size(text: str, lock: Lock, shown: str) -> None:
    """A lock longer than :data:`MAX_LOCK_BYTES` (``verify`` and ``check`` would refuse it)
    is refused before anything is written, naming the results that take the most room."""
    size = len(text.encode("utf-8"))
    if size <= MAX_LOCK_BYTES:
        return
    sizes = {name: len(to_json(result).encode("utf-8")) for name, result in lock.results.items()}
    largest = sorted(sizes, key=lambda name: (-sizes[name], name))[:3]
    named = ", ".join(f"{name!r} ({sizes[name]} bytes)" for name in largest) or "none"
    raise LockError(
        shown,
        f"the lock would be {size} bytes, more than the {MAX_LOCK_BYTES} a lock may be "
        f"(verify and check refuse a larger one); largest results: {named}; nothing written "
        "(a numpy array is kept in the sidecar folder beside the lock, a string or list is not)",
    )


def _place_result_arrays(
    result: Result, base: Path, sidecar: Path, pending: dict[str, Callable[[], None]]
) -> Result:
    def place(data: ArrayData | None) -> ArrayData | None:
        return None if data is None else _place_array(data, result.name, base, sidecar, pending)

    columns = tuple(
        replace(c, data=_place_array(c.data, result.name, base, sidecar, pending))
        for c in result.columns
    )
    return replace(result, array=place(result.array), index=place(result.index), columns=columns)


def _place_array(
    data: ArrayData, name: str, base: Path, sidecar: Path, pending: dict[str, Callable[[], None]]
) -> ArrayData:
    """``data`` as the lock keeps it: inline when small, else a reference to its sidecar file,
    whose writing is added to ``pending`` (done once the whole lock is known to fit)."""
    if data.inline is not None:
        payload = _inline_payload(data)
        if len(payload) <= INLINE_LIMIT_BYTES:
            return data
        data = replace(data, sample=data.sample or _sample_of(data, name))
    suffix = ".json" if data.encoding == "json" else ".npy"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    file_name = f"{safe}-{data.digest.split(':', 1)[-1][:16]}{suffix}"
    destination = sidecar / file_name
    relative = destination.relative_to(base).as_posix()
    if data.inline is not None:
        pending[relative] = functools.partial(_write_payload, payload, destination)
    else:
        pending[relative] = functools.partial(_copy_array_file, data, base, destination)
    return replace(data, inline=None, file=relative, location=None)


def _write_payload(payload: bytes, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not _holds(destination, io.BytesIO(payload), len(payload)):
        atomic_write_bytes(destination, payload)


def _inline_payload(data: ArrayData) -> bytes:
    if data.encoding == "json":
        return json.dumps(data.inline, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64decode(data.inline)


def _copy_array_file(data: ArrayData, base: Path, destination: Path) -> None:
    """Copy the file of a by-reference array (from its run folder, or already beside the lock)
    to ``destination``, a chunk at a time, unless ``destination`` already holds its bytes. The
    file is checked first: a regular file inside its folder, of the declared shape and dtype."""
    from reprokit.results.arrays import open_array_file

    folders = [Path(data.location)] if data.location else []
    folders.append(base)
    found = [folder for folder in folders if data.file and (folder / data.file).is_file()]
    if not found:
        shown = str(folders[0] / data.file) if data.file else "<no file>"
        raise PathError(shown, "array file of a result not found; cannot copy it into the lock")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open_array_file(data, found[0]) as source:
        st = os.fstat(source.fileno())
        if _is_file(destination, st):  # the lock's own sidecar, written again
            return
        if not _holds(destination, source, st.st_size):
            source.seek(0)
            atomic_copy(source, destination)


def _is_file(path: Path, st: os.stat_result) -> bool:
    try:
        return os.path.samestat(path.lstat(), st)  # a link to it is replaced by a copy
    except OSError:
        return False


def _holds(destination: Path, source: BinaryIO, size: int) -> bool:
    """Whether ``destination`` is a regular file of ``size`` bytes, those of ``source`` (read
    from where it is; compared a chunk at a time, so neither file is held whole)."""
    from reprokit.results.untrusted import open_regular

    try:
        with open_regular(destination) as kept:
            if os.fstat(kept.fileno()).st_size != size:
                return False
            while (chunk := kept.read(COPY_CHUNK)) == source.read(COPY_CHUNK):
                if not chunk:
                    return True
    except (OSError, PathError):
        pass
    return False


def _sample_of(data: ArrayData, name: str) -> Any:
    from reprokit.results.arrays import array_sample, load_array

    return array_sample(load_array(data), name)


def _prune_sidecar(sidecar: Path, base: Path, keep: set[str]) -> None:
    """Remove array files no result refers to any more (only our own suffixes)."""
    if not sidecar.is_dir():
        return
    for item in sidecar.iterdir():
        if item.suffix in (".npy", ".json") and item.relative_to(base).as_posix() not in keep:
            item.unlink()
    if not any(sidecar.iterdir()):
        sidecar.rmdir()


# ----------------------------------------------------------------------------- reading


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """Read and validate a lock as untrusted input (:mod:`reprokit.recording.lock_checks`);
    :class:`LockError` names the file and the field."""
    source = str(path)
    data = load_lock_json(Path(path), source)
    _check_version(data, source)
    try:
        _check_results(data.get("results"), source)
    except RecursionError:
        raise LockError(source, "not a lock: a value is nested too deeply") from None
    try:
        lock = from_builtins(data, Lock, source=source)
    except InputError as exc:
        field = _field_of(exc)
        reason = one_line(_reason(exc, source))
        raise LockError(source, reason, None if field is None else one_line(field)) from None
    except RecursionError:
        raise LockError(source, "not a lock: a value is nested too deeply") from None
    check_lock(lock, Path(path))
    return lock


def _check_version(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise LockError(source, f"not a lock: a JSON {type(data).__name__}, a lock is an object")
    if "schema_version" not in data:
        raise LockError(source, _not_a_lock(data, source))
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise LockError(source, f"schema_version must be an integer, got {version!r}", "$")
    if version > LOCK_SCHEMA_VERSION:
        raise SchemaVersionError(source, version, LOCK_SCHEMA_VERSION)


def _not_a_lock(data: dict[str, Any], source: str) -> str:
    """Why a JSON object without ``schema_version`` is no lock: a notebook given for its lock
    (``verify --lock fig.ipynb``), or some other JSON."""
    if "cells" in data and "nbformat" in data:
        return f"not a lock but a notebook: its lock is {lock_path_for(source)}"
    return "not a lock: JSON without the lock's fields (schema_version, notebook, results)"


def _check_results(results: Any, source: str) -> None:
    """Validate results one by one, so an error names the result (msgspec says ``[...]``)."""
    if not isinstance(results, dict):
        return  # the whole-lock validation reports it
    for name, item in results.items():
        try:
            from_builtins(item, Result, source=source)
        except InputError as exc:
            inner = _field_of(exc) or "$"
            field = one_line(f"$.results.{name}{inner[1:]}")
            reason = one_line(f"invalid result {name!r}: {_reason(exc, source)}")
            raise LockError(source, reason, field) from None


def _reason(error: InputError, source: str) -> str:
    return error.message.removeprefix(f"{source}: ")


def _field_of(error: InputError) -> str | None:
    """``... - at `$.results.acc.kind``` (msgspec's wording) → ``$.results.acc.kind``."""
    _, sep, rest = error.message.rpartition("at `")
    return rest.rstrip("`") if sep else None


def project_root_of(lock_path: str | os.PathLike[str]) -> Path:
    """The project root a lock's relative paths start from: the project the lock's folder is
    in (``pyproject.toml`` or ``.git`` upwards), found on disk, never taken from the lock."""
    from reprokit.recording.target import find_project_root

    return find_project_root(Path(lock_path).resolve().parent)


def moved_since_recorded(lock: Lock, notebook: Path, root: Path) -> str | None:
    """``notebook``'s path in the project ``root`` when its lock recorded it in another folder
    (moved with its lock, not re-recorded: the lock's data paths, relative to the project,
    may not be what it now reads); ``None`` when it is in the folder the lock says (a project
    copied whole keeps its relative paths), or when the recorded path ends the notebook's own
    (a root found elsewhere: a copy without its project marker, warned about apart)."""
    recorded = PurePosixPath(lock.notebook.path)
    resolved = notebook.resolve()
    try:
        current = PurePosixPath(resolved.relative_to(root.resolve()).as_posix())
    except ValueError:
        return None
    if current.parent == recorded.parent:
        return None  # the same folder: renamed at most (or a jupytext pair's other half)
    if len(recorded.parts) >= 2 and resolved.parts[-len(recorded.parts) :] == recorded.parts:
        return None
    return str(current)
