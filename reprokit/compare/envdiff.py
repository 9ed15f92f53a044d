"""``diff_snapshots``: what changed in the environment between two executions, and why it matters.

Every difference is one :class:`EnvChange` with a category, the two values (``None`` where a
side does not have the item), a short hint on how it can move numbers, and an importance
(0 = most likely to explain a numerical difference). :class:`EnvDiff` keeps them sorted by
importance, so a report shows TF32, seeds, device and library changes before the kernel
release. Capture time, executable paths and the reprokit version are not compared. Facts that
``reprokit.collectors`` plugins recorded are compared by flat key path (``jax.version``) in
the ``extensions`` category.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from reprokit.capturing.model import (
    AcceleratorInfo,
    GitInfo,
    NumericsFlags,
    PackageOrigin,
    SeedRecord,
    Snapshot,
    ThreadPool,
)
from reprokit.compare import _hints as hints

__all__ = [
    "CATEGORIES",
    "EnvChange",
    "EnvChangeKind",
    "EnvDiff",
    "diff_snapshots",
    "origin_text",
    "unseeded_generators",
]

CATEGORIES = (
    "parameters",
    "numerics",
    "seeds",
    "accelerator",
    "blas",
    "packages",
    "extensions",
    "python",
    "platform",
    "environment",
    "git",
)
"""Categories, in the order a report shows them at equal importance."""

EnvChangeKind = Literal["changed", "added", "removed"]
"""A setting against the reference: a new value, only in current, only in the reference."""


@dataclass(frozen=True)
class EnvChange:
    category: str  # one of CATEGORIES
    key: str  # "cuda_matmul_allow_tf32", "numpy", "GPU 0 name", "OMP_NUM_THREADS"
    reference: str | None  # None: absent (or unknown) in the reference
    current: str | None
    change: EnvChangeKind
    hint: str  # why it matters, one line
    importance: int  # 0 (likely to change numbers) .. 5 (unlikely)


@dataclass(frozen=True)
class EnvDiff:
    changes: tuple[EnvChange, ...] = ()
    # shown, never counted: another commit that changed nothing the lock records of the code
    notes: tuple[EnvChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def in_category(self, category: str) -> tuple[EnvChange, ...]:
        return tuple(c for c in self.changes if c.category == category)

    @property
    def numerics_relevant(self) -> tuple[EnvChange, ...]:
        """Changes of importance 0 to 2: the ones worth showing beside a failed result."""
        return tuple(c for c in self.changes if c.importance <= 2)


def diff_snapshots(reference: Snapshot, current: Snapshot, *, same_source: bool = False) -> EnvDiff:
    """Every environment difference between ``reference`` and ``current``, most relevant first.

    ``same_source``: the notebook's source is known to be the one the reference ran (every
    cell's digest equal); then another git commit alone is a note, not a change
    (:func:`_with_commit_rule`).
    """
    out: list[EnvChange] = []
    out += _diff_python(reference, current)
    out += _diff_platform(reference, current)
    out += _diff_packages(reference, current)
    out += _diff_threadpools(reference.threadpools, current.threadpools)
    out += _diff_accelerator(reference.accelerator, current.accelerator)
    out += _diff_seeds(reference.seeds, current.seeds)
    out += _diff_mapping("environment", reference.environment, current.environment, _env_rank)
    out += _diff_git(reference.git, current.git)
    out += _diff_extensions(reference, current)
    order = {name: i for i, name in enumerate(CATEGORIES)}
    out.sort(key=lambda c: (c.importance, order.get(c.category, len(order)), c.key))
    return _with_commit_rule(out, same_source=same_source)


def _with_commit_rule(changes: list[EnvChange], *, same_source: bool) -> EnvDiff:
    """Another git commit is a change of the code only when the notebook's source differs
    from the reference's, or is not known to be the same.

    A lock never holds the commit that adds it (``record``, then ``git commit`` the lock), so
    a different commit alone would flag every lock committed as the docs say. What the lock
    records of the code is every cell's source digest and the git state; with the source
    unchanged, a different commit is a note: shown, not counted. The dirty flag and the
    uncommitted diff are changes of their own and still count. Imported modules are not
    recorded: the note says that they may differ.
    """
    branch = tuple(c for c in changes if _is_git(c, "branch"))  # a name: always a note
    changes = [c for c in changes if not _is_git(c, "branch")]
    if not same_source:
        return EnvDiff(tuple(changes), branch)
    notes = tuple(
        replace(c, hint=hints.GIT_COMMIT_SAME_SOURCE, importance=5)
        for c in changes
        if _is_git(c, "commit")
    )
    return EnvDiff(tuple(c for c in changes if not _is_git(c, "commit")), notes + branch)


def _is_git(change: EnvChange, key: str) -> bool:
    return change.category == "git" and change.key == key


# a numpy Generator (or RandomState) made without a seed: default_rng(), default_rng(None)
_UNSEEDED = re.compile(r"\b(default_rng|RandomState)\(\s*(None)?\s*\)")


def unseeded_generators(sources: Sequence[tuple[int, str]]) -> tuple[EnvChange, ...]:
    """A likely cause of a result that changed with unchanged seeds: a cell (index, source)
    that makes a numpy Generator without a seed (a cheap textual check: no execution).

    ``index`` is the cell's 0-based position in the notebook file (markdown cells counted,
    papermill's injected-parameters cell not); it is named 1-based, as every message numbers
    cells (docs/verify.md, "How cells are numbered")."""
    for index, source in sources:
        found = _UNSEEDED.search(source)
        if found is not None:
            where = f"{found.group(1)}() in cell {index + 1}"
            change = EnvChange(
                "seeds",
                "unseeded numpy Generator",
                None,
                where,
                "added",
                hints.UNSEEDED_GENERATOR,
                0,
            )
            return (change,)
    return ()


def nothing_seeded(reference: Any, current: Any) -> tuple[EnvChange, ...]:
    """A likely cause of a result that changed when neither run seeded anything (snapshots
    without a seed record)."""
    if reference is None or current is None or reference.seeds or current.seeds:
        return ()
    return (EnvChange("seeds", "seed", "not set", "not set", "changed", hints.NO_SEED, 0),)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _item(category: str, key: str, ref: Any, cur: Any, hint: str, rank: int) -> list[EnvChange]:
    a, b = _text(ref), _text(cur)
    if a == b:
        return []
    change: EnvChangeKind = "added" if a is None else "removed" if b is None else "changed"
    return [EnvChange(category, key, a, b, change, hint, rank)]


def _diff_python(ref: Snapshot, cur: Snapshot) -> list[EnvChange]:
    p, q = ref.python, cur.python
    return [
        *_item("python", "python version", p.version, q.version, hints.PYTHON, 3),
        *_item("python", "implementation", p.implementation, q.implementation, hints.IMPL, 3),
    ]


def _diff_platform(ref: Snapshot, cur: Snapshot) -> list[EnvChange]:
    p, q = ref.platform, cur.platform
    return [
        *_item("platform", "CPU model", p.cpu_model or None, q.cpu_model or None, hints.CPU, 2),
        *_item("platform", "machine", p.machine, q.machine, hints.CPU, 2),
        *_item("platform", "logical cores", p.logical_cores, q.logical_cores, hints.CORES, 3),
        *_item("platform", "system", p.system, q.system, hints.OS, 4),
        *_item("platform", "OS", p.os_name, q.os_name, hints.OS, 4),
        *_item("platform", "kernel", p.release, q.release, hints.KERNEL, 5),
        *_item("platform", "memory", p.memory_bytes, q.memory_bytes, hints.MEMORY, 5),
    ]


def _diff_packages(ref: Snapshot, cur: Snapshot) -> list[EnvChange]:
    imported = {_norm(name) for name in (*ref.imported, *cur.imported)}
    out: list[EnvChange] = []
    for name in sorted({*ref.packages, *cur.packages}):
        norm = _norm(name)
        if norm in hints.NUMERIC_PACKAGES:
            hint, rank = hints.NUMERIC_PACKAGE, 2
        elif norm in imported:
            hint, rank = hints.IMPORTED_PACKAGE, 3
        else:
            hint, rank = hints.PACKAGE, 4
        out += _item("packages", name, ref.packages.get(name), cur.packages.get(name), hint, rank)
    return out + _diff_origins(ref, cur, imported)


def _diff_origins(ref: Snapshot, cur: Snapshot, imported: set[str]) -> list[EnvChange]:
    """Where a distribution present on both sides came from, when both snapshots say (a lock
    of schema 1 does not: no origin is compared then)."""
    a, b = ref.distributions, cur.distributions
    out: list[EnvChange] = []
    for name in sorted(set(a) & set(b) & set(ref.packages) & set(cur.packages)):
        rank = 2 if _norm(name) in hints.NUMERIC_PACKAGES or _norm(name) in imported else 4
        was, now = origin_text(a[name].origin), origin_text(b[name].origin)
        out += _item("packages", f"{name} origin", was, now, hints.ORIGIN, rank)
    return out


def origin_text(origin: PackageOrigin | None) -> str:
    """An origin in a few words: ``index``, ``git+https://host/r.git@1a2b3c4d5e6f``,
    ``local directory main (editable)``."""
    if origin is None:
        return "index"
    if origin.kind == "vcs":
        commit = f"@{origin.commit[:12]}" if origin.commit else ""
        return f"{origin.vcs or 'vcs'}+{origin.url}{commit}"
    if origin.url is not None:
        return origin.url
    kind = "directory" if origin.kind == "directory" else "archive"
    editable = " (editable)" if origin.editable else ""
    return f"local {kind} {origin.local_name or ''}".rstrip() + editable


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _diff_threadpools(ref: tuple[ThreadPool, ...], cur: tuple[ThreadPool, ...]) -> list[EnvChange]:
    out: list[EnvChange] = []
    for key in sorted({_pool_key(p) for p in (*ref, *cur)}):
        mine = sorted((p for p in ref if _pool_key(p) == key), key=lambda p: p.filepath)
        theirs = sorted((p for p in cur if _pool_key(p) == key), key=lambda p: p.filepath)
        for i in range(max(len(mine), len(theirs))):
            label = f"{key[0]}:{key[1]}" + (f" #{i + 1}" if i else "")
            a = mine[i] if i < len(mine) else None
            b = theirs[i] if i < len(theirs) else None
            out += _diff_pool(label, a, b)
    return out


def _pool_key(pool: ThreadPool) -> tuple[str, str]:
    return (pool.user_api, pool.internal_api)


def _diff_pool(label: str, a: ThreadPool | None, b: ThreadPool | None) -> list[EnvChange]:
    if a is None or b is None:
        present = "loaded" if a is not None else None, "loaded" if b is not None else None
        return _item("blas", label, present[0], present[1], hints.BLAS_LIBRARY, 2)
    return [
        *_item("blas", f"{label} version", a.version, b.version, hints.BLAS_LIBRARY, 2),
        *_item("blas", f"{label} threads", a.num_threads, b.num_threads, hints.BLAS_THREADS, 2),
        *_item("blas", f"{label} kernel", a.architecture, b.architecture, hints.BLAS_ARCH, 2),
        *_item("blas", f"{label} layer", a.threading_layer, b.threading_layer, hints.LAYER, 3),
    ]


def _diff_accelerator(a: AcceleratorInfo, b: AcceleratorInfo) -> list[EnvChange]:
    acc = "accelerator"
    out = [
        *_item(acc, "CUDA device", _device(a), _device(b), hints.DEVICE, 0),
        *_item(acc, "torch", a.torch_version, b.torch_version, hints.TORCH, 1),
        *_item(acc, "CUDA runtime", a.cuda_runtime, b.cuda_runtime, hints.CUDA, 1),
        *_item(acc, "cuDNN", a.cudnn_version, b.cudnn_version, hints.CUDNN, 1),
        *_item(acc, "driver", a.driver_version, b.driver_version, hints.DRIVER, 2),
        *_item(acc, "GPU count", len(a.devices), len(b.devices), hints.GPU_COUNT, 2),
    ]
    for i in range(min(len(a.devices), len(b.devices))):
        d, e = a.devices[i], b.devices[i]
        out += _item(acc, f"GPU {i} name", d.name, e.name, hints.GPU_MODEL, 1)
        out += _item(acc, f"GPU {i} SM count", d.sm_count, e.sm_count, hints.SM_COUNT, 1)
        cc = (d.compute_capability, e.compute_capability)
        out += _item(acc, f"GPU {i} compute capability", *cc, hints.GPU_MODEL, 1)
        out += _item(acc, f"GPU {i} memory", d.memory_bytes, e.memory_bytes, hints.MEMORY, 4)
    return out + _diff_flags(a.flags, b.flags)


def _device(info: AcceleratorInfo) -> str:
    return "available" if info.available else "none"


def _diff_flags(a: NumericsFlags | None, b: NumericsFlags | None) -> list[EnvChange]:
    # without torch in one run the flags are unknown there, not changed: rank them lower
    rank, prefix = (0, "") if a and b else (3, hints.FLAGS_UNKNOWN)
    a, b = a or NumericsFlags(), b or NumericsFlags()
    out: list[EnvChange] = []
    for name, hint in hints.FLAGS.items():
        out += _item("numerics", name, getattr(a, name), getattr(b, name), prefix + hint, rank)
    return out


def _diff_seeds(a: SeedRecord | None, b: SeedRecord | None) -> list[EnvChange]:
    if a is None or b is None:
        return _item("seeds", "seeding", _seeded(a), _seeded(b), hints.SEEDING, 0)
    return [
        *_item("seeds", "seed", a.seed, b.seed, hints.SEED, 0),
        *_item("seeds", "deterministic", a.deterministic, b.deterministic, hints.DETERMINISTIC, 0),
        *_item("seeds", "seeded libraries", a.seeded, b.seeded, hints.SEEDED, 1),
        *_item("seeds", "PYTHONHASHSEED", a.pythonhashseed, b.pythonhashseed, hints.HASHSEED, 2),
        *_diff_mapping("seeds", a.settings, b.settings, lambda _key: (hints.SETTING, 1)),
    ]


def _seeded(record: SeedRecord | None) -> str | None:
    return None if record is None else f"seed {record.seed}"


def _diff_mapping(
    category: str, a: dict[str, str], b: dict[str, str], rank: Any
) -> list[EnvChange]:
    out: list[EnvChange] = []
    for key in sorted({*a, *b}):
        hint, importance = rank(key)
        out += _item(category, key, a.get(key), b.get(key), hint, importance)
    return out


def _env_rank(name: str) -> tuple[str, int]:
    return hints.ENV_VARS.get(name, (hints.ENV_VAR, 4))


def _diff_git(a: GitInfo, b: GitInfo) -> list[EnvChange]:
    if not (a.available and b.available):
        return _item("git", "repository", _repo(a), _repo(b), hints.GIT, 3)
    out = [
        *_item("git", "commit", a.commit, b.commit, hints.GIT_COMMIT, 2),
        *_item("git", "dirty", a.dirty, b.dirty, hints.GIT_DIRTY, 2),
        *_item("git", "branch", a.branch, b.branch, hints.GIT_BRANCH, 5),
    ]
    if a.dirty and b.dirty:
        out += _item("git", "uncommitted diff", a.diff_digest, b.diff_digest, hints.GIT_DIRTY, 2)
    return out


def _diff_extensions(ref: Snapshot, cur: Snapshot) -> list[EnvChange]:
    """Facts of ``reprokit.collectors`` plugins, by flat key path (``jax.version``)."""
    if not (ref.extensions or cur.extensions):
        return []
    from reprokit.capturing.extensions import flat_facts

    a, b = flat_facts(ref.extensions), flat_facts(cur.extensions)
    out: list[EnvChange] = []
    for key in sorted({*a, *b}):
        hint = hints.EXTENSION.format(plugin=key.split(".", 1)[0])
        # a plugin exists to record what its author found can move results: rank it so
        out += _item("extensions", key, a.get(key), b.get(key), hint, 2)
    return out


def _repo(info: GitInfo) -> str | None:
    return info.commit or "repository" if info.available else None
