"""One pass over an array's elements in fixed-size blocks: statistics, digest, ``.npy`` file.

A large result (10⁸ float32 is 400 MB) must not be copied, widened or masked whole: every
step here works on blocks of about :data:`BLOCK_BYTES` in C order, so the memory added is a
few blocks whatever the array's size. A C-contiguous array is walked through views; any other
layout (a transposed or sliced array) is copied one block at a time.

Statistics are combined block by block (Chan, Golub and LeVeque's pairwise update of count,
mean and sum of squared deviations), each block summed in float64, so they agree with numpy's
``mean``/``std`` over the finite values to within rounding. A float32 or float64 run without
an infinity is summarised by the native pass (:mod:`~reprokit.results.native`, built at
install; NaNs left out and counted) where it exists; numpy does the rest, and everything
where it does not.

A large array goes through two threads a few MB at a time: the calling thread summarises
each chunk, a helper thread hashes the chunks in order; either writes a chunk at its offset in
the ``.npy`` file, whichever has time. The array is read from memory about once, both cores
are busy, and only one thread runs numpy's many short calls (two threads doing so take turns
on the GIL: together they were barely faster than one). On 2 cores the floor is the parts'
CPU time over two (10⁸ float32: the write 0.07-0.11 s, BLAKE3 0.12 s, the statistics 0.035 s
in the native pass or 0.1 s with numpy); with the native pass the hashing thread is the
longer one, at about 1.8x the time of ``numpy.save`` on an idle machine.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from reprokit._fsutil import preallocate, usable_cores
from reprokit.results.model import ArrayStats

if TYPE_CHECKING:
    import queue

    import numpy as np

    from reprokit.capturing.values import ArrayHasher

BLOCK_BYTES = 1 << 20
"""Bytes of the array's own elements walked at a time."""


STATS_ELEMENTS = 1 << 17
"""Elements summed at a time for the statistics (the native pass's run, or numpy's float64
copy of 1 MiB). Measured with numpy on a
512 KiB-L2 machine (10⁸ float32): 2¹⁵ and 2¹⁶ elements, whose copy fits that cache, took
0.14 s and 0.11 s against 0.098 s, since numpy's calls cost about 16 µs a run whatever
its length; 2¹⁸ gains under 6 % more for twice the buffer."""


