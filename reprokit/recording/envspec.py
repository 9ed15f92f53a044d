"""What a lock says to install: the pins of ``reprokit env export`` and ``verify --rebuild-env``.

:func:`env_spec` turns a lock's snapshot into an :class:`EnvSpec`: the Python it was recorded
with and one :class:`Pin` per distribution (every installed one, or only those the notebook
imported and what they depend on), each a PEP 508 requirement: ``name==version``, or
``name @ git+URL@commit`` for a VCS install. A local directory or archive (an editable install
of the project itself, a wheel built on the author's machine) cannot be pinned for reuse: such
pins are kept apart, in ``unpinnable``, so that a front end names them.

A lock is untrusted input and its pins end up on an installer's command line and in files a
user runs: a name that is not a PEP 508 name, a version with anything but the characters of a
PEP 440 version, a URL with spaces or a commit that is not a word are refused with
:class:`~reprokit.exceptions.LockError` naming the field, before anything is written or run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from reprokit.capturing.distributions import public_url
from reprokit.capturing.model import Distribution, PackageOrigin, Snapshot
from reprokit.exceptions import LockError

__all__ = ["EnvSpec", "Pin", "env_spec"]

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,200}[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,100}$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'\\;#]+$")
_WORD = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_VCS = frozenset({"git", "hg", "svn", "bzr"})
# transports an installer may be sent to; git's ext:: and other helpers that run commands never
_VCS_SCHEMES = frozenset({"https", "http", "ssh", "git", "file", "svn", "svn+ssh"})
_ARCHIVE_SCHEMES = frozenset({"https", "http"})


@dataclass(frozen=True)
class Pin:
    """One distribution to install, as the lock recorded it."""

    name: str  # PEP 503 normalised
    version: str
    origin: PackageOrigin | None = None  # None: from a package index
    requested: bool | None = None

    @property
    def pinnable(self) -> bool:
        """Whether it can be installed elsewhere from what the lock says."""
        return self.origin is None or (
            self.origin.kind != "directory" and self.origin.url is not None
        )

    @property
    def requirement(self) -> str:
        """The PEP 508 requirement: ``six==1.16.0``, ``pkg @ git+https://h/r.git@<commit>``,
        ``pkg @ https://h/pkg-1.0.tar.gz``; only meaningful when :attr:`pinnable`."""
        origin = self.origin
        if origin is None or origin.url is None:
            return f"{self.name}=={self.version}"
        if origin.kind == "vcs":
            revision = origin.commit or origin.requested_revision
            url = f"{origin.vcs}+{origin.url}" + (f"@{revision}" if revision else "")
        else:
            url = origin.url
        if origin.subdirectory:
            url += f"#subdirectory={origin.subdirectory}"
        return f"{self.name} @ {url}"

    @property
    def install_argument(self) -> str:
        """What an installer's command line is given: the requirement, except for a VCS pin,
        given as its URL with ``#egg=name`` (pip before 23.3 refuses ``name @ git+file://``)."""
        requirement = self.requirement
        if self.origin is None or self.origin.kind != "vcs" or self.origin.url is None:
            return requirement
        url = requirement.partition(" @ ")[2]
        separator = "&" if "#" in url else "#"
        return f"{url}{separator}egg={self.name}"


@dataclass(frozen=True)
class EnvSpec:
    """An environment to rebuild: the recording's Python and what to install into it."""

    python_version: str  # "3.11.7"
    implementation: str  # "CPython"
    interpreter_tag: str | None  # "cp311"
    platform_tag: str | None  # "linux_x86_64"
    pins: tuple[Pin, ...]  # pinnable ones, sorted by name
    unpinnable: tuple[Pin, ...] = ()  # local directories and archives: named, not installed
    only_imported: bool = False

    @property
    def python_minor(self) -> str:
        """``3.11`` of ``3.11.7``."""
        return ".".join(self.python_version.split(".")[:2])

    def pin(self, name: str) -> Pin | None:
        return next((p for p in (*self.pins, *self.unpinnable) if p.name == name), None)


def env_spec(snapshot: Snapshot | None, source: str, *, only_imported: bool = False) -> EnvSpec:
    """The pins of a lock's ``snapshot`` (``source`` names the lock in errors): every
    installed distribution, or with ``only_imported`` those of the imported modules and,
    through the recorded ``requires`` edges, everything they depend on."""
    if snapshot is None:
        raise LockError(source, "the lock has no snapshot: nothing says what to install")
    names = _wanted(snapshot) if only_imported else set(snapshot.packages)
    pins = [_pin(name, snapshot, source) for name in sorted(names)]
    return EnvSpec(
        python_version=snapshot.python.version,
        implementation=snapshot.python.implementation,
        interpreter_tag=snapshot.python.interpreter_tag,
        platform_tag=snapshot.python.platform_tag,
        pins=tuple(p for p in pins if p.pinnable),
        unpinnable=tuple(p for p in pins if not p.pinnable),
        only_imported=only_imported,
    )


def _wanted(snapshot: Snapshot) -> set[str]:
    """Imported distributions and their dependency closure, among the installed ones."""
    start = set(snapshot.imported_distributions) or _guess_imported(snapshot)
    return _closure(start & set(snapshot.packages), snapshot.distributions)


def _guess_imported(snapshot: Snapshot) -> set[str]:
    """A lock without ``imported_distributions``: module names that are distribution names,
    and the distributions a namespace module's version names (``a==1, b==2``)."""
    found = set()
    for module, version in snapshot.imported.items():
        found.add(_normalise(module))
        found.update(
            _normalise(part.split("==")[0]) for part in version.split(", ") if "==" in part
        )
    return found


def _closure(start: Iterable[str], edges: Mapping[str, Distribution]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name].requires if name in edges else ())
    return seen


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin(name: str, snapshot: Snapshot, source: str) -> Pin:
    version = snapshot.packages.get(name, "")
    where = f"$.snapshot.packages.{name}"
    if not _NAME.match(name):
        raise LockError(source, f"not a distribution name: {name!r}", "$.snapshot.packages")
    if not _VERSION.match(version):
        raise LockError(source, f"not a version: {version!r}", where)
    details = snapshot.distributions.get(name, Distribution())
    origin = details.origin
    if origin is not None:
        # a lock written by hand may hold what capture never writes: credentials
        origin = replace(origin, url=None if origin.url is None else public_url(origin.url))
        _check_origin(origin, source, f"$.snapshot.distributions.{name}.origin")
    return Pin(_normalise(name), version, origin, details.requested)


def _check_origin(origin: PackageOrigin, source: str, field: str) -> None:
    if origin.url is not None and not _URL.match(origin.url):
        raise LockError(source, f"not a URL an installer may be given: {origin.url!r}", field)
    if origin.kind == "vcs" and origin.url is not None and origin.vcs not in _VCS:
        raise LockError(source, f"unknown version control system {origin.vcs!r}", field)
    allowed = _VCS_SCHEMES if origin.kind == "vcs" else _ARCHIVE_SCHEMES
    scheme = (origin.url or "").partition("://")[0].lower()
    if origin.url is not None and scheme not in allowed:
        raise LockError(source, f"a {origin.kind} URL may not use {scheme}://", f"{field}.url")
    for key in ("commit", "requested_revision", "subdirectory"):
        value = getattr(origin, key)
        if value is not None and (not _WORD.match(value) or ".." in value):
            raise LockError(source, f"not a {key.replace('_', ' ')}: {value!r}", f"{field}.{key}")
