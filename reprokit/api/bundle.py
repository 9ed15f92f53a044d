"""``bundle``: one zip file with what a reviewer or an archive needs to verify notebooks.

:func:`bundle` packs, for each notebook with a lock: the notebook, its lock and the sidecar
arrays the lock refers to, the lock's data (when it is at most ``data_limit`` bytes in all,
or always, or never: :class:`~reprokit.options.BundleOptions`), the exported environment
(``requirements.txt``, ``environment.yml``, and ``pylock.toml`` when asked), the HTML and JSON
report of the notebook's last verification under ``.reprokit/runs/`` (when there is one newer
than the lock), and, for the whole bundle, ``README.md``, ``CITATION.cff``,
``data-manifest.json``, RO-Crate metadata (``ro-crate-metadata.json``) and a
``pyproject.toml`` that marks the bundle's root as the project root. Paths inside are the
paths relative to the project root. The zip is the same bytes for the same inputs
(:func:`reprokit._archive.write_zip`).

Nothing leaves the project: a file whose path (or a link on it) leads outside the project
root is refused; ``.reprokit/`` (caches, journals), ``.git/``, ``.env`` files and other
credential files are never packed: a lock's data file among them stops the bundle (the bundle
would not verify without it).

:func:`unpack_bundles` is the other half, used by :func:`reprokit.api.verify.verify`: each
``.zip`` among the paths is unpacked as untrusted input into a fresh folder
``<output_dir or beside the zip: STEM.verify>/<UTC time>-<hex>/bundle`` and replaced by it; the
executed notebooks and reports go to ``.../runs`` unless an output folder was given. Every
notebook that the bundle's ``ro-crate-metadata.json`` lists must be there with its lock: a
bundle that lost one (or its metadata) is refused before anything runs.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from reprokit._archive import ZipEntry, extract_zip, write_zip
from reprokit._version import __version__
from reprokit.exceptions import PathError, ReprokitError, UsageError
from reprokit.options import BundleOptions, ExecutionOptions
from reprokit.report.bundle import Bundle

if TYPE_CHECKING:
    from reprokit.capturing.model import DataEntry
    from reprokit.recording.lock_model import Lock
    from reprokit.report.bundle import BundledFile, BundledNotebook, BundledVerification

__all__ = ["Bundle", "bundle", "is_bundle", "unpack_bundles"]

ENV_FORMATS = {"requirements": "requirements.txt", "conda": "environment.yml"}
"""The exported environment of every notebook (``pylock.toml`` when asked)."""

_NEVER_DIRS = frozenset({".reprokit", ".git", ".ssh", ".aws", ".gnupg", ".ipynb_checkpoints"})
_NEVER_NAMES = frozenset({".netrc", ".pypirc", ".git-credentials", ".npmrc", "credentials"})
_NEVER_SUFFIXES = (".pem", ".key", ".p12", ".pfx")
_MAX_VERDICT_BYTES = 64 * 1024 * 1024
_CRATE = "ro-crate-metadata.json"
_MAX_CRATE_BYTES = 64 * 1024 * 1024


@dataclass
class _Packing:
    """The bundle being assembled: archive entries and what the text files say about them."""

    root: Path
    entries: dict[str, ZipEntry]
    files: list[BundledFile]
    left_out: list[str]
    unpinnable: list[str]


def bundle(
    notebooks: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    options: BundleOptions | None = None,
) -> Bundle:
    """Pack ``notebooks`` (files, or folders searched for notebooks with a lock) into the zip
    ``output``; see the module docstring for what goes in."""
    from reprokit.api.verify import notebooks_with_locks

    chosen = options or BundleOptions()
    target = _output_path(Path(output))
    sources = notebooks_with_locks(notebooks)
    if not sources:
        raise UsageError("no notebook with a lock (<stem>.repro.json) in the given paths")
    root = _common_root(sources)
    packing = _Packing(root, {}, [], [], [])
    locks = [(source, _read_lock(source)) for source in sources]
    data = _pack_data(packing, [lock for _, lock in locks], chosen)
    packed = [_pack_notebook(packing, source, lock, chosen) for source, lock in locks]
    _pack_texts(packing, packed, data, chosen, target.name)
    write_zip(target, packing.entries.values())
    changed = _changed_data(root, [lock for _, lock in locks])
    return Bundle(
        str(target),
        tuple(sorted(packing.entries)),
        data.included,
        data.size,
        tuple(packing.left_out),
        tuple(nb.path for nb in packed if nb.verification is None),
        tuple(dict.fromkeys(packing.unpinnable)),
        changed,
    )


def _changed_data(root: Path, locks: list[Lock]) -> tuple[str, ...]:
    """Data that no longer matches its lock: a verification of the bundle would stop on it."""
    from reprokit.compare.verify import check_data

    return tuple(
        f"{lock.notebook.path}: {entry.path} {entry.status}"
        for lock in locks
        if lock.data is not None
        for entry in check_data(lock, root).drifted
    )


def _output_path(output: Path) -> Path:
    if output.suffix.lower() != ".zip":
        raise UsageError(f"{output}: the bundle is a zip file: give a name ending in .zip")
    if output.is_dir():
        raise PathError(str(output), "is a folder; give the zip file's name")
    try:  # its folder made, as for --report
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot make the bundle's folder: {exc.strerror}"
        raise PathError(str(output.parent), reason) from None
    return output


def _common_root(sources: list[Path]) -> Path:
    from reprokit.recording.target import find_project_root

    roots = {find_project_root(source.resolve().parent) for source in sources}
    if len(roots) > 1:
        shown = ", ".join(sorted(str(r) for r in roots))
        raise UsageError(f"the notebooks belong to different projects ({shown}): bundle each")
    return roots.pop()


def _read_lock(source: Path) -> Lock:
    from reprokit.recording.lock import lock_path_for, read_lock

    path = lock_path_for(source)
    if not path.is_file():
        raise UsageError(
            f"{source}: no lock {path.name} beside it; record one first: reprokit record {source}",
            path=str(source),
        )
    return read_lock(path)


# ----------------------------------------------------------------------------- files


def _inside(packing: _Packing, path: Path) -> str:
    """``path``'s name in the bundle (relative to the project root), once it is known to be a
    regular file that stays inside the project, links resolved."""
    root = packing.root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise PathError(str(path), f"leads outside the project {root} (to {resolved}); refused")
    try:
        mode = os.stat(resolved).st_mode
    except OSError as exc:
        raise PathError(str(path), f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PathError(str(path), "not a regular file; refused")
    for lexical in (Path(os.path.normpath(path.absolute())), path.parent.resolve() / path.name):
        if lexical.is_relative_to(root):  # the name it has in the project, links kept
            return lexical.relative_to(root).as_posix()
    return resolved.relative_to(root).as_posix()


def never_packed(name: str) -> str | None:
    """Why the project file ``name`` is never packed (a cache or a credential), else None."""
    parts = PurePosixPath(name).parts
    if any(part in _NEVER_DIRS for part in parts[:-1]):
        return "reprokit's caches, git and credential folders are never packed"
    base = parts[-1]
    if base == ".env" or base.startswith(".env.") or base in _NEVER_NAMES:
        return "a credentials file: never packed"
    if base.endswith(_NEVER_SUFFIXES) or base.startswith(("id_rsa", "id_ed25519", "id_ecdsa")):
        return "a key file: never packed"
    return None


def _add_file(packing: _Packing, path: Path, role: str, notebook: str | None = None) -> str:
    from reprokit.report.bundle import BundledFile

    name = _inside(packing, path)
    if name in packing.entries:  # a data file that is also a notebook, or in two entries
        return name
    why = never_packed(name)
    if why is not None:
        raise PathError(name, why)
    packing.entries[name] = ZipEntry(name, source=path.resolve())
    packing.files.append(BundledFile(name, path.stat().st_size, role, notebook))
    return name


def _add_text(packing: _Packing, name: str, text: str, role: str, nb: str | None = None) -> None:
    from reprokit.report.bundle import BundledFile

    if name in packing.entries:
        raise UsageError(f"{name}: a project file has the name of a file the bundle writes")
    data = text.encode("utf-8")
    packing.entries[name] = ZipEntry(name, data=data)
    packing.files.append(BundledFile(name, len(data), role, nb))


# ----------------------------------------------------------------------------- notebooks


def _pack_notebook(
    packing: _Packing, source: Path, lock: Lock, options: BundleOptions
) -> BundledNotebook:
    from reprokit.recording.lock import lock_path_for
    from reprokit.report.bundle import BundledNotebook

    name = _add_file(packing, source, "notebook")
    lock_path = lock_path_for(source)
    lock_name = _add_file(packing, lock_path, "lock", name)
    sidecars = tuple(
        _add_file(packing, lock_path.parent / file, "sidecar", name)
        for file in sorted(_array_files(lock))
    )
    return BundledNotebook(
        path=name,
        lock=lock_name,
        created_at=lock.created_at,
        reprokit_version=lock.reprokit_version,
        sidecars=sidecars,
        data=tuple(e.path for e in lock.data.entries) if lock.data else (),
        environment=_pack_environment(packing, lock_path, name, options),
        verification=_pack_verification(packing, source, lock, name),
    )


def _array_files(lock: Lock) -> set[str]:
    """The sidecar files the lock's results refer to (relative to the lock's folder)."""
    files: set[str] = set()
    for result in lock.results.values():
        arrays = [result.array, result.index, *(column.data for column in result.columns)]
        files |= {a.file for a in arrays if a is not None and a.file and not a.inline}
    return files


def _stem_folder(notebook: str) -> str:
    return PurePosixPath(notebook).with_suffix("").as_posix()


def _pack_environment(
    packing: _Packing, lock_path: Path, notebook: str, options: BundleOptions
) -> tuple[str, ...]:
    from reprokit.api.env import export_env

    formats = dict(ENV_FORMATS) | ({"pylock": "pylock.toml"} if options.pylock else {})
    names = []
    for fmt, file_name in formats.items():
        done = export_env(lock_path, fmt)
        name = f"environment/{_stem_folder(notebook)}/{file_name}"
        _add_text(packing, name, done.text, "environment", notebook)
        packing.unpinnable.extend(done.unpinnable)
        names.append(name)
    return tuple(names)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Data:
    entries: tuple[DataEntry, ...]
    size: int
    included: bool


def _pack_data(packing: _Packing, locks: list[Lock], options: BundleOptions) -> _Data:
    """Every lock's data entries; their files packed when the options say so."""
    entries = {e.path: e for lock in locks if lock.data for e in lock.data.entries}
    listed = tuple(entries[path] for path in sorted(entries))
    size = sum(entry.size for entry in listed)
    include = options.data == "always" or (options.data == "auto" and size <= options.data_limit)
    if include:
        _refuse_outside_links(packing.root, listed)
        never = [name for entry in listed for name in _pack_entry(packing, entry)]
        if never:
            _refuse_recorded_credentials(never)
    return _Data(listed, size, include)