def block_elements(array: np.ndarray, block_bytes: int = BLOCK_BYTES) -> int:
    return max(1, block_bytes // max(1, array.dtype.itemsize))


def blocks(array: np.ndarray, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """1-D C-contiguous runs of ``array``'s elements in C order, about ``block_bytes`` each:
    views of a C-contiguous array, bounded copies of any other."""
    if array.size == 0:
        return
    step = block_elements(array, block_bytes)
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
        for start in range(0, flat.size, step):
            yield flat[start : start + step]
    else:
        yield from _slabs(array, step)


def _slabs(array: np.ndarray, step: int) -> Iterator[np.ndarray]:

    if array.ndim <= 1 or math.prod(array.shape[1:]) <= step:
        rows = max(1, step // max(1, math.prod(array.shape[1:])))
        for start in range(0, array.shape[0] if array.ndim else 1, rows):
            part = array[start : start + rows] if array.ndim else array
            yield _gathered(part).reshape(-1)
    else:
        for row in array:
            yield from _slabs(row, step)


def _gathered(part: np.ndarray) -> np.ndarray:
    """``part`` copied to C order. Where its last axis strides across memory (a transposed
    array) the copy goes in tiles of :data:`_TILE` columns, so the pages it reads at once
    stay few (one page per element read otherwise misses the TLB: four times slower)."""
    import numpy as np

    if part.ndim < 2 or part.shape[-1] <= _TILE or abs(part.strides[-1]) <= 16 * part.itemsize:
        return np.ascontiguousarray(part)
    out = np.empty(part.shape, part.dtype)
    for start in range(0, part.shape[-1], _TILE):
        np.copyto(out[..., start : start + _TILE], part[..., start : start + _TILE])
    return out


_TILE = 512
"""Columns of a strided array copied at a time."""


class StatsAccumulator:
    """Min, max, mean and std over the finite elements, and NaN/inf counts, block by block."""

    def __init__(
        self, kind: str, block_size: int = STATS_ELEMENTS, buffer: np.ndarray | None = None
    ) -> None:
        self.kind = kind
        self.block_size = block_size
        self.count = 0
        self.mean = 0.0  # of the elements less ``shift``
        self.m2 = 0.0
        self.low: Any = None
        self.high: Any = None
        self.nan = self.posinf = self.neginf = 0
        self.native_nan = 0  # NaNs the native pass counted, of which
        self.odd_nan = 0  # not numpy's np.nan bits: the digest rewrites these
        self.nan_seen = False  # the last run the native pass took held a NaN
        self.buffer = buffer  # the float64 copy of a block, made once (or lent)
        self.shift = 0.0

    def add(self, block: np.ndarray) -> None:
        """Fold in one block (1-D, C-contiguous, any length), :data:`STATS_ELEMENTS` at a
        time: each run's extremes, then its moments from a float64 copy, all while the run
        is in the processor's L2 cache."""
        import numpy as np

        for start in range(0, block.size, self.block_size):
            run = block[start : start + self.block_size]
            if self.kind == "f" and self._add_native(run):
                continue
            low, high = run.min(), run.max()  # NaN and ±inf show here, in the array's dtype
            if self.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
                self._add_with_nonfinite(run)
            else:
                self._extremes(low, high)
                self._moments(run)

    def _add_native(self, run: np.ndarray) -> bool:
        """Fold in ``run`` through the native pass (:mod:`~reprokit.results.native`), if it
        can take it: no library, an infinity, sums that overflow, or a mean that dwarfs the
        spread (the squares would cancel) leave it to numpy (False)."""
        from reprokit.results.native import run_sums

        sums = run_sums(run, self.shift, nan_first=self.nan_seen)
        if sums is None:
            return False
        offset = sums.total / sums.kept if sums.kept else 0.0
        if not offset * sums.total <= 0.5 * sums.squares:
            return False  # numpy subtracts the mean first (and may take it as the shift)
        self.nan += sums.nan
        self.native_nan += sums.nan
        self.odd_nan += sums.odd_nan
        self.nan_seen = sums.nan > 0
        if sums.kept:
            self._extremes(sums.low, sums.high)
            self._combine(sums.kept, offset, max(sums.squares - offset * sums.total, 0.0))
        return True

    def _add_with_nonfinite(self, block: np.ndarray) -> None:
        low, high, finite = self._finite_part(block)
        if finite is not None:
            self._extremes(low, high)
            self._moments(block, finite)

    def _extremes(self, low: Any, high: Any) -> None:
        self.low = low if self.low is None or low < self.low else self.low
        self.high = high if self.high is None or high > self.high else self.high

    def _finite_part(self, block: np.ndarray) -> tuple[Any, Any, np.ndarray | None]:
        """Min and max of the block's finite elements and where they are (None: nowhere);
        its NaN and ±inf counted. No copy of the finite elements (numpy holds the GIL to
        make one, which would stop the other thread of the pipeline)."""
        import numpy as np

        finite = np.isfinite(block)
        kept = int(np.count_nonzero(finite))
        nan = int(np.count_nonzero(np.isnan(block)))
        posinf = int(np.count_nonzero(block == np.inf)) if kept + nan < block.size else 0
        self.nan += nan
        self.posinf += posinf
        self.neginf += block.size - kept - nan - posinf
        if not kept:
            return None, None, None
        # over the finite elements only (fmin alone would let a signalling NaN through)
        low = np.minimum.reduce(block, where=finite, initial=np.inf)
        high = np.maximum.reduce(block, where=finite, initial=-np.inf)
        return low, high, finite

    def _widened(self, block: np.ndarray, finite: np.ndarray | None) -> np.ndarray:
        """The block in float64 less the shift; non-finite elements (where ``finite`` is
        False) as 0, which adds nothing to the sums."""
        import numpy as np

        if self.buffer is None or self.buffer.size < block.size:
            self.buffer = np.empty(max(self.block_size, block.size), np.float64)
        wide: np.ndarray = self.buffer[: block.size]
        if self.shift:
            np.subtract(block, np.float64(self.shift), out=wide, casting="unsafe")
        else:
            np.copyto(wide, block, casting="unsafe")
        if finite is not None:  # in the buffer: np.where(finite, ...) makes a new array
            np.copyto(wide, 0.0, where=~finite)
        return wide

    def _moments(self, block: np.ndarray, finite: np.ndarray | None = None) -> None:
        """Count, mean and squared deviations of one block's finite elements, summed in
        float64 around a shift (the first block's mean where it dwarfs the spread) so no sum
        cancels badly."""
        import numpy as np

        n = int(block.size if finite is None else np.count_nonzero(finite))
        wide = self._widened(block, finite)
        total, squares = _sums(wide)
        offset = total / n
        if offset * total <= 0.5 * squares:  # the mean loses at most a bit of the squares
            m2 = max(squares - offset * total, 0.0)
        else:  # a mean large against the spread: subtract it, then what that missed
            wide -= offset
            if finite is not None:
                wide *= finite
            residual = float(wide.sum()) / n
            m2 = max(_sum_of_squares(wide) - n * residual * residual, 0.0)
            if not self.count and not self.shift:
                self.shift, offset = offset, residual  # later blocks are summed around it
            else:
                offset += residual
        self._combine(n, offset, m2)

    def _combine(self, n: int, mean: float, m2: float) -> None:
        """Chan et al.: merge a block's count, mean and squared deviations into the total."""
        if not self.count:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def nan_to_rewrite(self) -> int:
        """0 where no NaN among the elements seen needs its bits rewritten for a digest
        (there is none, or the native pass found them all to be ``np.nan``'s), else how many
        NaNs there are (what :func:`_without_nan_bits` takes)."""
        clean = self.native_nan == self.nan and not self.odd_nan
        return 0 if clean else self.nan

    def merge(self, other: StatsAccumulator) -> None:
        """Fold in what ``other`` accumulated over elements that follow this one's."""
        self.native_nan += other.native_nan
        self.odd_nan += other.odd_nan
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        if other.count:
            if not self.count:  # summed around other's shift: the difference of two is exact
                self.shift = other.shift
            offset = (other.shift - self.shift) + other.mean  # other's mean, around our shift
            self.low = other.low if self.low is None or other.low < self.low else self.low
            self.high = other.high if self.high is None or other.high > self.high else self.high
            self._combine(other.count, offset, other.m2)

    def stats(self) -> ArrayStats:
        """The statistics; one that float64 cannot hold is None, as for an empty array: no
        number to keep. That is a mean or std that overflowed (values near 1e308, or squares
        of values beyond 1e154); a long double's extreme beyond float64's range makes all
        four None."""
        low, high = (None, None) if self.count == 0 else (float(self.low), float(self.high))
        empty = low is None or high is None or not (math.isfinite(low) and math.isfinite(high))
        return ArrayStats(
            min=None if empty else low,
            max=None if empty else high,
            mean=None if empty else _finite(self.shift + self.mean),
            std=None if empty else _finite(math.sqrt(self.m2 / self.count)),
            nan_count=self.nan,
            posinf_count=self.posinf,
            neginf_count=self.neginf,
        )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _sums(wide: np.ndarray) -> tuple[float, float]:
    """The sum and the sum of squares of a float64 block, as BLAS dot products of runs of
    :data:`_DOT_RUN` elements (a matrix-vector product with ones, and one batched
    ``matmul``), numpy for the rest."""
    import numpy as np

    whole = wide.size - wide.size % _DOT_RUN
    total = squares = 0.0
    if whole:
        runs = wide[:whole].reshape(-1, _DOT_RUN)
        total = float(np.matmul(runs, _ones()).sum())
        squares = float(np.matmul(runs[:, None, :], runs[:, :, None]).sum())
    if whole < wide.size:
        rest = wide[whole:]
        total += float(rest.sum())
        squares += float(np.einsum("i,i->", rest, rest))
    return total, squares


@functools.cache
def _ones() -> np.ndarray:
    import numpy as np

    ones: np.ndarray = np.ones(_DOT_RUN)
    ones.flags.writeable = False
    return ones


def _sum_of_squares(wide: np.ndarray) -> float:
    """The sum of the squares of a float64 block: BLAS dot products of runs of
    :data:`_DOT_RUN` elements, all in one batched ``matmul`` (a few times faster than
    ``einsum``; runs that short keep OpenBLAS on this thread), ``einsum`` for the rest."""
    import numpy as np

    whole = wide.size - wide.size % _DOT_RUN
    total = 0.0
    if whole:
        runs = wide[:whole].reshape(-1, _DOT_RUN)
        total = float(np.matmul(runs[:, None, :], runs[:, :, None]).sum())
    if whole < wide.size:
        rest = wide[whole:]
        total += float(np.einsum("i,i->", rest, rest))
    return total


_DOT_RUN = 8192
"""Elements per BLAS dot product (OpenBLAS splits one over threads above 10,000)."""


def has_stats(array: np.ndarray) -> bool:
    """Statistics are kept for real numbers: bool, int, uint, float (not complex)."""
    return bool(array.dtype.kind in "biuf")


def array_stats(array: np.ndarray) -> ArrayStats | None:
    """Statistics of a real numeric array (bool/int/uint/float); None for other dtypes."""
    import numpy as np

    if not has_stats(array):
        return None
    accumulator = StatsAccumulator(array.dtype.kind)
    with np.errstate(over="ignore", invalid="ignore"):
        for block in blocks(array):
            accumulator.add(block)
    return accumulator.stats()


def npy_header(array: np.ndarray) -> bytes:
    """The ``.npy`` header ``numpy.save`` writes for ``array`` copied to C order."""
    import io

    import numpy as np

    fields: dict[str, Any] = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": tuple(int(n) for n in array.shape),
    }
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, fields)
    except ValueError:  # a header over 64 KiB: thousands of dimensions
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, fields)
    return buffer.getvalue()


