"""benchmarks/plot.py draws valid PNG charts from JSON shaped exactly like the benchmarks'.

The hashing JSON is built of ``_ab.Pair`` values named as bench_hash.py names them; the
runner JSON has the keys bench_run.py writes, and every key the plot reads is checked to be
one bench_run.py writes, so a renamed figure fails here rather than in the lead's final chart run.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _hash_results() -> dict[str, Any]:
    """A quick-mode-sized bench_hash.json, made of the pairs bench_hash.py adds (its own
    ``_ab.Pair`` writer), so a renamed pair fails here."""
    ab = _module("_ab")
    source = (BENCH / "bench_hash.py").read_text(encoding="utf-8")
    pairs = {}
    for name, seconds, base, base_s in [
        ("blake3, API", 0.08, "b3sum", 0.09),
        ("blake3, reprokit hash --no-cache", 0.15, "b3sum", 0.09),
        ("sha256, API", 0.18, "sha256sum", 1.0),
        ("md5, API", 0.41, "md5sum", 0.45),
        ("first hash (cache written)", 0.056, "find | xargs -P2 b3sum", 0.04),
        ("no cache", 0.045, "find | xargs -P2 b3sum", 0.04),
        ("cached re-hash", 0.028, "scandir+stat walk", 0.015),
    ]:
        written = f'"{name}"' if "API" not in name or name.startswith("blake3") else ', API"'
        assert written in source, name
        pairs[name] = ab.Pair(name, (seconds, seconds), (base_s, base_s), base).as_json()
    return {
        "machine": {"python": "3.11.7", "platform": "Linux", "cores": 2},
        "params": {"quick": True, "repeat": 2, "big_bytes": 2**26, "files": 5000},
        "pairs": pairs,
        "figures": {"sha256, hashlib in memory (ceiling) s": 0.17},
    }


_RUN_RESULTS = {
    "params": {"quick": True, "repeat": 1, "cells": 200, "files": 5000, "papermill_cells": 50},
    "pairs": {},
    "figures": {
        "notebooks": 8,
        "bare_papermill_s": 12.4,
        "run_jobs1_s": 5.8,
        "run_jobs2_s": 2.9,
        "run_record_s": 6.2,
        "overhead_per_notebook_s": -0.83,
        "speedup_jobs2": 1.99,
        "record_per_notebook_s": 0.05,
        "cpu_count": 2,
        "python": "3.11.7",
        "quick": True,
    },
}


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 600 and height >= 300


def test_runner_keys_are_the_ones_bench_run_writes() -> None:
    source = (BENCH / "bench_run.py").read_text(encoding="utf-8")
    written = set(re.findall(r'^\s+"(\w+)": ', source, re.M))  # bench_run's plot_figures
    assert set(_RUN_RESULTS["figures"]) == written
    plot_source = (BENCH / "plot.py").read_text(encoding="utf-8")
    read = set(re.findall(r'figures\["(\w+)"\]', plot_source))
    assert read and read <= written


def test_plot_writes_both_charts(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "bench_run.json").write_text(json.dumps(_RUN_RESULTS))
    (results / "bench_hash.json").write_text(json.dumps(_hash_results()))
    plot = _module("plot")
    assert plot.main(["--results", str(results), "--out", str(tmp_path / "figures")]) == 0
    for name in ("runner.png", "hashing.png"):
        _assert_png(tmp_path / "figures" / name)


def test_plot_skips_missing_figures_and_files(tmp_path: Path) -> None:
    """No b3sum on the machine (as in CI): the chart is drawn without those bars."""
    results = tmp_path / "results"
    results.mkdir()
    data = _hash_results()
    for name in ("blake3, API", "blake3, reprokit hash --no-cache"):
        data["pairs"].pop(name)
    (results / "bench_hash.json").write_text(json.dumps(data))
    plot = _module("plot")
    assert plot.main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    _assert_png(tmp_path / "out" / "hashing.png")
    assert not (tmp_path / "out" / "runner.png").exists()
    assert plot.main(["--results", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
