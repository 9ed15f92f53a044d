"""What a rebuild needs beyond versions: per installed distribution, where it came from
(PEP 610 ``direct_url.json``), whether the user asked for it (PEP 376 ``REQUESTED``) and which
installed distributions it depends on (``Requires-Dist``).

Read from each ``*.dist-info`` folder that :mod:`reprokit.capturing.pyenv` found: one
``listdir`` per folder, ``direct_url.json`` only where it exists, and the ``METADATA`` header
(the ``Requires-Dist`` lines sit above the description).  The result is cached while the set
of metadata folders is unchanged (their names carry the versions).

A requirement that applies only with an extra (``; extra == "test"``) is not an edge: the
extras a user asked for are not recorded anywhere PEP 376 says.  A requirement whose marker
excludes this interpreter is not installed and so is not an edge either.

Nothing local or secret reaches the result: URL credentials are removed, and a local directory
or archive keeps only its file name (:class:`~reprokit.capturing.model.PackageOrigin`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from reprokit.capturing.model import Distribution, OriginKind, PackageOrigin
from reprokit.capturing.pyenv import distribution_folders, installed_generation, normalize_name
from reprokit.capturing.redact import redact_url

__all__ = ["collect_distributions", "origin_from_direct_url", "public_url"]

_DIRECT_URL_LIMIT = 64 * 1024  # a PEP 610 file is a few hundred bytes; never read a huge one
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")

_cache: tuple[object, dict[str, Distribution]] | None = None


def collect_distributions() -> dict[str, Distribution]:
    """Every installed distribution (normalised name) → requested, origin and requires."""
    global _cache
    generation = installed_generation()  # a new one after an install, upgrade or removal
    if _cache is None or _cache[0] is not generation:
        _cache = (generation, _scan(distribution_folders()))
    return dict(_cache[1])


def _scan(folders: Mapping[str, Path]) -> dict[str, Distribution]:
    found = {}
    for name in sorted(folders):
        found[name] = _distribution(folders[name], set(folders))
    return found


def _distribution(meta: Path, installed: set[str]) -> Distribution:
    try:
        names = set(os.listdir(meta))
    except OSError:  # an egg-info file, a zip: nothing more to know
        return Distribution()
    origin = _read_origin(meta / "direct_url.json") if "direct_url.json" in names else None
    # pip, uv and installer write REQUESTED; without INSTALLER nobody said either way
    requested = True if "REQUESTED" in names else (False if "INSTALLER" in names else None)
    requires = _requires(meta / "METADATA", installed) if "METADATA" in names else ()
    return Distribution(requested=requested, origin=origin, requires=requires)


def _requires(path: Path, installed: set[str]) -> tuple[str, ...]:
    """Installed distributions named by ``Requires-Dist`` headers (extras left out)."""
    found: set[str] = set()
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.rstrip("\r\n"):
                    break  # the header ends at an empty line (a folded line holds spaces)
                key, sep, value = line.partition(":")
                if not sep or line[0].isspace() or key.strip().lower() != "requires-dist":
                    continue
                requirement, _, marker = value.partition(";")
                match = _REQUIREMENT_NAME.match(requirement)
                if match and not _EXTRA_MARKER.search(marker):
                    found.add(normalize_name(match.group(1)))
    except OSError:
        return ()
    return tuple(sorted(found & installed))


def _read_origin(path: Path) -> PackageOrigin | None:
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(_DIRECT_URL_LIMIT + 1)[:_DIRECT_URL_LIMIT])
    except (OSError, ValueError):
        return None
    return origin_from_direct_url(data)


def origin_from_direct_url(data: Any) -> PackageOrigin | None:
    """A PEP 610 ``direct_url.json`` object as a :class:`PackageOrigin` (None if malformed)."""
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    url: str = data["url"]
    subdirectory = _text(data.get("subdirectory"))
    vcs_info, archive_info, dir_info = (
        data.get(key) for key in ("vcs_info", "archive_info", "dir_info")
    )
    if isinstance(vcs_info, dict):
        return _vcs_origin(url, vcs_info, subdirectory)
    kind: OriginKind = "directory" if isinstance(dir_info, dict) else "archive"
    editable = isinstance(dir_info, dict) and dir_info.get("editable") is True
    archive_hash = _archive_hash(archive_info) if isinstance(archive_info, dict) else None
    if _is_local(url):
        name = _local_name(url)
        return PackageOrigin(kind, local=True, local_name=name, editable=editable)
    url = public_url(url)
    return PackageOrigin(kind, url=url, subdirectory=subdirectory, archive_hash=archive_hash)


def _vcs_origin(url: str, info: dict[str, Any], subdirectory: str | None) -> PackageOrigin:
    return PackageOrigin(
        "vcs",
        url=public_url(url),
        local=_is_local(url),
        vcs=_text(info.get("vcs")),
        commit=_text(info.get("commit_id")),
        requested_revision=_text(info.get("requested_revision")),
        subdirectory=subdirectory,
    )


def _archive_hash(info: dict[str, Any]) -> str | None:
    hashes = info.get("hashes")
    if isinstance(hashes, dict):
        for algorithm in ("sha256", "sha384", "sha512"):
            if isinstance(hashes.get(algorithm), str):
                return f"{algorithm}={hashes[algorithm]}"
    return _text(info.get("hash"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_local(url: str) -> bool:
    return urlsplit(url).scheme.lower().rpartition("+")[2] == "file"


def _local_name(url: str) -> str | None:
    return Path(unquote(urlsplit(url).path)).name or None


def public_url(url: str) -> str:
    """``url`` safe to write down: no user name or password on an http(s) URL (there a user
    name alone is a token), other credentials removed as :func:`redact_url` does."""
    parts = urlsplit(url)
    if parts.scheme.lower().rpartition("+")[2] in ("http", "https") and "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return redact_url(url)
