"""The Python side: interpreter, installed distributions, versions of imported modules.

Installed distributions are found the way :mod:`importlib.metadata` finds them (every
``*.dist-info`` / ``*.egg-info`` in each ``sys.path`` entry; the first one on ``sys.path``
wins), but read cheaply: only the ``Name``/``Version`` headers at the top of each
``METADATA``/``PKG-INFO`` file, falling back to the ``name-version`` folder name when that
file is missing or broken (a distribution with neither is skipped, as pip does, and so are
pip's ``~name`` leftovers of an interrupted uninstall).  Zip or egg files on ``sys.path`` are
left to :mod:`importlib.metadata` itself.  On the development machine (123 distributions)
an ``importlib.metadata`` walk costs about 55 ms plus 40 ms to import it, this scan about
5 ms (0.3 ms when cached), and ``pip freeze`` as a subprocess about 500 ms.

The result is cached per process and reused while every ``sys.path`` entry holds the same
metadata folder names (listing them costs well under a millisecond; an install, upgrade or
removal changes a name, since the folder names carry the version).

Imported modules: each top-level, non-private, non-stdlib name in ``sys.modules`` gets the
version of the distribution of the same (PEP 503-normalised) name, else of the
distribution(s) that install that top-level name (``yaml`` → PyYAML: ``top_level.txt`` or
``RECORD``, read only when needed), else the module's own string ``__version__``.  A name
installed by several distributions (namespace packages) gets ``"dist==version, ..."``.
Modules with none of these (a notebook's local helpers) are left out, and so are the
dependencies reprokit itself imports on first use (:data:`OWN_LAZY_IMPORTS`): otherwise
one capture would change what the next one reports.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.machinery import all_suffixes
from pathlib import Path

from reprokit.capturing.model import PythonInfo

OWN_LAZY_IMPORTS = frozenset({"blake3", "msgspec", "pynvml", "threadpoolctl"})
"""Modules reprokit imports lazily while capturing; never listed as imported."""

_NORMALIZE = re.compile(r"[-_.]+")
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name: ``Foo_Bar.baz`` → ``foo-bar-baz``."""
    return _NORMALIZE.sub("-", name).lower()


@functools.cache
def collect_python() -> PythonInfo:
    """The running interpreter (constant for the life of the process)."""
    return PythonInfo(
        version=platform.python_version(),
        implementation=platform.python_implementation(),
        executable=sys.executable,
        prefix=sys.prefix,
        in_virtualenv=sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        interpreter_tag=_interpreter_tag(),
        platform_tag=_NON_WORD.sub("_", sysconfig.get_platform()),
        libc=" ".join(platform.libc_ver()).strip() or None,
    )


_NON_WORD = re.compile(r"[^A-Za-z0-9]+")
_TAG_PREFIXES = {"cpython": "cp", "pypy": "pp", "ironpython": "ip", "jython": "jy"}


def _interpreter_tag() -> str:
    """The wheel interpreter tag as packaging.tags names it: ``cp311``, ``pp310``."""
    name = sys.implementation.name
    prefix = _TAG_PREFIXES.get(name, name)
    return f"{prefix}{sys.version_info[0]}{sys.version_info[1]}"


def collect_packages() -> dict[str, str]:
    """Every installed distribution (normalised name) → version, sorted by name."""
    return dict(_installed().packages)


def installed_generation() -> object:
    """An object that stays the same while the installed distributions do (cache key)."""
    return _installed()


def distribution_folders() -> dict[str, Path]:
    """Every installed distribution (normalised name) → its ``*.dist-info`` folder (or the
    ``*.egg-info`` file or folder, or the zip file holding it)."""
    return {name: dist.meta for name, dist in _installed().dists.items()}


def collect_imported(modules: Mapping[str, object] | None = None) -> dict[str, str]:
    """Top-level third-party modules in ``modules`` (default ``sys.modules``) → version."""
    installed = _installed()
    found: dict[str, str] = {}
    for name, module in list((sys.modules if modules is None else modules).items()):
        if module is None or not _is_third_party_top_level(name):
            continue
        version = installed.version_of_module(name, module)
        if version:
            found[name] = version
    return dict(sorted(found.items()))


def collect_imported_distributions(modules: Mapping[str, object] | None = None) -> tuple[str, ...]:
    """The distributions (normalised names) that installed the top-level third-party modules
    in ``modules`` (default ``sys.modules``): what ``env export --only-imported`` starts from."""
    installed = _installed()
    found: set[str] = set()
    for name, module in list((sys.modules if modules is None else modules).items()):
        if module is not None and _is_third_party_top_level(name):
            found.update(installed.owners_of_module(name))
    return tuple(sorted(found))


def _is_third_party_top_level(name: str) -> bool:
    return not (
        "." in name
        or name.startswith("_")
        or name in sys.stdlib_module_names
        or name in sys.builtin_module_names
        or name in OWN_LAZY_IMPORTS
    )


@dataclass(frozen=True)
class _Dist:
    name: str  # normalised
    version: str
    meta: Path  # the .dist-info / .egg-info folder (or egg-info file)


_Listing = tuple[tuple[str, tuple[str, ...]], ...]  # (sys.path entry, metadata names)