def _refuse_outside_links(root: Path, entries: tuple[DataEntry, ...]) -> None:
    """A link in the data that leads outside the project, whether the lock lists it (a data
    file, a folder) or not (made in a data folder since): what it points to is not the
    project's, so the bundle is refused rather than written without it."""
    from reprokit.capturing.walk import links_outside

    for entry in entries:
        found = links_outside(root / entry.path, root)
        if found:
            link, _, target = found[0].partition(" -> ")
            raise PathError(
                link,
                f"a link in the data that leads outside the project {root.resolve()} (to "
                f"{target}); refused: put the file itself in the project, or bundle --no-data",
            )


def _refuse_recorded_credentials(names: list[str]) -> None:
    """Files a lock's data records but a bundle never packs (credentials, keys): the bundle
    would not verify (its data incomplete), so none is written."""
    raise UsageError(
        f"{', '.join(names)}: in a lock's data but never packed (credentials or keys), so the "
        "bundle would fail its verification; move them out of the data folder and record "
        "again, or declare a narrower data path",
        path=names[0],
    )


def _pack_entry(packing: _Packing, entry: DataEntry) -> list[str]:
    """Pack the files of ``entry``; those never packed (credentials) are returned."""
    base = packing.root / entry.path
    files = [base] if entry.kind == "file" else [base / f.path for f in entry.files]
    never: list[str] = []
    for path in files:
        normal = Path(os.path.normpath(path))
        if not normal.is_relative_to(packing.root):
            raise PathError(str(path), f"leads outside the project {packing.root}; refused")
        name = normal.relative_to(packing.root).as_posix()
        if never_packed(name) is not None:
            never.append(name)
            continue
        if not path.exists() and not path.is_symlink():
            packing.left_out.append(f"{name} (missing: the data changed since the lock)")
            continue
        _add_file(packing, path, "data")
    return never


