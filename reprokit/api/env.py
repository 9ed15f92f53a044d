"""``env``: a lock's environment exported for other tools, and the cache of rebuilt ones.

:func:`export_env` writes what a lock recorded as ``requirements.txt``, ``pylock.toml``
(PEP 751) or ``environment.yml``: every installed distribution, or only what the notebook
imported with their dependencies. Distributions that cannot be pinned for reuse are named in
the file's comments and in :attr:`Export.unpinnable`, for the front end to say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.options import ExecutionOptions
    from reprokit.recording.envspec import EnvSpec
    from reprokit.recording.lock_model import Lock
    from reprokit.report.envexport import Artifact
    from reprokit.runner.envbuild import BuiltEnv, EnvBuildHook
    from reprokit.runner.envcache import CachedEnv

__all__ = ["Export", "export_env", "list_envs", "prune_envs", "rebuild_env"]


@dataclass(frozen=True)
class Export:
    text: str
    unpinnable: tuple[str, ...]  # "name version (why)", one per distribution left out
    unresolved: tuple[str, ...] = ()  # pylock: index pins with no file found for this platform


def export_env(
    lock: str | os.PathLike[str],
    fmt: str = "requirements",
    *,
    only_imported: bool = False,
    device: str = "cpu",
) -> Export:
    """The environment of ``lock`` (a lock, or a notebook beside its lock) in format ``fmt``
    (``requirements``, ``pylock``, ``conda``). ``pylock`` asks pip (without installing) which
    file each index pin takes on this platform, on ``device`` for torch."""
    from reprokit.recording.envspec import env_spec
    from reprokit.report.envexport import EXPORT_FORMATS, export_text, unpinnable_lines

    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    path = lock_file(lock)
    spec = env_spec(_read(path).snapshot, str(path), only_imported=only_imported)
    artifacts, unresolved = _artifacts(spec, device) if fmt == "pylock" else ({}, ())
    name = path.name.removesuffix(".repro.json")
    text = export_text(spec, fmt, source=path.name, artifacts=artifacts, env_name=name)
    return Export(text, tuple(unpinnable_lines(spec)), unresolved)


def lock_file(given: str | os.PathLike[str]) -> Path:
    """``given`` when it is a lock, else the lock beside the notebook ``given``."""
    from reprokit.recording.lock import is_lock_path, lock_path_for

    path = Path(given)
    return path if is_lock_path(path) else lock_path_for(path)


def _read(path: Path) -> Lock:
    from reprokit.recording.lock import read_lock

    return read_lock(path)


def _artifacts(spec: EnvSpec, device: str) -> tuple[dict[str, Artifact], tuple[str, ...]]:
    from reprokit.capturing.pyenv import normalize_name
    from reprokit.report.envexport import Artifact
    from reprokit.runner.envresolve import for_device, resolve_pins, torch_index_args

    spec, _ = for_device(spec, device)
    index_pins = [p for p in spec.pins if p.origin is None]
    resolved, missing = resolve_pins(spec, index_pins, torch_index_args(spec, device))
    artifacts = {normalize_name(r.name): Artifact(r.url, r.sha256) for r in resolved if r.url}
    return artifacts, tuple(f"{u.pin.name} {u.pin.version}: {u.reason}" for u in missing)


def rebuild_env(
    lock: Lock,
    lock_path: str | os.PathLike[str],
    execution: ExecutionOptions,
    on_build: EnvBuildHook | None = None,
) -> tuple[EnvSpec, BuiltEnv]:
    """The virtual environment of ``lock`` (every distribution it recorded), from the cache or
    built (:mod:`reprokit.runner.envbuild`); unavailable pins raise
    :class:`~reprokit.exceptions.EnvUnavailableError` before anything is installed, unless
    ``execution.rebuild_env`` is ``best-effort``. ``on_build`` is told as a build (not a
    cached environment) starts and once it is done."""
    from reprokit.recording.envspec import env_spec
    from reprokit.runner.envbuild import prepare_env

    spec = env_spec(lock.snapshot, str(lock_path))
    built = prepare_env(
        spec,
        str(lock_path),
        device=_build_device(execution.device, lock.parameters.device),
        best_effort=execution.rebuild_env == "best-effort",
        force=execution.rebuild_force,
        on_build=on_build,
    )
    return spec, built


def _build_device(requested: str, locked: str) -> str:
    """The device torch is built for: the one asked for, else (auto) CUDA only where the lock
    ran on CUDA and a GPU is visible now (NVML; torch is not imported)."""
    if requested in ("cpu", "cuda"):
        return requested
    if locked != "cuda":
        return "cpu"
    from reprokit.capturing.accelerator import collect_accelerator

    return "cuda" if collect_accelerator().available else "cpu"


def list_envs() -> list[CachedEnv]:
    """The rebuilt environments in the cache (``REPROKIT_ENV_CACHE``, else the user's cache
    folder), most recently used first."""
    from reprokit.runner.envcache import list_envs as listed

    return listed()


def prune_envs(older_than_days: float | None) -> list[CachedEnv]:
    """Remove the rebuilt environments unused for ``older_than_days`` (``None``: all) and the
    leftovers of killed builds; returns those removed."""
    from reprokit.runner.envcache import prune_envs as pruned

    if older_than_days is not None and not older_than_days >= 0:
        raise UsageError(f"--older-than must be a number of days >= 0, got {older_than_days}")
    return pruned(None if older_than_days is None else older_than_days * 86400.0)
