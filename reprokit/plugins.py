"""Extension points: what other packages add to reprokit through entry points.

Two entry-point groups (see ``docs/extending.md``):

- ``reprokit.collectors`` — a :class:`Collector`: a callable taking no argument and returning
  JSON-able data (or a dataclass of such data). Each capture runs every collector; its output
  lands in ``Snapshot.extensions[<entry-point name>]``.
- ``reprokit.comparators`` — a :class:`Comparator`: an object declaring the Python ``types``
  it handles, how to ``encode`` such a value into a JSON-able payload, and how to ``compare``
  a reference payload with a current one under a ``Tolerance``. Built-in types always win:
  a comparator is consulted only for a value reprokit does not know.

Loading is lazy and happens once per process: ``importlib.metadata`` is asked for the entry
points the first time a capture or an unknown result type needs them, never at
``import reprokit``. A plugin that cannot be imported, or that is not what its group expects,
is left out with a :class:`~reprokit.exceptions.ReprokitWarning` naming it; it never stops
reprokit. When two distributions declare the same name, the first found on ``sys.path`` wins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from reprokit._warn import warn_user

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from reprokit.comparison import Tolerance, ValueComparison

__all__ = [
    "COLLECTORS",
    "COMPARATORS",
    "Collector",
    "Comparator",
    "LoadedCollector",
    "LoadedComparator",
    "clear_cache",
    "collectors",
    "comparator_for",
    "comparator_named",
    "comparators",
]

COLLECTORS = "reprokit.collectors"
COMPARATORS = "reprokit.comparators"


class Collector(Protocol):
    """Returns facts worth recording with every capture: JSON-able data or a dataclass.

    Called in the capturing process (the notebook's kernel, ``reprokit env``) each time a
    snapshot is taken, so it should be cheap and import nothing the process has not imported.
    To report that something is absent, return data that says so; raise only on failure.
    """

    def __call__(self) -> object: ...


class Comparator(Protocol):
    """Encodes and compares results of types reprokit does not know.

    ``types``: classes, or qualified names (``"mylab.units.Measurement"``) so that the
    plugin's module need not import a heavy library to declare them; a value matches when its
    class (or a base class) is declared. ``encode`` returns the JSON-able payload kept in the
    notebook and the lock; ``compare`` gets two such payloads (as decoded from JSON: lists,
    not tuples) and the result's tolerance, and returns a
    :class:`~reprokit.comparison.ValueComparison`.

    Optional: ``describe(payload) -> str``, the short text reports show for a value
    (``1.5 mV``); without it they show the payload.
    """

    @property
    def types(self) -> tuple[type | str, ...]: ...

    def encode(self, value: Any) -> Any: ...

    def compare(self, reference: Any, current: Any, tolerance: Tolerance) -> ValueComparison: ...


@dataclass(frozen=True)
class LoadedCollector:
    name: str  # the entry point's name: the key in Snapshot.extensions
    distribution: str  # the distribution that declared it ("" when unknown)
    collect: Collector


@dataclass(frozen=True)
class LoadedComparator:
    name: str  # the entry point's name: recorded in Result.plugin
    distribution: str
    comparator: Comparator
    types: tuple[type | str, ...]

    def declares(self, cls: type) -> bool:
        """True when ``cls`` itself (not a subclass of it) is one of the declared types."""
        return cls in self.types or _qualified_name(cls) in self.types

    def handles(self, value: object) -> bool:
        """True when ``value``'s class or one of its bases is declared (ABCs included)."""
        if any(self.declares(cls) for cls in type(value).__mro__):
            return True
        classes = tuple(t for t in self.types if isinstance(t, type))
        return bool(classes) and isinstance(value, classes)


_cache: dict[str, tuple[Any, ...]] = {}
_loading = threading.RLock()  # threads may ask at once: load (and warn) once; re-entrant


def collectors() -> tuple[LoadedCollector, ...]:
    """The installed collectors, sorted by name (loaded on first call, then cached)."""
    return _cached(COLLECTORS, _as_collector)


def comparators() -> tuple[LoadedComparator, ...]:
    """The installed comparators, sorted by name (loaded on first call, then cached)."""
    return _cached(COMPARATORS, _as_comparator)


def _cached(group: str, adapt: Any) -> tuple[Any, ...]:
    loaded = _cache.get(group)
    if loaded is None:
        with _loading:
            loaded = _cache.get(group)
            if loaded is None:
                loaded = _cache[group] = tuple(_load(group, adapt))
    return loaded


def comparator_for(value: object) -> LoadedComparator | None:
    """The comparator for ``value``: the one declaring its most specific class, else the
    first (by name) whose declared classes it is an instance of; None when none does."""
    loaded = comparators()
    for cls in type(value).__mro__:
        for plugin in loaded:
            if plugin.declares(cls):
                return plugin
    return next((plugin for plugin in loaded if plugin.handles(value)), None)


def comparator_named(name: str) -> LoadedComparator | None:
    """The comparator whose entry point is called ``name`` (None when not installed)."""
    return next((plugin for plugin in comparators() if plugin.name == name), None)


def clear_cache() -> None:
    """Forget the loaded plugins: the next use asks ``importlib.metadata`` again."""
    with _loading:
        _cache.clear()


def _load(group: str, adapt: Any) -> Iterable[Any]:
    for point in _entry_points(group):
        where = _describe(group, point)
        try:
            target = point.load()
            loaded, problem = adapt(point, target)  # reads its attributes: may raise too
        except Exception as exc:  # a broken plugin must never break reprokit
            _warn(f"{where} could not be loaded: {type(exc).__name__}: {exc}")
            continue
        if loaded is None:
            _warn(f"{where} {problem}")
            continue
        yield loaded


def _entry_points(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    first: dict[str, EntryPoint] = {}
    for point in entry_points(group=group):
        first.setdefault(point.name, point)  # sys.path order: the one Python would import
    return [first[name] for name in sorted(first)]


def _as_collector(point: EntryPoint, target: Any) -> tuple[LoadedCollector | None, str]:
    if not callable(target):
        return None, f"is not callable (a {type(target).__name__})"
    return LoadedCollector(point.name, _distribution(point), target), ""


def _as_comparator(point: EntryPoint, target: Any) -> tuple[LoadedComparator | None, str]:
    missing = [attr for attr in ("types", "encode", "compare") if not hasattr(target, attr)]
    if missing:
        return None, f"is not a comparator: it has no {', '.join(missing)}"
    declared = target.types
    types = (declared,) if isinstance(declared, (type, str)) else tuple(declared)
    if not types or not all(isinstance(t, (type, str)) for t in types):
        return None, "declares no valid types (classes or qualified names)"
    return LoadedComparator(point.name, _distribution(point), target, types), ""


def _describe(group: str, point: EntryPoint) -> str:
    dist = _distribution(point)
    source = f" from {dist}" if dist else ""
    return f"reprokit plugin {point.name!r} ({group} = {point.value}{source})"


def _distribution(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return str(getattr(dist, "name", "") or "")


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _warn(message: str) -> None:
    warn_user(f"{message}; it is ignored")