@dataclass
class _Installed:
    """One scan of the installed distributions, and the sys.path listing it came from."""

    listing: _Listing
    dists: dict[str, _Dist]  # normalised name -> first distribution on sys.path
    packages: dict[str, str]
    _top_level: dict[str, list[_Dist]] | None = field(default=None, repr=False)

    def version_of_module(self, name: str, module: object) -> str | None:
        dist = self.dists.get(normalize_name(name))
        if dist is not None:
            return dist.version
        owners = self.top_level().get(name, [])
        if len(owners) == 1:
            return owners[0].version
        if owners:
            return ", ".join(f"{d.name}=={d.version}" for d in owners)
        namespace = getattr(module, "__dict__", None)
        # the module's own namespace, not getattr: a lazy module __getattr__ could import
        version = namespace.get("__version__") if isinstance(namespace, dict) else None
        return version if isinstance(version, str) else None

    def owners_of_module(self, name: str) -> list[str]:
        dist = self.dists.get(normalize_name(name))
        if dist is not None:
            return [dist.name]
        return [d.name for d in self.top_level().get(name, [])]

    def top_level(self) -> dict[str, list[_Dist]]:
        """Top-level import name → distributions that install it (computed on first use)."""
        if self._top_level is None:
            mapping: dict[str, list[_Dist]] = {}
            for dist in self.dists.values():
                for top in sorted(_top_level_names(dist.meta)):
                    mapping.setdefault(top, []).append(dist)
            self._top_level = mapping
        return self._top_level


_cache: _Installed | None = None


def _installed() -> _Installed:
    global _cache
    listing = _list_metadata(sys.path)
    if _cache is None or _cache.listing != listing:
        _cache = _scan(listing)
    return _cache


def _list_metadata(entries: Iterable[str]) -> _Listing:
    """The metadata folder names in each sys.path entry (``<file>`` for a zip or egg file)."""
    listing = []
    for entry in dict.fromkeys(entries):  # a repeated entry adds nothing
        base = entry or "."
        try:
            names = [n for n in os.listdir(base) if n.lower().endswith(_METADATA_SUFFIXES)]
            if base.lower().endswith(".egg") and "EGG-INFO" in os.listdir(base):
                names.append("EGG-INFO")
        except NotADirectoryError:
            names = ["<file>"]
        except (OSError, ValueError):
            names = []
        listing.append((entry, tuple(sorted(names))))
    return tuple(listing)


def _scan(listing: _Listing) -> _Installed:
    dists: dict[str, _Dist] = {}
    for entry, names in listing:
        for dist in _distributions_in(entry, names):
            dists.setdefault(dist.name, dist)
    packages = {name: dists[name].version for name in sorted(dists)}
    return _Installed(listing, dists, packages)


def _distributions_in(entry: str, names: tuple[str, ...]) -> Iterator[_Dist]:
    if names == ("<file>",):
        yield from _distributions_via_importlib(entry)
        return
    base = Path(entry or ".")
    for name in names:
        if name.startswith("~"):
            continue  # pip's rename of a distribution it is uninstalling
        if name == "EGG-INFO":
            dist = _read_dist(base / name, base.name[: -len(".egg")])
        else:
            dist = _read_dist(base / name, name.rpartition(".")[0])
        if dist is not None:
            yield dist


def _read_dist(meta: Path, stem: str) -> _Dist | None:
    """Name and version from the metadata headers, else from ``name-version`` in ``stem``."""
    if meta.is_dir():
        headers = _headers(meta / "METADATA") or _headers(meta / "PKG-INFO")
    else:
        headers = _headers(meta)  # an egg-info *file* holds PKG-INFO itself
    stem_name, _, rest = stem.partition("-")
    name = headers.get("name") or stem_name
    version = headers.get("version") or rest.partition("-")[0]
    if not name or not version:
        return None
    return _Dist(normalize_name(name), version, meta)


def _headers(path: Path) -> dict[str, str]:
    """``name`` and ``version`` of an RFC 822 metadata file, reading only its header."""
    found: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # end of the header: the description follows
                key, sep, value = line.partition(":")
                key = key.strip().lower()
                if sep and key in ("name", "version") and key not in found:
                    found[key] = value.strip()
                    if len(found) == 2:
                        break
    except OSError:
        return {}
    return found


def _distributions_via_importlib(entry: str) -> Iterator[_Dist]:
    """Distributions inside a zip or egg file on sys.path (rare: importlib reads those)."""
    import importlib.metadata

    for dist in importlib.metadata.distributions(path=[entry]):
        try:
            name, version = dist.metadata["Name"], dist.version
        except (OSError, KeyError, ValueError):
            continue
        if name and version:
            yield _Dist(normalize_name(name), version, Path(entry))


def _top_level_names(meta: Path) -> set[str]:
    """Import names a distribution installs: ``top_level.txt``, else inferred from RECORD."""
    if not meta.is_dir():
        return set()
    try:
        declared = set((meta / "top_level.txt").read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError):
        declared = set()
    if declared:
        return declared
    try:
        record = (meta / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    names = set()
    for line in record.splitlines():
        path = line.rsplit(",", 2)[0].strip('"')
        top, sep, _ = path.partition("/")
        name = top if sep else _module_name(top)
        if name and "." not in name and name not in ("..", "__pycache__"):
            names.add(name)
    return names


_SUFFIXES = sorted(all_suffixes(), key=len, reverse=True)


def _module_name(filename: str) -> str | None:
    """``foo`` for ``foo.py`` / ``foo.cpython-311-x86_64-linux-gnu.so``; None otherwise."""
    for suffix in _SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return None
