"""``capture()``: one :class:`~reprokit.capturing.model.Snapshot` of the execution context.

Each fact comes from its own collector (``pyenv``, ``system``, ``threads``, ``envvars``,
``git``, ``accelerator``; data digests from ``hashing``; the facts of ``reprokit.collectors``
plugins from ``extensions``).  Cost is kept low by design:

- git's processes start first and run while the in-process collectors work;
- interpreter and machine facts are computed once per process, installed distributions
  once per state of ``sys.path`` (see :mod:`reprokit.capturing.pyenv`), NVML once;
- nothing heavy is imported: not numpy, torch, pandas, MLflow or papermill (torch is only
  *read* when the notebook imported it), and threadpoolctl, pynvml and blake3 are imported
  on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from reprokit._version import __version__
from reprokit.capturing.accelerator import collect_accelerator
from reprokit.capturing.distributions import collect_distributions
from reprokit.capturing.envvars import collect_environment
from reprokit.capturing.extensions import collect_extensions
from reprokit.capturing.git import start_git
from reprokit.capturing.model import SCHEMA_VERSION, DataManifest, SeedRecord, Snapshot
from reprokit.capturing.pyenv import (
    collect_imported,
    collect_imported_distributions,
    collect_packages,
    collect_python,
)
from reprokit.capturing.system import collect_platform
from reprokit.capturing.threads import collect_threadpools
from reprokit.exceptions import PathError

__all__ = ["capture"]


def capture(
    *,
    data: Sequence[str | bytes | os.PathLike[str]] | str | bytes | os.PathLike[str] = (),
    seeds: SeedRecord | None = None,
    root: str | os.PathLike[str] | None = None,
    algorithm: str = "blake3",
) -> Snapshot:
    """Capture the environment, git state, accelerator and (optionally) data digests.

    ``root`` is where git is looked up and what data paths are made relative to (default:
    the current directory).  ``data`` are files or folders to hash with ``algorithm``
    (a single path is accepted as well as a sequence); a relative one is read from the
    current directory, like any path a user types, and recorded relative to ``root``.
    ``seeds`` is what :func:`~reprokit.capturing.seeds.seed_everything` returned, recorded
    as given. The manifest ``reprokit run`` made is taken first; git runs meanwhile."""
    base, paths = _root_folder(root), _data_paths(data)
    ahead, git = _prehashed(paths, algorithm, base), start_git(base)
    try:
        captured_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        python, platform = collect_python(), collect_platform()
        packages, imported = collect_packages(), collect_imported()
        distributions = collect_distributions()
        imported_distributions = collect_imported_distributions()
        threadpools, environment = collect_threadpools(), collect_environment()
        accelerator = collect_accelerator()
        extensions = collect_extensions()  # reprokit.collectors plugins, loaded on first use
        manifest = ahead if ahead is not None or not paths else _hash_data(paths, algorithm, base)
        git_info = git.result()
    finally:
        git.close()
    return Snapshot(
        schema_version=SCHEMA_VERSION,
        reprokit_version=__version__,
        captured_at=captured_at,
        python=python,
        platform=platform,
        packages=packages,
        imported=imported,
        threadpools=threadpools,
        environment=environment,
        git=git_info,
        accelerator=accelerator,
        seeds=seeds,
        data=manifest,
        extensions=extensions,
        distributions=distributions,
        imported_distributions=imported_distributions,
    )


def _root_folder(root: str | os.PathLike[str] | None) -> Path:
    base = Path.cwd() if root is None else Path(root)
    if not base.is_dir():
        reason = "is not a folder" if base.exists() else "does not exist"
        raise PathError(str(base), f"root {reason}")
    return base


def _data_paths(
    data: Sequence[str | bytes | os.PathLike[str]] | str | bytes | os.PathLike[str],
) -> list[str | os.PathLike[str]]:
    from reprokit.capturing.hashing import path_text

    if isinstance(data, (str, bytes, os.PathLike)):
        return [path_text(data)]  # one path, not a sequence of characters
    return [path_text(path) for path in data]


def _prehashed(
    paths: list[str | os.PathLike[str]], algorithm: str, base: Path
) -> DataManifest | None:
    """The manifest of ``paths`` ``reprokit run`` made while this kernel started, if it is
    for exactly these paths and nothing under them changed until this start cell began
    (:mod:`reprokit.capturing.prehashed`): taken before the other collectors run."""
    if not paths:
        return None
    from reprokit.capturing.prehashed import take_prehashed

    return take_prehashed(paths, algorithm, base)


def _hash_data(paths: list[str | os.PathLike[str]], algorithm: str, base: Path) -> DataManifest:
    from reprokit.capturing.hashing import hash_paths

    return hash_paths(paths, algorithm=algorithm, relative_to=base)
