"""BLAS and OpenMP libraries loaded in this process, with their thread counts.

threadpoolctl inspects the shared libraries *already loaded*: that is the point.  A
notebook that imported numpy has its OpenBLAS listed; one that did not has nothing to
list, and importing numpy here would change what we are describing (and cost ~100 ms).
Thread counts can change at any time (``threadpool_limits``), so nothing is cached.
"""

from __future__ import annotations

import os
from typing import Any

from reprokit.capturing.model import ThreadPool


def collect_threadpools() -> tuple[ThreadPool, ...]:
    """One :class:`ThreadPool` per loaded BLAS/OpenMP library, in a stable order."""
    from threadpoolctl import threadpool_info

    pools = [_to_pool(info) for info in threadpool_info()]
    return tuple(sorted(pools, key=lambda p: (p.user_api, p.internal_api, p.filepath)))


def _to_pool(info: dict[str, Any]) -> ThreadPool:
    return ThreadPool(
        user_api=str(info.get("user_api", "")),
        internal_api=str(info.get("internal_api", "")),
        version=_str_or_none(info.get("version")),
        num_threads=int(info.get("num_threads") or 0),
        # the library's file name, never its path: a lock holds no path of the recording machine
        filepath=os.path.basename(str(info.get("filepath", ""))),
        threading_layer=_str_or_none(info.get("threading_layer")),
        architecture=_str_or_none(info.get("architecture")),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
