"""Every benchmark runs in its quick mode and writes its JSON (figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# every benchmark script, found on disk: a new one is run without being listed here
BENCHMARKS = sorted(path.stem for path in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
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


@pytest.mark.parametrize("share", [0.0, 0.37, 1.0])
def test_bare_two_threads_writes_what_numpy_save_writes(share: float, tmp_path: Path) -> None:
    """The plain two-thread baseline of ``bench_arrays`` does the whole write (a baseline that
    wrote less would flatter the pass it is set against)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_arrays
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    array = np.random.default_rng(3).standard_normal((301, 1009)).astype(np.float32)
    np.save(tmp_path / "expected.npy", array)
    bench_arrays.bare_two_threads(array, tmp_path, share)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
