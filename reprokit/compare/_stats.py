"""Digest and one-pass statistics of a flat array, chunk by chunk (for ``summarize_array``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reprokit.compare._kernels import CHUNK


def digest_bytes(flat: Any) -> str:
    """``blake3:<hex>`` of a contiguous array's bytes (multithreaded BLAKE3)."""
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update(memoryview(flat.view(np.uint8)))
    return f"blake3:{hasher.hexdigest()}"


def array_stats(flat: Any) -> dict[str, Any]:
    """min/max/mean/std/abs_mean over finite elements, and NaN/inf counts (numeric kinds only)."""
    kind = flat.dtype.kind
    if kind not in "biuf":
        return {}
    acc = _Moments()
    counts = [0, 0, 0]  # nan, +inf, -inf
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: the moments overflow to inf
        lo, hi = _scan(flat, kind, acc, counts)
    stats: dict[str, Any] = {"nan_count": counts[0], "posinf_count": counts[1]}
    stats["neginf_count"] = counts[2]
    if acc.count:
        if kind == "b":
            lo, hi = int(lo), int(hi)
        stats.update(min=lo, max=hi, mean=acc.mean, std=acc.std, abs_mean=acc.abs_mean)
    return stats


def _scan(flat: Any, kind: str, acc: _Moments, counts: list[int]) -> tuple[Any, Any]:
    # preallocated buffers: a fresh 2 MiB temporary per chunk costs page faults, not arithmetic
    values_buf = np.empty(min(CHUNK, flat.size), np.float64)
    finite_buf = np.empty(len(values_buf), np.bool_)
    scratch = np.empty_like(values_buf)
    lo: Any = None
    hi: Any = None
    for i in range(0, flat.size, CHUNK):
        chunk = flat[i : i + CHUNK]
        m = len(chunk)
        values = values_buf[:m]
        np.copyto(values, chunk, casting="unsafe")
        if kind == "f":
            finite = np.isfinite(values, out=finite_buf[:m])
            if not finite.all():
                counts[0] += int(np.count_nonzero(np.isnan(values)))
                counts[1] += int(np.count_nonzero(values == np.inf))
                counts[2] += int(np.count_nonzero(values == -np.inf))
                values, chunk = values[finite], chunk[finite]
        if not values.size:
            continue
        low, high = chunk.min().item(), chunk.max().item()
        lo = low if lo is None else min(lo, low)
        hi = high if hi is None else max(hi, high)
        acc.add(values, scratch[: values.size])
    return lo, hi


class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.abs_sum = 0.0

    def add(self, values: Any, scratch: Any) -> None:
        n = int(values.size)
        mean = float(values.mean())
        np.subtract(values, mean, out=scratch)
        np.square(scratch, out=scratch)
        m2 = float(scratch.sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        np.abs(values, out=scratch)
        self.abs_sum += float(scratch.sum())

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count)

    @property
    def abs_mean(self) -> float:
        return self.abs_sum / self.count