# ----------------------------------------------------------------------------- verification


def _pack_verification(
    packing: _Packing, source: Path, lock: Lock, notebook: str
) -> BundledVerification | None:
    """The newest verification report of ``lock``'s notebook under ``.reprokit/runs/`` that is
    newer than the lock, packed under ``reports/``."""
    from reprokit.api.verify import VERIFICATION_ARTIFACTS

    runs = packing.root / ".reprokit" / "runs"
    recorded = _utc_key(lock.created_at)
    pattern = f"*/{glob.escape(source.stem)}/{VERIFICATION_ARTIFACTS}"
    candidates = sorted(runs.glob(pattern), reverse=True)
    for folder in candidates:
        if folder.parent.parent.name[:16] < recorded:
            break  # folders are named by their UTC start time: the rest are older
        verdict = _verdict_of(folder / "verdict.json", lock.notebook.path)
        if verdict is not None:
            return _pack_reports(packing, folder, verdict, notebook)
    return None


def _utc_key(iso: str) -> str:
    """``2026-12-02T07:35:22+00:00`` → ``20261202T073522Z``, the run folders' naming."""
    digits = iso[:19].replace("-", "").replace(":", "")
    return digits + "Z" if len(digits) == 15 else ""


def _verdict_of(path: Path, notebook: str) -> dict[str, Any] | None:
    """The verdict in ``path`` when it is of ``notebook`` (a JSON report of one verdict)."""
    from reprokit.results.untrusted import read_regular

    try:
        document = json.loads(read_regular(path, _MAX_VERDICT_BYTES, what="verdict"))
    except (PathError, ValueError):
        return None
    verdicts = document.get("verdicts") if isinstance(document, dict) else None
    if not isinstance(verdicts, list) or len(verdicts) != 1 or not isinstance(verdicts[0], dict):
        return None
    return verdicts[0] if verdicts[0].get("notebook") == notebook else None


