"""Machine facts: OS name, CPU model and memory, from real and sample system files."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from reprokit.capturing.system import collect_platform, cpu_model, memory_bytes, os_name


def test_platform_describes_this_machine() -> None:
    info = collect_platform()
    assert info.system == platform.system()
    assert info.release == platform.release()
    assert info.machine == platform.machine()
    assert info.logical_cores == os.cpu_count()
    assert info.os_name
    if sys.platform == "linux":
        assert info.memory_bytes is not None and info.memory_bytes > 0
    assert collect_platform() is info  # computed once per process


def test_os_name_prefers_pretty_name(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert os_name((release,)) == "Debian GNU/Linux 12 (bookworm)"
    release.write_text('NAME="Alpine Linux"\nID=alpine\n')
    assert os_name((tmp_path / "missing", release)) == "Alpine Linux"


def test_os_name_without_os_release(tmp_path: Path) -> None:
    assert os_name((tmp_path / "missing",)) == platform.platform(terse=True)


def test_cpu_model_from_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"
    cpuinfo.write_text(
        "processor\t: 0\nBogoMIPS\t: 50.00\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4\n"
    )
    assert cpu_model(cpuinfo) == "Raspberry Pi 4"


def test_memory_from_meminfo_and_fallback(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16318412 kB\nMemFree:         1000 kB\n")
    assert memory_bytes(meminfo) == 16318412 * 1024
    fallback = memory_bytes(tmp_path / "missing")
    assert fallback is None or fallback > 0