def npy_size(array: np.ndarray) -> int:
    """Bytes of ``array``'s ``.npy`` file."""
    return len(npy_header(array)) + int(array.nbytes)


def write_npy(handle: BinaryIO, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file: what ``numpy.save`` writes, always in C order."""
    write_described(handle, array, None, None)


def write_described(
    handle: BinaryIO,
    array: np.ndarray,
    hasher: ArrayHasher | None,
    stats: StatsAccumulator | None,
) -> None:
    """Write ``array``'s ``.npy`` file, feeding ``stats`` and ``hasher`` on the way.

    A large array (:func:`pipelined`) goes through two threads chunk by chunk, see
    :func:`_write_pipelined`, or on four processors or more through more
    (:func:`_write_spread`). A smaller C-contiguous one is written from its own memory in one
    call, summarised, then hashed whole, or block by block where the digest must canonicalise
    its bytes (a NaN, big-endian). Any other array is copied, written and hashed one block at
    a time.
    """
    import numpy as np

    handle.write(npy_header(array))
    if pipelined(array):
        preallocate(handle, array.nbytes)
    with np.errstate(over="ignore", invalid="ignore"):
        if pipelined(array) and (hasher is not None or stats is not None):
            threads = summarising_threads()
            if threads > 1:
                _write_spread(handle, array, hasher, stats, threads)
            else:
                _write_pipelined(handle, array, hasher, stats)
        elif array.flags.c_contiguous:
            _write_contiguous(handle, array, hasher, stats)
        else:
            for block in blocks(array):
                handle.write(block.view(np.uint8).data)
                if stats is not None:
                    stats.add(block)
                if hasher is not None:
                    hasher.update(block)


def pipelined(array: np.ndarray) -> bool:
    """Whether :func:`write_described` splits ``array``'s work between two threads (so its
    hasher should be a single-threaded one)."""
    return bool(array.nbytes >= _OVERLAP_BYTES)


class _Scan:
    """Summaries of chunks of an array made on one thread: statistics (or, for complex
    numbers, whether there is a NaN), in a float64 buffer made once."""

    def __init__(self, array: np.ndarray, stats: bool) -> None:
        self.kind = array.dtype.kind
        self.stats = stats
        self.buffer: np.ndarray | None = None

    def summary(self, chunk: np.ndarray) -> tuple[StatsAccumulator | None, int]:
        """The statistics of ``chunk`` (1-D, C-contiguous) and how many NaNs it holds whose
        bits the digest rewrites (0: none; else the NaNs it holds, -1: some, without
        statistics to count them), see :meth:`StatsAccumulator.nan_to_rewrite`."""
        import numpy as np

        if not self.stats:
            return None, -1 if self.kind in "fc" and bool(np.isnan(chunk).any()) else 0
        stats = StatsAccumulator(self.kind, buffer=self.buffer)
        stats.add(chunk)
        self.buffer = stats.buffer
        return stats, stats.nan_to_rewrite()


def _as_digested(array: np.ndarray) -> bool:
    """Whether ``array``'s bytes are the digest's (after NaNs): little-endian, and no long
    double's padding (which the digest takes as zeros)."""
    from reprokit.capturing.values import padding

    order = array.dtype.byteorder
    little = order in "<|" or (order == "=" and sys.byteorder == "little")
    return little and not padding(array.dtype)


