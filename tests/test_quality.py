"""The project's own rules: ruff (lint and format) and mypy --strict pass on the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_check() -> None:
    out = _run("ruff", "check", ".")  # the published notebooks and examples too
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_format() -> None:
    out = _run("ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict() -> None:
    """The ``[tool.mypy]`` settings of pyproject.toml, with the project's own ``.mypy_cache``:
    warm after a developer's mypy run (under a second instead of 10-20 s cold). Only this test
    runs mypy, so no two xdist workers share the cache."""
    pytest.importorskip("mypy")
    out = _run(sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert out.returncode == 0, out.stdout + out.stderr