def _pack_reports(
    packing: _Packing, folder: Path, verdict: dict[str, Any], notebook: str
) -> BundledVerification:
    from reprokit.report.bundle import BundledVerification

    reports = []
    for file_name in ("report.html", "verdict.json"):
        path = folder / file_name
        if path.is_file():
            name = f"reports/{_stem_folder(notebook)}/{file_name}"
            _inside(packing, path)
            packing.entries[name] = ZipEntry(name, source=path.resolve())
            packing.files.append(_report_file(name, path, notebook))
            reports.append(name)
    started, ended, version = _run_facts(folder.parent)
    reproduced = bool(verdict.get("reproduced")) and _data_ok(verdict)
    return BundledVerification(
        "reproduced" if reproduced else "not reproduced",
        started,
        ended,
        tuple(reports),
        _text(verdict.get("command")),
        # .reprokit/runs is written by this installation: its version, unless the
        # verification's snapshot says otherwise
        version or __version__,
    )


def _report_file(name: str, path: Path, notebook: str) -> BundledFile:
    from reprokit.report.bundle import BundledFile

    return BundledFile(name, path.stat().st_size, "report", notebook)


def _data_ok(verdict: dict[str, Any]) -> bool:
    data = verdict.get("data")
    return not isinstance(data, dict) or data.get("ok", True) is not False


def _run_facts(folder: Path) -> tuple[str | None, str | None, str | None]:
    """When the verification's execution started and ended (papermill's metadata in the
    executed notebook beside the reports) and the reprokit version of its snapshot, as far as
    the executed notebook says."""
    from reprokit.exceptions import InputError
    from reprokit.notebook.files import load_notebook
    from reprokit.results.notebook import read_notebook

    for executed in sorted(folder.glob("*.ipynb")):
        try:
            node = load_notebook(executed)
            snapshots = read_notebook(node).snapshots
        except InputError:
            continue
        run = node.metadata.get("papermill", {})
        started, ended = (run.get(k) for k in ("start_time", "end_time"))
        version = snapshots[-1].reprokit_version if snapshots else None
        return _text(started), _text(ended), version
    return None, None, None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ----------------------------------------------------------------------------- texts


def _pack_texts(
    packing: _Packing,
    notebooks: list[BundledNotebook],
    data: _Data,
    options: BundleOptions,
    archive_name: str,
) -> None:
    from reprokit.report.bundle import (
        BundleContents,
        citation_cff,
        data_manifest_json,
        project_marker,
        readme,
    )
    from reprokit.report.rocrate import crate_metadata

    _add_text(packing, "data-manifest.json", data_manifest_json(data.entries, data.included), "")
    if "pyproject.toml" not in packing.entries:
        _add_text(packing, "pyproject.toml", project_marker(), "marker")
    contents = BundleContents(
        archive_name=archive_name,
        title=options.title or "Notebooks: " + ", ".join(nb.path for nb in notebooks),
        authors=options.authors,
        notebooks=tuple(notebooks),
        data=data.entries,
        data_included=data.included,
        data_limit=options.data_limit,
        left_out=tuple(packing.left_out),
        reprokit_version=__version__,
        license=options.license,
    )
    _add_text(packing, "README.md", readme(contents), "readme")
    _add_text(packing, "CITATION.cff", citation_cff(contents), "citation")
    files = tuple(sorted(packing.files, key=lambda f: f.name))
    _add_text(packing, "ro-crate-metadata.json", crate_metadata(contents, files), "")