def _write_contiguous(
    handle: BinaryIO,
    array: np.ndarray,
    hasher: ArrayHasher | None,
    stats: StatsAccumulator | None,
) -> None:
    import numpy as np

    flat = array.reshape(-1)
    handle.write(flat.view(np.uint8).data)
    part, nan = _Scan(flat, stats is not None).summary(flat) if hasher or stats else (None, False)
    if stats is not None and part is not None:
        stats.merge(part)
    if hasher is None:
        return
    if _as_digested(array) and not nan:
        hasher.update(flat, canonical=True)
    else:
        for block in blocks(flat):
            hasher.update(block)


def _write_pipelined(
    handle: BinaryIO,
    array: np.ndarray,
    hasher: ArrayHasher | None,
    stats: StatsAccumulator | None,
) -> None:
    """Chunks of the array in C order (views, or bounded copies of a non-contiguous one):
    this thread summarises each one (only it runs numpy's short calls, which two threads
    would take turns on the GIL for), a helper hashes them in order (NaNs canonical) and
    writes those this thread did not (it writes one while the helper is :data:`_LAG`
    behind). Each chunk is read by both threads while still in the processor's cache. If
    this thread is interrupted, the helper stops at its next chunk (see :class:`_Sink`)."""
    import queue
    import threading

    scan, contiguous = _Scan(array, stats is not None), array.flags.c_contiguous
    handoff: queue.Queue[tuple[np.ndarray, int, int, bool] | None]
    handoff = queue.Queue(maxsize=_AHEAD if contiguous else 1)  # views, or copies: bounded
    parts: list[StatsAccumulator | None] = []
    little = _as_digested(array)
    sink, abandoned = _Sink(handle), threading.Event()

    def finish(item: tuple[np.ndarray, int, int, bool]) -> None:
        chunk, offset, nan, written = item
        if not abandoned.is_set():
            _hash_and_write(chunk, offset, nan, written, (hasher, little, sink))

    def helper() -> None:
        try:
            _drain(handoff, finish, abandoned)
        finally:
            sink.release()

    with _concurrently([helper]):
        try:
            length = _summarise_and_hand(array, scan, sink, handoff, parts)
        except BaseException:
            abandoned.set()
            raise
        finally:
            handoff.put(None)
    sink.close(length)
    for part in parts:
        if stats is not None and part is not None:
            stats.merge(part)


