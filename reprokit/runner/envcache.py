"""The cache of rebuilt environments (:mod:`reprokit.runner.envbuild`): listed and pruned.

An environment is a folder named by its digest holding ``reprokit-env.json``; its age for
pruning is the time it was last used (``last-used``, touched at each reuse), else when it was
built. ``.building-*`` folders are builds in progress or killed ones: pruning removes those
whose process is gone (or that are a day old), never a build that is still running.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from reprokit._fsutil import process_exists
from reprokit.runner.envbuild import MANIFEST, cache_root

__all__ = ["CachedEnv", "list_envs", "prune_envs"]

_STALE_BUILD_S = 24 * 3600.0


@dataclass(frozen=True)
class CachedEnv:
    digest: str
    path: str
    size_bytes: int
    last_used: float  # seconds since the epoch
    pins: int
    python: str  # the environment's Python version


def list_envs(root: Path | None = None) -> list[CachedEnv]:
    """Every complete environment in the cache, most recently used first."""
    base = cache_root() if root is None else root
    found = [_cached(p) for p in _children(base) if (p / MANIFEST).is_file()]
    return sorted((e for e in found if e is not None), key=lambda e: -e.last_used)


def prune_envs(older_than_s: float | None, root: Path | None = None) -> list[CachedEnv]:
    """Remove environments unused for ``older_than_s`` seconds (``None``: all), and the
    leftovers of killed builds; returns the environments removed."""
    base = cache_root() if root is None else root
    now = time.time()
    removed = [
        env
        for env in list_envs(base)
        if older_than_s is None or now - env.last_used >= older_than_s
    ]
    for env in removed:
        _remove(Path(env.path))
    for leftover in _children(base):
        retired = leftover.name.startswith(".retired-")
        if retired or (leftover.name.startswith(".building-") and _abandoned(leftover, now)):
            _remove(leftover)
    return removed


def _children(base: Path) -> list[Path]:
    try:
        return [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _cached(path: Path) -> CachedEnv | None:
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        used = path / "last-used"
        last = used.stat().st_mtime if used.exists() else (path / MANIFEST).stat().st_mtime
    except (OSError, ValueError):
        return None
    return CachedEnv(
        digest=path.name,
        path=str(path),
        size_bytes=_size(path),
        last_used=last,
        pins=len(data.get("pins", ())),
        python=str(data.get("installed", {}).get("python", "")) or _python_of(path),
    )


def _python_of(env: Path) -> str:
    try:
        for line in (env / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        pass
    return ""


def _size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _abandoned(folder: Path, now: float) -> bool:
    """A build whose process is gone, or one older than a day."""
    parts = folder.name.split("-")
    pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
    try:
        age = now - folder.stat().st_mtime
    except OSError:
        return False
    return pid is None or age >= _STALE_BUILD_S or not process_exists(pid)


def _remove(path: Path) -> None:
    """Renamed out of the way first, so that no reader sees half of it."""
    doomed = path.with_name(f".retired-{path.name.lstrip('.')}")
    try:
        path.rename(doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)
