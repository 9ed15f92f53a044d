"""The machine: operating system, kernel, CPU model, logical cores, total memory.

These facts do not change while a process runs, so :func:`collect_platform` computes
them once per process.  No subprocess is started: Linux answers from ``/etc/os-release``,
``/proc/cpuinfo`` and ``/proc/meminfo``; elsewhere :mod:`platform` and ``os.sysconf`` do.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from reprokit.capturing.model import PlatformInfo

_CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model", "uarch")


@functools.cache
def collect_platform() -> PlatformInfo:
    """OS, kernel, machine, CPU model, logical cores and memory of this machine."""
    uname = platform.uname()
    return PlatformInfo(
        system=uname.system,
        release=uname.release,
        version=uname.version,
        machine=uname.machine,
        os_name=os_name(),
        cpu_model=cpu_model(),
        logical_cores=os.cpu_count() or 1,
        memory_bytes=memory_bytes(),
    )


_OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))


def os_name(candidates: tuple[Path, ...] = _OS_RELEASE) -> str:
    """``PRETTY_NAME`` of os-release (``Debian GNU/Linux 12 (bookworm)``), else platform's."""
    for candidate in candidates:
        fields = _read_key_values(candidate, "=")
        name = fields.get("PRETTY_NAME") or fields.get("NAME")
        if name:
            return name.strip("\"'")
    return platform.platform(terse=True)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, or ``""`` when the system does not say."""
    fields = _read_key_values(cpuinfo, ":")
    for key in _CPU_MODEL_KEYS:
        if fields.get(key):
            return fields[key]
    if platform.system() == "Linux":
        return ""  # platform.processor() would only repeat the machine name
    return platform.processor()


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Total physical memory in bytes; ``None`` when it cannot be read."""
    total = _read_key_values(meminfo, ":").get("MemTotal", "")
    number, _, unit = total.partition(" ")
    if number.isdigit():
        return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _read_key_values(path: Path, separator: str) -> dict[str, str]:
    """``key<sep>value`` lines of a small text file (first value of a key wins); ``{}`` if
    it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields
