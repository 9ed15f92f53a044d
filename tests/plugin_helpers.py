"""The test-only plugin packages of ``tests/plugins/``, installed for real with pip.

Each package is installed by ``pip install --target`` into a folder of its own, once per test
session (per xdist worker): pip builds a wheel with the package's own build backend and
writes a real ``.dist-info`` with its ``entry_points.txt``, which ``importlib.metadata``
finds on ``sys.path`` exactly as in ``site-packages``. pip builds from a copy of the source,
so the checkout stays clean and parallel workers do not share a build folder.

The virtual environment itself is never changed: a folder is put on ``sys.path`` (in-process
tests) or ``PYTHONPATH`` (kernels, CLI subprocesses) only where a test asks for it, so no
other test sees the plugins, and nothing needs uninstalling afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
DEMO = "reprokit_demo_plugin"
BROKEN = "reprokit_broken_plugin"

_installed: dict[str, Path] = {}


def install_plugin(package: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``package`` is pip-installed in (installed on first call)."""
    if package in _installed:
        return _installed[package]
    source = tmp_path_factory.mktemp(f"{package}-source") / package
    shutil.copytree(PLUGINS / package, source)
    target = tmp_path_factory.mktemp(f"{package}-site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # no network and no new build environment: setuptools from the test extra builds it
    command += ["--no-deps", "--no-index", "--no-build-isolation", "--target", str(target)]
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, f"pip could not install {package}:\n{done.stdout}{done.stderr}"
    assert list(target.glob("*.dist-info/entry_points.txt")), f"{package}: no entry points"
    _installed[package] = target
    return target


def python_path(*sites: Path) -> str:
    """``PYTHONPATH`` with ``sites`` first (for kernels and subprocesses)."""
    current = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*(str(site) for site in sites), *([current] if current else [])])