# ----------------------------------------------------------------------------- unpacking


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """``path`` names a bundle: a ``.zip`` file."""
    return str(path).lower().endswith(".zip") and Path(path).is_file()


def unpack_bundles(
    paths: Iterable[str | os.PathLike[str]], execution: ExecutionOptions | None
) -> tuple[list[str | os.PathLike[str]], ExecutionOptions | None]:
    """``paths`` with each bundle replaced by the folder it is unpacked into, and the execution
    options with their output folder set beside the first bundle (unless one was given)."""
    from reprokit.notebook.files import mark_output_folder

    given = list(paths)
    if not any(is_bundle(p) for p in given):
        return given, execution
    options = execution or ExecutionOptions()
    unpacked: list[str | os.PathLike[str]] = []
    runs: Path | None = None
    for path in given:
        if not is_bundle(path):
            unpacked.append(path)
            continue
        work = _work_folder(Path(path), options)
        extract_zip(Path(path), work / "bundle")
        try:
            listed = _listed_notebooks(Path(path), work / "bundle")
        except ReprokitError:
            shutil.rmtree(work, ignore_errors=True)  # nothing of it is left behind
            raise
        mark_output_folder(work.parent)  # notebook discovery never finds the unpacked copies
        unpacked += [work / "bundle", *listed]
        runs = runs or work / "runs"
    if options.output_dir is None and runs is not None:
        options = replace(options, output_dir=runs)
    return unpacked, options


def _listed_notebooks(archive: Path, folder: Path) -> list[Path]:
    """The notebooks that the unpacked bundle's RO-Crate metadata lists, each there with its
    lock: a bundle that lost one (or its metadata) is refused, never verified without it."""
    from reprokit.notebook.files import discover_notebooks
    from reprokit.report.rocrate import crate_notebooks
    from reprokit.results.untrusted import read_regular

    if next(folder.rglob("*.repro.json"), None) is None:
        raise UsageError(
            f"{archive}: not a reprokit bundle (no lock inside): make one with "
            "reprokit bundle NOTEBOOK -o FILE.zip",
            path=str(archive),
        )
    try:
        crate = read_regular(folder / _CRATE, _MAX_CRATE_BYTES, what="RO-Crate metadata")
        listed = crate_notebooks(json.loads(crate))
    except (PathError, ValueError):
        listed = None
    if not listed or not all(_plain_name(name) for name in listed):
        raise UsageError(
            f"{archive}: not a complete reprokit bundle: no readable {_CRATE} listing its "
            "notebooks; nothing verified: ask its author for the bundle reprokit bundle wrote",
            path=str(archive),
        )
    lacking = [why for why in (_lacking(folder, name) for name in listed) if why is not None]
    if lacking:
        raise UsageError(
            f"{archive}: an incomplete bundle: its {_CRATE} lists "
            f"{', '.join(lacking)}; nothing verified: ask its author for the whole bundle",
            path=str(archive),
        )
    # named as well when discovery would pass one by (a hidden folder, an output marker)
    found = set(discover_notebooks([folder]))
    return [folder / name for name in dict.fromkeys(listed) if folder / name not in found]


def _lacking(folder: Path, notebook: str) -> str | None:
    """What the unpacked bundle lacks of the listed ``notebook`` (itself, or its lock)."""
    from reprokit.recording.lock import lock_path_for

    if not (folder / notebook).is_file():
        return f"{notebook} (not in the bundle)"
    lock = lock_path_for(PurePosixPath(notebook))
    return None if (folder / lock).is_file() else f"{notebook} without its lock {lock.as_posix()}"


def _plain_name(name: str) -> bool:
    """``name`` is a relative ``/``-separated path that stays where it is read from."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and "\\" not in name and ".." not in parts


def _work_folder(archive: Path, options: ExecutionOptions) -> Path:
    """A fresh folder for one verification of ``archive``."""
    base = (
        Path(options.output_dir)
        if options.output_dir
        else archive.parent / f"{archive.stem}.verify"
    )
    key = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    return base / key
