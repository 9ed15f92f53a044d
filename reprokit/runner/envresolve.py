"""Which installer builds an environment, and what a lock's pins resolve to before anything
is installed.

The installer is ``uv`` when it is on ``PATH`` (or importable as the ``uv`` package), else the
running interpreter's ``pip`` (which also honours the machine's pip configuration: indexes,
find-links, constraints). :func:`resolve_pins` asks it, without installing, for the file each
index pin would take on this platform (``pip install --dry-run --report``, one pin at a time
only for the pins the batch could not resolve): a yanked or missing version, or a version
without a wheel for this platform, is *unavailable* and named with the versions that exist.

Index pins are installed from wheels only (``--only-binary :all:``): building an sdist runs
its code, and a lock is untrusted input; a pin with no wheel here is unavailable.
``torch`` is never resolved unpinned, and on the CPU (``device == "cpu"``) it comes from the
CPU wheel index of PyTorch unless a local file or index already holds the pinned build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reprokit.recording.envspec import EnvSpec, Pin

__all__ = [
    "Installer",
    "ResolvedPin",
    "Unavailable",
    "available_versions",
    "find_installer",
    "for_device",
    "nearest_version",
    "pip_command",
    "resolve_pins",
    "run_installer",
    "torch_index_args",
]

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_RESOLVE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Installer:
    """``uv`` or ``pip``, and the command that runs it."""

    name: str  # "uv" | "pip"
    command: tuple[str, ...]  # ("/usr/bin/uv", "pip") | (sys.executable, "-m", "pip")


@dataclass(frozen=True)
class ResolvedPin:
    name: str
    version: str
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Unavailable:
    """A pin the installer cannot satisfy here, and the nearest version it can."""

    pin: Pin
    reason: str  # "no such version or no wheel for cp311 linux_x86_64"
    nearest: str | None = None  # the closest available version (best effort installs it)


def find_installer() -> Installer:
    """uv when it can be found, else pip of the running interpreter."""
    found = shutil.which("uv")
    if found is None:
        try:
            from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

            found = str(find_uv_bin())
        except (ImportError, FileNotFoundError):
            found = None
    if found is not None:
        return Installer("uv", (found, "pip"))
    return Installer("pip", (sys.executable, "-m", "pip"))


_CUDA_ONLY = re.compile(
    r"^(triton|nvidia-[a-z0-9-]+-cu\d+"
    r"|nvidia-(cuda|cublas|cudnn|cufft|cufile|curand|cusolver|cusparse|nccl|nvjitlink|nvtx|nvshmem)"
    r"[a-z0-9-]*)$"
)
"""Distributions only a CUDA build of torch needs (``nvidia-cublas-cu12``, ``triton``): left
out of a CPU rebuild. ``nvidia-ml-py`` (NVML bindings, no CUDA) is not one of them."""


def for_device(spec: EnvSpec, device: str) -> tuple[EnvSpec, tuple[str, ...]]:
    """``spec`` as it is built for ``device``: on the CPU, a pinned torch loses its CUDA local
    label (``2.4.0+cu121`` → ``2.4.0``, taken as the CPU build) and the CUDA libraries only
    its CUDA build needs are left out (named in the notes returned)."""
    torch = spec.pin("torch")
    if torch is None or device == "cuda":
        return spec, ()
    release, _, label = torch.version.partition("+")
    cpu_torch = replace(torch, version=release if label != "cpu" else torch.version)
    dropped = tuple(p.name for p in spec.pins if _CUDA_ONLY.match(p.name))
    pins = tuple(cpu_torch if p is torch else p for p in spec.pins if p.name not in dropped)
    notes = (f"CPU build of torch {release}: left out CUDA libraries {', '.join(dropped)}",)
    return replace(spec, pins=pins), notes if dropped else ()


def torch_index_args(
    spec: EnvSpec, device: str, python: str | None = None, installer: str = "pip"
) -> list[str]:
    """``--extra-index-url`` of PyTorch's CPU wheels when torch is pinned, runs on the CPU and
    no CPU build of it is found without (pip's own files and indexes come first; uv, which
    does not read pip's configuration, always gets the CPU index)."""
    torch = spec.pin("torch")
    if torch is None or device == "cuda":
        return []
    if installer == "uv":
        return ["--extra-index-url", TORCH_CPU_INDEX]
    found = _dry_run([torch.requirement], [], python)
    if found and any("+cpu" in (r.version + (r.url or "")) for r in found):
        return []
    return ["--extra-index-url", TORCH_CPU_INDEX]


def resolve_pins(
    spec: EnvSpec, pins: Sequence[Pin], index_args: list[str], python: str | None = None
) -> tuple[list[ResolvedPin], list[Unavailable]]:
    """What ``pins`` (index pins) take here for ``python`` (default: this interpreter), and
    those that cannot be had; nothing is installed. pip names the first pin it cannot
    satisfy (with the versions there are): that pin is set aside and the rest tried again, so
    a lock with a few missing pins costs a few passes, not one per pin."""
    left = list(pins)
    missing: list[Unavailable] = []
    while left:
        report, stderr = _dry_run_report([p.requirement for p in left], index_args, python)
        if report is not None:
            return report, missing
        failed = _failing_pin(stderr, left)
        if failed is None:  # a failure pip did not explain: find it pin by pin
            return _one_by_one(spec, left, index_args, python, missing)
        pin, versions = failed
        missing.append(_unavailable(pin, spec, versions))
        left.remove(pin)
    return [], missing


_NOT_FOUND = re.compile(
    r"satisfies the requirement (\S+?)(?:==\S+)? \(from versions: ([^)]*)\)", re.IGNORECASE
)


def _failing_pin(stderr: str, pins: list[Pin]) -> tuple[Pin, list[str]] | None:
    found = _NOT_FOUND.search(stderr)
    if found is None:
        return None
    name = re.sub(r"[-_.]+", "-", found.group(1).split("[")[0]).lower()
    versions = [v.strip() for v in found.group(2).split(",") if v.strip() and v.strip() != "none"]
    pin = next((p for p in pins if p.name == name), None)
    return None if pin is None else (pin, versions)


def _one_by_one(
    spec: EnvSpec,
    pins: list[Pin],
    index_args: list[str],
    python: str | None,
    missing: list[Unavailable],
) -> tuple[list[ResolvedPin], list[Unavailable]]:
    resolved: list[ResolvedPin] = []
    for pin in pins:
        one, _ = _dry_run_report([pin.requirement], index_args, python)
        if one is not None:
            resolved += one
        else:
            missing.append(_unavailable(pin, spec, available_versions(pin.name, index_args)))
    return resolved, missing


def pip_command(python: str | None) -> list[str]:
    """pip of this interpreter, acting on ``python``'s environment when given."""
    base = [sys.executable, "-m", "pip"]
    return base if python is None or python == sys.executable else [*base, "--python", python]


def _dry_run(
    requirements: list[str], index_args: list[str], python: str | None
) -> list[ResolvedPin] | None:
    return _dry_run_report(requirements, index_args, python)[0]


def _dry_run_report(
    requirements: list[str], index_args: list[str], python: str | None
) -> tuple[list[ResolvedPin] | None, str]:
    """pip's resolution of ``requirements`` (None when it failed) and its error output."""
    with tempfile.TemporaryDirectory(prefix="reprokit-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        command = [*pip_command(python), "install", "--dry-run", "--ignore-installed"]
        command += ["--no-deps", "--only-binary", ":all:", "--quiet", "--report", str(report)]
        command += [*index_args, *requirements]
        done = _run(command)
        if done.returncode != 0 or not report.is_file():
            return None, done.stderr
        return _read_report(report), done.stderr


def _read_report(path: Path) -> list[ResolvedPin]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in data.get("install", []):
        meta, info = item.get("metadata", {}), item.get("download_info", {})
        hashes = info.get("archive_info", {}).get("hashes", {})
        out.append(
            ResolvedPin(
                meta.get("name", ""), meta.get("version", ""), info.get("url"), hashes.get("sha256")
            )
        )
    return out


def _unavailable(pin: Pin, spec: EnvSpec, versions: list[str]) -> Unavailable:
    where = " ".join(t for t in (spec.interpreter_tag, spec.platform_tag) if t) or "this platform"
    reason = f"{pin.version} not found (yanked, never released, or no wheel for {where})"
    return Unavailable(pin, reason, nearest_version(pin.version, versions))


def available_versions(name: str, index_args: list[str]) -> list[str]:
    """The versions pip can install here (wheels only), from ``pip index versions``."""
    command = [sys.executable, "-m", "pip", "index", "versions", name, "--only-binary", ":all:"]
    done = _run([*command, *index_args])
    found = re.search(r"Available versions:\s*(.+)", done.stdout)
    return [v.strip() for v in found.group(1).split(",")] if found else []


def nearest_version(wanted: str, versions: Sequence[str]) -> str | None:
    """The available version closest to ``wanted``: the newest one not above it, else the
    oldest one above it (compared by release numbers)."""
    key = _release(wanted)
    below = [v for v in versions if _release(v) <= key]
    if below:
        return max(below, key=_release)
    return min(versions, key=_release) if versions else None


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:6])


def run_installer(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run an installer command (PYTHONPATH left out: it must not see this process's path)."""
    return _run(command)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=_RESOLVE_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
