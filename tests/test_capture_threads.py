"""BLAS/OpenMP thread pools: only libraries already loaded, never an import of numpy."""

from __future__ import annotations

import json
import subprocess
import sys

from reprokit.capturing.model import ThreadPool
from reprokit.capturing.threads import collect_threadpools

SCRIPT = """
import json, sys
from reprokit.capturing.threads import collect_threadpools
before = collect_threadpools()
numpy_imported_by_us = "numpy" in sys.modules
import numpy
after = collect_threadpools()
print(json.dumps({
    "numpy_imported_by_us": numpy_imported_by_us,
    "before": [p.internal_api for p in before],
    "after": [[p.user_api, p.internal_api, p.num_threads, p.filepath] for p in after],
}))
"""


def test_sees_blas_only_once_loaded_and_never_imports_numpy() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["numpy_imported_by_us"] is False
    assert not any(api in ("openblas", "mkl", "blis") for api in report["before"])
    blas = [p for p in report["after"] if p[0] == "blas"]
    assert blas, report
    assert all(p[2] >= 1 and p[3] for p in blas)


def test_pools_are_typed_and_sorted() -> None:
    pools = collect_threadpools()
    assert all(isinstance(p, ThreadPool) for p in pools)
    keys = [(p.user_api, p.internal_api, p.filepath) for p in pools]
    assert keys == sorted(keys)