def summarising_threads() -> int:
    """Threads that summarise a large array's chunks: on a machine of four processors or
    more, up to three beside the hashing thread and the calling one, which then writes (see
    :func:`_write_spread`); else 1, the calling thread (:func:`_write_pipelined`)."""
    cores = usable_cores()
    return 1 if cores < 4 else min(_MAX_SUMMARISING, cores - 2)


_MAX_SUMMARISING = 3
"""Summarising threads at most: more take turns on the GIL for numpy's short calls."""


def _write_spread(
    handle: BinaryIO,
    array: np.ndarray,
    hasher: ArrayHasher | None,
    stats: StatsAccumulator | None,
    threads: int,
) -> None:
    """:func:`_write_pipelined` on more processors: ``threads`` helpers summarise the chunks,
    this thread writes each at its offset as it hands it on, and a helper hashes them in
    order (NaNs canonical, counted by the summaries). The chunks, their summaries and so the
    statistics merged in order are those of the two-thread pass: the same figures, bit for
    bit, on any machine. Interrupted, this thread stops writing and the helpers' results are
    dropped; they never write."""
    from concurrent.futures import ThreadPoolExecutor

    spread = _Spread(handle, array, hasher, stats is not None, threads)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="reprokit-array-summary")
    try:
        with _concurrently([spread.hash_in_order]):
            try:
                length = _spread_chunks(array, pool, spread.summarise, spread.sink, spread.handoff)
            except BaseException:
                spread.abandoned.set()
                raise
            finally:
                spread.handoff.put(None)
    finally:
        pool.shutdown(wait=not spread.abandoned.is_set(), cancel_futures=True)
    spread.sink.close(length)
    for part in spread.parts:
        if stats is not None and part is not None:
            stats.merge(part)


