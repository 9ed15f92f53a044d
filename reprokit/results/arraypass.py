"""One pass over an array's elements in fixed-size blocks: statistics, digest, ``.npy`` file.

A large result (10⁸ float32 is 400 MB) must not be copied, widened or masked whole: every
step here works on blocks of about :data:`BLOCK_BYTES` in C order, so the memory added is a
few blocks whatever the array's size. A C-contiguous array is walked through views; any other
layout (a transposed or sliced array) is copied one block at a time.

Statistics are combined block by block (Chan, Golub and LeVeque's pairwise update of count,
mean and sum of squared deviations), each block summed in float64, so they agree with numpy's
``mean``/``std`` over the finite values to within rounding.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from reprokit.results.model import ArrayStats

if TYPE_CHECKING:
    import numpy as np

    from reprokit.capturing.values import ArrayHasher

BLOCK_BYTES = 1 << 20
"""Bytes of the array's own elements walked at a time."""


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
    import numpy as np

    if array.ndim <= 1 or math.prod(array.shape[1:]) <= step:
        rows = max(1, step // max(1, math.prod(array.shape[1:])))
        for start in range(0, array.shape[0] if array.ndim else 1, rows):
            part = array[start : start + rows] if array.ndim else array
            yield np.ascontiguousarray(part).reshape(-1)
    else:
        for row in array:
            yield from _slabs(row, step)


class StatsAccumulator:
    """Min, max, mean and std over the finite elements, and NaN/inf counts, block by block."""

    def __init__(self, kind: str, block_size: int) -> None:
        self.kind = kind
        self.block_size = block_size
        self.count = 0
        self.mean = 0.0  # of the elements less ``shift``
        self.m2 = 0.0
        self.low: Any = None
        self.high: Any = None
        self.nan = self.posinf = self.neginf = 0
        self._wide: np.ndarray | None = None  # the float64 copy of a block, made once
        self.shift = 0.0

    def add(self, block: np.ndarray) -> None:
        """Fold in one block (1-D, at most ``block_size`` elements)."""
        import numpy as np

        if not block.size:
            return
        low, high = block.min(), block.max()  # NaN and ±inf show here, in the array's dtype
        if self.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
            block = self._finite_part(block)
            if not block.size:
                return
            low, high = block.min(), block.max()
        self.low = low if self.low is None or low < self.low else self.low
        self.high = high if self.high is None or high > self.high else self.high
        self._moments(block)

    def _finite_part(self, block: np.ndarray) -> np.ndarray:
        import numpy as np

        nan = np.isnan(block)
        self.nan += int(np.count_nonzero(nan))
        self.posinf += int(np.count_nonzero(block == np.inf))
        self.neginf += int(np.count_nonzero(block == -np.inf))
        finite: np.ndarray = block[np.isfinite(block)]
        return finite

    def _moments(self, block: np.ndarray) -> None:
        """Count, mean and squared deviations of one block, summed in float64 around a shift
        (the first block's mean where it dwarfs the spread) so no sum cancels badly."""
        import numpy as np

        n = int(block.size)
        if self._wide is None:
            self._wide = np.empty(self.block_size, np.float64)
        wide = self._wide[:n]
        if self.shift:
            np.subtract(block, np.float64(self.shift), out=wide, casting="unsafe")
        else:
            np.copyto(wide, block, casting="unsafe")
        total = float(wide.sum())
        offset = total / n
        squares = float(np.einsum("i,i->", wide, wide))  # one pass, no BLAS threads
        if offset * total <= 0.5 * squares:  # the mean loses at most a bit of the squares
            m2 = max(squares - offset * total, 0.0)
        else:  # a mean large against the spread: subtract it, then what that missed
            wide -= offset
            residual = float(wide.sum()) / n
            m2 = max(float(np.einsum("i,i->", wide, wide)) - n * residual * residual, 0.0)
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

    def merge(self, other: StatsAccumulator) -> None:
        """Fold in what ``other`` accumulated over elements that follow this one's."""
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        if other.count:
            offset = (other.shift - self.shift) + other.mean  # other's mean, around our shift
            self.low = other.low if self.low is None or other.low < self.low else self.low
            self.high = other.high if self.high is None or other.high > self.high else self.high
            self._combine(other.count, offset, other.m2)

    def stats(self) -> ArrayStats:
        empty = self.count == 0
        return ArrayStats(
            min=None if empty else float(self.low),
            max=None if empty else float(self.high),
            mean=None if empty else self.shift + self.mean,
            std=None if empty else math.sqrt(self.m2 / self.count),
            nan_count=self.nan,
            posinf_count=self.posinf,
            neginf_count=self.neginf,
        )


def has_stats(array: np.ndarray) -> bool:
    """Statistics are kept for real numbers: bool, int, uint, float (not complex)."""
    return bool(array.dtype.kind in "biuf")


def array_stats(array: np.ndarray) -> ArrayStats | None:
    """Statistics of a real numeric array (bool/int/uint/float); None for other dtypes."""
    import numpy as np

    if not has_stats(array):
        return None
    accumulator = StatsAccumulator(array.dtype.kind, block_elements(array))
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

    A C-contiguous array is written from its own memory in one call while helper threads
    summarise its two halves (numpy, the write and BLAKE3 release the GIL), then hashed whole
    on BLAKE3's threads, or block by block where the digest must canonicalise its bytes (a
    NaN, big-endian). Any other array is copied, written and hashed one block at a time.
    """
    import numpy as np

    handle.write(npy_header(array))
    with np.errstate(over="ignore", invalid="ignore"):
        if array.flags.c_contiguous:
            _write_contiguous(handle, array, hasher, stats)
            return
        for block in blocks(array):
            handle.write(block.view(np.uint8).data)
            if stats is not None:
                stats.add(block)
            if hasher is not None:
                hasher.update(block)


class _Scan:
    """Statistics (or, for complex numbers, whether there is a NaN) of one part of an array."""

    def __init__(self, part: np.ndarray, stats: bool) -> None:
        self.part = part
        self.stats = StatsAccumulator(part.dtype.kind, block_elements(part)) if stats else None
        self.nan = False

    def run(self) -> None:
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore"):
            for block in blocks(self.part):
                if self.stats is not None:
                    self.stats.add(block)
                elif block.dtype.kind in "fc":
                    self.nan = self.nan or bool(np.isnan(block).any())
        if self.stats is not None:
            self.nan = self.stats.nan > 0


def _write_contiguous(
    handle: BinaryIO,
    array: np.ndarray,
    hasher: ArrayHasher | None,
    stats: StatsAccumulator | None,
) -> None:
    import numpy as np

    flat = array.reshape(-1)
    half = flat.size // 2 if flat.nbytes >= _OVERLAP_BYTES else flat.size
    scans = [_Scan(part, stats is not None) for part in (flat[:half], flat[half:]) if part.size]
    if stats is None and (hasher is None or array.dtype.kind not in "fc"):
        scans = []  # nothing to learn: no statistics, no NaN to canonicalise
    with _concurrently([scan.run for scan in scans] if half < flat.size else []):
        handle.write(flat.view(np.uint8).data)
    if half == flat.size:
        for scan in scans:
            scan.run()
    for scan in scans:
        if stats is not None and scan.stats is not None:
            stats.merge(scan.stats)
    if hasher is None:
        return
    little = array.dtype.byteorder in "<|" or (array.dtype.isnative and sys.byteorder == "little")
    if little and not any(scan.nan for scan in scans):
        hasher.update(flat, canonical=True)
    else:
        for block in blocks(flat):
            hasher.update(block)


_OVERLAP_BYTES = 16 * BLOCK_BYTES
"""Arrays at least this large are summarised on two helper threads while they are written."""


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
