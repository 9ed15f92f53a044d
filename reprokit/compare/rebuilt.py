"""How far the environment a notebook ran in (``verify --rebuild-env``) matched its lock.

The kernel's own packages (the snapshot it captured, else what the build installed) against
the lock's pins: how many match, which differ (pip raised a pin to satisfy the kernel's own
requirements, or ``best-effort`` took the nearest version), what was left out, and the notes of
the build (reprokit itself comes from the running reprokit, not the lock's pin).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reprokit.recording.envspec import EnvSpec
from reprokit.runner.envbuild import OWN_DISTRIBUTION, BuiltEnv

__all__ = ["RebuiltEnv", "compare_rebuilt"]


@dataclass(frozen=True)
class RebuiltEnv:
    """The rebuilt environment's match with the lock (no local path: reports travel)."""

    digest: str
    reused: bool  # taken from the cache
    installer: str  # "uv" | "pip"
    pins: int  # the lock's pins that were to be installed
    matched: int  # of those, the ones the kernel had at the locked version
    differs: tuple[str, ...] = ()  # "six 1.16.0 -> 1.17.0" (lock -> kernel)
    substituted: tuple[str, ...] = ()  # "six 9.9.9 -> 1.17.0": best effort's nearest version
    dropped: tuple[str, ...] = ()  # pins not installed: unpinnable, or nothing near available
    notes: tuple[str, ...] = ()


def compare_rebuilt(
    spec: EnvSpec, built: BuiltEnv, kernel_packages: Mapping[str, str] | None
) -> RebuiltEnv:
    """``spec``'s pins (the lock's) against the packages the kernel ran with."""
    have = dict(kernel_packages) if kernel_packages else built.installed
    wanted = {p.name: p.version for p in spec.pins if p.name != OWN_DISTRIBUTION}
    # a dropped pin is said as such, a substituted one as the nearest version installed
    wanted = {n: v for n, v in wanted.items() if n not in built.dropped}
    substituted = {n: b for n, (_, b) in built.substituted.items() if n in wanted}
    differs = tuple(
        f"{name} {version} -> {have.get(name, 'missing')}"
        for name, version in sorted(wanted.items())
        if have.get(name) != substituted.get(name, version)
    )
    return RebuiltEnv(
        digest=built.digest,
        reused=built.reused,
        installer=built.installer,
        pins=len(wanted),
        matched=len(wanted) - len(differs),
        differs=differs,
        substituted=tuple(f"{n} {a} -> {b}" for n, (a, b) in sorted(built.substituted.items())),
        dropped=built.dropped,
        notes=built.notes,
    )