class _Spread:
    """The helpers' side of :func:`_write_spread`."""

    def __init__(
        self,
        handle: BinaryIO,
        array: np.ndarray,
        hasher: ArrayHasher | None,
        stats: bool,
        threads: int,
    ) -> None:
        import queue
        import threading

        self.array, self.hasher, self.stats = array, hasher, stats
        self.little = _as_digested(array)
        bound = (_AHEAD if array.flags.c_contiguous else 1) + threads  # views, or copies
        self.handoff: queue.Queue[tuple[np.ndarray, int, Any, bool] | None] = queue.Queue(bound)
        self.parts: list[StatsAccumulator | None] = []
        self.sink, self.abandoned, self.scans = _Sink(handle), threading.Event(), threading.local()

    def summarise(self, chunk: np.ndarray) -> tuple[StatsAccumulator | None, int]:
        """A summarising thread's work: one float64 buffer per thread; numpy's error state
        is per thread too (overflowing statistics are left out, not warned of)."""
        import numpy as np

        if not hasattr(self.scans, "scan"):
            self.scans.scan = _Scan(self.array, self.stats)
        with np.errstate(over="ignore", invalid="ignore"):
            return cast("tuple[StatsAccumulator | None, int]", self.scans.scan.summary(chunk))

    def hash_in_order(self) -> None:
        """The hashing thread: each chunk once its summary is made (its NaNs counted)."""
        try:
            _drain(self.handoff, self._finish, self.abandoned)
        finally:
            self.sink.release()

    def _finish(self, item: tuple[np.ndarray, int, Any, bool]) -> None:
        chunk, offset, summary, written = item
        if self.abandoned.is_set():
            return
        part, nan = summary.result()
        self.parts.append(part)
        _hash_and_write(chunk, offset, nan, written, (self.hasher, self.little, self.sink))


