"""Every benchmark runs in its quick mode and writes its JSON (figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "bench_capture",
        "bench_compare",
        "bench_disk",
        "bench_hash",
        "bench_jobs",
        "bench_magic",
        "bench_run",
    ],
)
def test_benchmark_quick_mode_writes_json(name: str, tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "results" / f"{name}.json"
    before = results.stat().st_mtime_ns if results.exists() else 0
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert results.stat().st_mtime_ns > before
    assert json.loads(results.read_text())
