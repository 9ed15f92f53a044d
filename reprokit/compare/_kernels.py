"""Chunked array comparison kernels (numpy), one instance per worker thread.

Each kernel walks ``[lo, hi)`` of two flat arrays in chunks of :data:`CHUNK` elements with
preallocated buffers, so nothing larger than a chunk is ever allocated and every ufunc works
in cache and releases the GIL (two threads make two cores busy). A chunk whose bytes are
identical is skipped after one ``memcmp``; the NaN/inf rules cost a second look only in the
chunks that hold a non-finite difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 1 << 18
"""Elements per chunk: 1 to 2 MiB per buffer, which stays in the L2/L3 cache."""

NDArray = Any  # numpy's precise array types add nothing but noise here


@dataclass
class Stats:
    """Partial result of one kernel over one range (flat indices are absolute)."""

    total: int = 0
    bad: int = 0
    first_bad: int = -1
    max_abs: float = 0.0
    max_abs_at: int = -1
    max_rel: float = 0.0
    identical: bool = True

    def absorb(self, other: Stats) -> None:
        self.total += other.total
        self.bad += other.bad
        if other.first_bad >= 0 and (self.first_bad < 0 or other.first_bad < self.first_bad):
            self.first_bad = other.first_bad
        if other.max_abs > self.max_abs:
            self.max_abs, self.max_abs_at = other.max_abs, other.max_abs_at
        self.max_rel = max(self.max_rel, other.max_rel)
        self.identical &= other.identical


def same_bytes(x: NDArray, y: NDArray) -> bool:
    """Bitwise equality of two contiguous chunks.

    The head is looked at first: chunks that differ usually differ at once (noise everywhere),
    and then the full pass is saved. Words are compared as unsigned integers (NaN == NaN).
    """
    xb, yb = _words(x), _words(y)
    head = min(len(xb), 64)
    return bool(np.array_equal(xb[:head], yb[:head]) and np.array_equal(xb, yb))


def _differing_chunks(
    a: NDArray, b: NDArray, lo: int, hi: int, same_dtype: bool, st: Stats
) -> Iterator[tuple[int, NDArray, NDArray]]:
    """``[lo, hi)`` of ``a`` and ``b`` as (offset, chunk of a, chunk of b), every element counted
    in ``st.total``; with the same dtype, a chunk whose bytes are identical is skipped."""
    for i in range(lo, hi, CHUNK):
        j = min(i + CHUNK, hi)
        st.total += j - i
        x, y = a[i:j], b[i:j]
        if not (same_dtype and same_bytes(x, y)):
            yield i, x, y


def _words(x: NDArray) -> NDArray:
    # a view of a non-contiguous array (a complex array's ``.real``, a strided slice) cannot
    # be reinterpreted in place: it is copied first (contiguous chunks are not)
    raw = np.ascontiguousarray(x).view(np.uint8)
    return raw.view(np.uint64) if raw.size % 8 == 0 else raw


class FloatKernel:
    """``|x - y| <= atol + rtol * |y|`` (x current, y reference) in ``compute`` dtype."""

    def __init__(self, compute: Any, rtol: float, atol: float, same_dtype: bool) -> None:
        self.compute = np.dtype(compute)
        self.real = np.finfo(self.compute).dtype  # |complex| is real
        self.rtol, self.atol = rtol, atol
        self.same_dtype = same_dtype
        # |d|/|y| <= rtol implies |d| <= atol + rtol*|y|; the margin covers the rounding of the
        # division and of rtol*|y| (a few ulp), so the shortcut never accepts a failing element
        self.rel_enough = rtol * (1 - 8 * float(np.finfo(self.real).eps))
        self._buffers: dict[str, NDArray] = {}

    def buffer(self, name: str, dtype: Any, m: int) -> NDArray:
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = np.empty(CHUNK, dtype)
        return buf[:m]

    def run(self, a: NDArray, b: NDArray, lo: int, hi: int) -> Stats:
        st = Stats()
        with np.errstate(all="ignore"):
            for i, x, y in _differing_chunks(a, b, lo, hi, self.same_dtype, st):
                self.chunk(self.cast(x, "x"), self.cast(y, "y"), i, st)
        return st

    def cast(self, x: NDArray, name: str) -> NDArray:
        if x.dtype == self.compute:
            return x
        out = self.buffer(name, self.compute, len(x))
        np.copyto(out, x, casting="unsafe")
        return out

    def chunk(self, x: NDArray, y: NDArray, i: int, st: Stats) -> None:
        m = len(x)
        d = self.buffer("d", self.real, m)
        if self.real == self.compute:
            np.subtract(x, y, out=d)
            np.abs(d, out=d)
        else:
            np.abs(np.subtract(x, y, out=self.buffer("c", self.compute, m)), out=d)
        dmax = float(d.max())
        if not math.isfinite(dmax):
            self.nonfinite_chunk(x, y, d, i, st)
            return
        t = self.buffer("t", self.real, m)
        np.abs(y, out=t)
        r = self.buffer("r", self.real, m)
        np.divide(d, t, out=r)
        rel = float(np.fmax.reduce(r))  # fmax skips the NaN of 0/0
        ok = self.buffer("ok", np.bool_, m)
        if dmax <= self.atol or rel <= self.rel_enough:
            bad = 0  # every element passes: no per-element tolerance pass needed
        else:
            if self.rtol:
                np.multiply(t, self.rtol, out=t)
                np.add(t, self.atol, out=t)
                np.less_equal(d, t, out=ok)
            else:
                np.less_equal(d, self.atol, out=ok)
            bad = m - int(np.count_nonzero(ok))
        self.account(x, y, d, dmax, ok, bad, rel, i, st)

    def nonfinite_chunk(self, x: NDArray, y: NDArray, d: NDArray, i: int, st: Stats) -> None:
        """Slow path: NaN equals NaN, inf the same inf; any other non-finite pair is inf apart."""
        nonfinite = ~np.isfinite(d)
        same = _same_elements(x, y)
        good, worse = nonfinite & same, nonfinite & ~same
        d[good], d[worse] = 0, np.inf
        t = np.abs(y)
        ok = d <= self.atol + self.rtol * t
        ok[good], ok[worse] = True, False
        r = d / t
        r[good], r[worse] = 0, np.inf
        rel = float(np.fmax.reduce(r))
        bad = len(x) - int(np.count_nonzero(ok))
        self.account(x, y, d, float(d.max()), ok, bad, rel, i, st)

    def account(
        self,
        x: NDArray,
        y: NDArray,
        d: NDArray,
        dmax: float,
        ok: NDArray,
        bad: int,
        rel: float,
        i: int,
        st: Stats,
    ) -> None:
        if bad:
            st.bad += bad
            if st.first_bad < 0:
                st.first_bad = i + int(np.argmin(ok))
        if dmax > st.max_abs:
            st.max_abs, st.max_abs_at = dmax, i + int(np.argmax(d))
        if not math.isnan(rel):
            st.max_rel = max(st.max_rel, rel)
        if st.identical and not (dmax == 0 and self.same_dtype and only_nan_payload(x, y)):
            st.identical = False


def only_nan_payload(x: NDArray, y: NDArray) -> bool:
    """Equal values whose bytes differ: identical unless a zero changed sign (either part of
    a complex zero: numpy has no ``signbit`` for complex numbers)."""
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        x, y = np.asarray(x, dtype=np.complex128), np.asarray(y, dtype=np.complex128)
        flipped = (np.signbit(x.real) != np.signbit(y.real)) | (
            np.signbit(x.imag) != np.signbit(y.imag)
        )
    else:
        flipped = np.signbit(x) != np.signbit(y)
    return not bool(np.any(flipped & ~np.isnan(x)))


class ExactKernel:
    """Equality for ints, bools, strings, datetimes, records; error sizes for ints."""

    def __init__(self, same_dtype: bool, kinds: str) -> None:
        self.same_dtype = same_dtype
        self.integer = set(kinds) <= set("iu")
        self.datetime = kinds[0] in "Mm"

    def run(self, a: NDArray, b: NDArray, lo: int, hi: int) -> Stats:
        st = Stats()
        buffer = np.empty(min(CHUNK, max(hi - lo, 0)), np.bool_)
        for i, x, y in _differing_chunks(a, b, lo, hi, self.same_dtype, st):
            differ = np.not_equal(x, y, out=buffer[: len(x)])
            if self.datetime:
                differ &= ~(np.isnat(x) & np.isnat(y))
            bad = int(np.count_nonzero(differ))
            if not bad:
                continue
            st.identical = False
            st.bad += bad
            if st.first_bad < 0:
                st.first_bad = i + int(np.argmax(differ))
            if self.integer:
                self.errors(x, y, np.flatnonzero(differ), i, st)
        return st

    def errors(self, x: NDArray, y: NDArray, where: NDArray, i: int, st: Stats) -> None:
        yv = y[where].astype(np.float64)
        d = np.abs(x[where].astype(np.float64) - yv)
        k = int(np.argmax(d))
        if float(d[k]) > st.max_abs:
            st.max_abs, st.max_abs_at = float(d[k]), i + int(where[k])
        with np.errstate(divide="ignore", invalid="ignore"):
            st.max_rel = max(st.max_rel, float(np.fmax.reduce(d / np.abs(yv))))


def _same_elements(x: NDArray, y: NDArray) -> NDArray:
    """Equal, or NaN on both sides; a complex pair part by part (``complex(nan, 1)`` is not
    ``complex(1, nan)``, though ``np.isnan`` holds for both)."""
    if np.iscomplexobj(x):
        return _same_elements(x.real, y.real) & _same_elements(x.imag, y.imag)
    return (x == y) | (np.isnan(x) & np.isnan(y))