def _hash_and_write(
    chunk: np.ndarray,
    offset: int,
    nan: int,
    written: bool,
    into: tuple[ArrayHasher | None, bool, _Sink],
) -> None:
    """The hashing thread's work on one chunk, in order: hashed (its NaNs canonical, where
    the bytes are the digest's), and written at its offset unless the caller did."""
    hasher, little, sink = into
    if hasher is not None:
        canonical = _without_nan_bits(chunk, nan) if nan and little else chunk
        hasher.update(canonical, canonical=little)
    if not written:
        sink.write(chunk, offset)


def _spread_chunks(
    array: np.ndarray,
    pool: Any,
    summarise: Callable[[np.ndarray], Any],
    sink: _Sink,
    handoff: queue.Queue[Any],
) -> int:
    """The calling thread's side of :func:`_write_spread`: each chunk's summary asked for,
    the chunk written (where the file has offsets) and handed to the hashing thread; the
    bytes handed."""
    offset = 0
    for chunk in blocks(array, _CHUNK_BYTES if array.flags.c_contiguous else _COPY_BYTES):
        summary = pool.submit(summarise, chunk)
        if sink.positional:
            sink.write(chunk, offset)
        handoff.put((chunk, offset, summary, sink.positional))
        offset += chunk.nbytes
    return offset


def _summarise_and_hand(
    array: np.ndarray,
    scan: _Scan,
    sink: _Sink,
    handoff: queue.Queue[tuple[np.ndarray, int, int, bool] | None],
    parts: list[StatsAccumulator | None],
) -> int:
    """The calling thread's side of :func:`_write_pipelined`; the bytes handed."""
    offset = 0
    for chunk in blocks(array, _CHUNK_BYTES if array.flags.c_contiguous else _COPY_BYTES):
        part, nan = scan.summary(chunk)
        parts.append(part)
        written = sink.positional and handoff.qsize() >= _LAG  # the helper is behind
        if written:
            sink.write(chunk, offset)
        handoff.put((chunk, offset, nan, written))
        offset += chunk.nbytes
    return offset


class _Sink:
    """Where the chunks of a ``.npy`` file go: at their offsets (``pwrite``, from either
    thread) through a duplicate of the handle's file descriptor, which the helper thread
    closes when it is done: even a helper left running by an interruption, after the handle
    was closed and its descriptor's number reused by another file, writes only to this file.
    A handle that is not a plain seekable file (a pipe, a compressed stream, a wrapper), or
    that appends, gets the chunks in order through its ``write`` (from the helper only)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        fd = _positional_fd(handle)
        self.positional = fd is not None
        self.fd: int | None = None
        if fd is not None:
            handle.flush()  # the header, before any chunk goes around the handle's buffer
            self.start = handle.tell()
            self.fd = os.dup(fd)

    def write(self, chunk: np.ndarray, offset: int) -> None:
        import numpy as np

        data = chunk.view(np.uint8).reshape(-1).data
        if not self.positional:
            self.handle.write(data)
            return
        assert self.fd is not None, "written after release"
        position = self.start + offset
        while data:
            done = os.pwrite(self.fd, data, position)
            data, position = data[done:], position + done

    def release(self) -> None:
        """Close the duplicate descriptor (the helper thread, once it writes no more)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def close(self, length: int) -> None:
        """Leave the handle after the ``length`` bytes written."""
        if self.positional:
            self.handle.seek(self.start + length)


def _positional_fd(handle: BinaryIO) -> int | None:
    """The file descriptor of ``handle`` if chunks can be written at offsets through it: a
    plain file object (not one whose ``fileno`` is that of a stream under it), seekable, not
    appending."""
    import io

    plain = (io.BufferedWriter, io.BufferedRandom, io.FileIO)
    if not hasattr(os, "pwrite") or not isinstance(handle, plain):
        return None  # Windows has neither pwrite nor fcntl
    import fcntl

    try:
        fd = handle.fileno()
        appends = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND  # pwrite would append
        seekable = handle.seekable()  # not a pipe
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    return fd if seekable and not appends else None


def _without_nan_bits(chunk: np.ndarray, count: int = -1) -> np.ndarray:
    """``chunk`` (little-endian) with every NaN the one of the digest's encoding (what
    :func:`~reprokit.capturing.values.hash_value` does, but in calls that release the GIL).
    ``count``: how many NaNs it holds (-1: not known). Usually every NaN already is that
    one: counted among the elements' bits, they need no copy."""
    import numpy as np

    one = np.array([np.nan], chunk.dtype)
    if count > 0 and chunk.dtype.kind == "f" and chunk.itemsize in (2, 4, 8):
        as_bits = f"u{chunk.itemsize}"
        if np.count_nonzero(chunk.view(as_bits) == one.view(as_bits)[0]) == count:
            return chunk
    if chunk.dtype.kind == "c":  # each part on its own, as there
        parts = chunk.view(chunk.real.dtype)
        return np.where(np.isnan(parts), np.array(np.nan, parts.dtype), parts).view(chunk.dtype)
    canonical: np.ndarray = np.where(np.isnan(chunk), one[0], chunk)
    return canonical


def _drain(handoff: queue.Queue[Any], work: Callable[[Any], None], abandoned: Any = None) -> None:
    """Call ``work`` on each item put on ``handoff`` until a None; after a failure the items
    are still taken (so the producer never blocks), then the failure is raised. Once
    ``abandoned`` (a ``threading.Event``) is set, the wait ends when nothing is left (the
    producer, interrupted, may never put its None)."""
    import queue

    failure: BaseException | None = None
    while True:
        try:
            item = handoff.get(timeout=_POLL_S)
        except queue.Empty:
            if abandoned is not None and abandoned.is_set():
                break
            continue
        if item is None:
            break
        if failure is None:
            try:
                work(item)
            except BaseException as exc:  # raised once the producer is done
                failure = exc
    if failure is not None:
        raise failure


_POLL_S = 0.2
"""How often a helper waiting for a chunk checks whether the caller gave up."""


_OVERLAP_BYTES = 16 * BLOCK_BYTES
"""Arrays at least this large are written, hashed and summarised on two threads."""

_CHUNK_BYTES = 4 * BLOCK_BYTES
"""Bytes of a C-contiguous array handed from the writing thread to the hashing one at a
time: small enough to stay in the processor's cache between the two."""

_AHEAD = 4
"""Chunks of a C-contiguous array the summarising thread may be ahead of the hashing one:
enough that either can be held up a moment by another process without stopping the other,
few enough that a chunk is still in the processor's cache when the second thread reads it."""

_LAG = 2
"""Chunks waiting for the helper thread from which this thread writes the next one itself."""

_COPY_BYTES = BLOCK_BYTES
"""Bytes of a non-contiguous array copied at a time (at most three copies exist at once)."""


@contextlib.contextmanager
def _concurrently(tasks: list[Callable[[], None]]) -> Iterator[None]:
    """Run ``tasks`` on helper threads for the time of the ``with``; the first exception a
    task raised is raised at its end."""
    import threading

    failure: list[BaseException] = []

    def guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    helpers = [
        threading.Thread(target=guarded, args=(task,), name="reprokit-array-pass", daemon=True)
        for task in tasks
    ]
    for helper in helpers:
        helper.start()
    try:
        yield
    finally:
        for helper in helpers:
            helper.join()
    if failure:
        raise failure[0]
