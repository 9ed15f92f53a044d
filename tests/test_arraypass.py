"""Array results in one streaming pass: statistics, digest and ``.npy`` file with bounded memory.

Pins that a large array result is summarised block by block (memory traced by
``tracemalloc``, to which numpy reports its buffers, stays a small fraction of the array),
that the statistics equal numpy's over the finite values, that the sidecar file is what
``numpy.save`` writes and that the digest is ``hash_value``'s, whatever the dtype and layout.
"""

from __future__ import annotations

import functools
import io
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lock_helpers import FolderWriter

from reprokit.capturing.values import ArrayHasher, hash_value
from reprokit.results import arraypass, encode_result
from reprokit.results.arraypass import array_stats, blocks, write_npy
from reprokit.results.encode import decode_result

RNG = np.random.default_rng(7)


def _with_other_nans(n: int) -> Any:
    """NaNs, some negative or with a payload: the digest takes them all as one NaN."""
    values = RNG.standard_normal(n).astype(np.float32)
    values[RNG.random(n) < 0.05] = np.nan
    bits, where = values.view(np.uint32), np.flatnonzero(np.isnan(values))
    bits[where[::3]] |= np.uint32(0x80000000)
    bits[where[1::3]] |= np.uint32(1)
    return values


def _with_nan_and_inf(n: int, dtype: Any) -> Any:
    values = RNG.standard_normal(n)
    values[RNG.random(n) < 0.05] = np.nan
    values[RNG.random(n) < 0.01] = np.inf
    values[RNG.random(n) < 0.01] = -np.inf
    return values.astype(dtype)


def _nans_of_two_kinds(n: int, every: int) -> Any:
    """One ``np.nan`` and one negative NaN (what ``0/0`` gives on x86) in every ``every``
    elements: as many NaNs the digest keeps as NaNs it rewrites."""
    values = RNG.standard_normal(n)
    values[7::every] = np.nan
    values[11::every] = np.nan
    values.view(np.uint64)[11::every] |= np.uint64(1 << 63)
    return values


def _signalling_nans(n: int) -> Any:
    """Signalling NaNs (numpy's ``fmin`` lets one through) beside a mean larger than the
    spread (which numpy summarises)."""
    values = RNG.standard_normal(n) + 5
    values.view(np.uint64)[3::17] = np.uint64(0x7FF4000000000000)
    return values


ARRAYS: dict[str, Callable[[], Any]] = {
    "float32": lambda: RNG.standard_normal(300_000).astype(np.float32),
    "float64 nan inf": lambda: _with_nan_and_inf(200_000, np.float64),
    "float16 nan inf": lambda: _with_nan_and_inf(300_000, np.float16),
    "big-endian nan": lambda: _with_nan_and_inf(200_000, ">f4"),
    "all nan": lambda: np.full(100_000, np.nan),
    "float32 nans of other bits": lambda: _with_other_nans(200_000),
    "float64 nans of two kinds, one each per chunk": lambda: _nans_of_two_kinds(200_000, 5000),
    "float64 signalling nans": lambda: _signalling_nans(100_000),
    "longdouble nan": lambda: _with_nan_and_inf(100_000, np.longdouble) + 0,
    "large mean": lambda: 1e9 + RNG.standard_normal(300_000),
    "int64": lambda: RNG.integers(-(10**12), 10**12, 200_000),
    "uint8": lambda: RNG.integers(0, 255, 500_000).astype(np.uint8),
    "bool": lambda: RNG.random(500_000) < 0.3,
    "fortran": lambda: np.asfortranarray(RNG.standard_normal((400, 500))),
    "transposed 3-d": lambda: RNG.standard_normal((30, 40, 90)).transpose(2, 0, 1),
    "strided": lambda: RNG.standard_normal(600_000)[::3],
    "short rows, fortran": lambda: np.asfortranarray(RNG.standard_normal((200_000, 2))),
    "complex nan": lambda: (RNG.standard_normal(100_000) + 1j * np.nan).astype(np.complex64),
    "complex nan parts": lambda: _complex_nan_parts(),  # noqa: PLW0108 - defined below
    "unicode": lambda: np.array([f"s{i}" for i in range(30_000)]),
    "datetime": lambda: np.arange(100_000).astype("datetime64[s]"),
    "memmap": lambda: _memory_mapped(),  # noqa: PLW0108 - an ndarray subclass, defined below
}


def _complex_nan_parts() -> Any:
    """NaN real parts, NaN imaginary parts, both, and NaNs of other bits: the digest keeps
    each part (a NaN part does not hide the other)."""
    n = 100_000
    values = RNG.standard_normal(n) + 1j * RNG.standard_normal(n)
    parts = values.view(np.float64)
    parts[RNG.random(2 * n) < 0.05] = np.nan
    parts.view(np.uint64)[::7] |= np.uint64(1 << 63)
    return values


@functools.cache
def _memory_mapped() -> Any:
    """Normals as ``np.load(..., mmap_mode="r")`` gives them (a masked array, another
    subclass, is refused: see test_results); one file for the session."""
    path = Path(tempfile.mkdtemp(prefix="reprokit-memmap-")) / "a.npy"
    np.save(path, np.random.default_rng(7).standard_normal(100_000))
    return np.load(path, mmap_mode="r")


def _reference_stats(array: Any) -> dict[str, Any]:
    """What the statistics were before streaming: float64 copy, masks, finite values."""
    values = np.asarray(array).astype(np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    return {
        "nan_count": int(np.isnan(values).sum()),
        "posinf_count": int(np.isposinf(values).sum()),
        "neginf_count": int(np.isneginf(values).sum()),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
    }


def _pipeline_on_small_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays of any size go through the two-thread pipeline, in many chunks, and strided
    copies in ragged tiles."""
    monkeypatch.setattr(arraypass, "_OVERLAP_BYTES", 0)
    monkeypatch.setattr(arraypass, "_CHUNK_BYTES", 40_000)
    monkeypatch.setattr(arraypass, "_COPY_BYTES", 24_000)
    monkeypatch.setattr(arraypass, "_TILE", 7)


def _spread_over(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    """The pass as on a machine of many processors: ``threads`` summarising threads."""
    monkeypatch.setattr(arraypass, "summarising_threads", lambda: threads)


@pytest.mark.parametrize(
    "lag",
    [None, 10**9, 0, -3],
    ids=[
        "one thread",
        "pipelined, the helper writes",
        "pipelined, the caller writes",
        "spread over 3 summarising threads",
    ],
)
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_by_reference_array_is_numpy_save_with_hash_value_digest_and_numpy_stats(
    name: str, lag: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lag is not None:
        _pipeline_on_small_arrays(monkeypatch)
        monkeypatch.setattr(arraypass, "_LAG", max(lag, 0))  # who writes each chunk
    if lag is not None and lag < 0:
        _spread_over(monkeypatch, -lag)
    array = ARRAYS[name]()
    data = encode_result("a", array, writer=FolderWriter(tmp_path)).array
    assert data is not None and data.file is not None and data.inline is None
    saved = io.BytesIO()
    np.save(saved, np.ascontiguousarray(array), allow_pickle=False)
    assert (tmp_path / data.file).read_bytes() == saved.getvalue()
    assert data.digest == hash_value(np.ascontiguousarray(array))
    back = decode_result(encode_result("a", array, writer=FolderWriter(tmp_path)), base=tmp_path)
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    if np.asarray(array).dtype.kind not in "biuf":
        assert data.stats is None
        return
    assert data.stats is not None
    reference = _reference_stats(array)
    found = vars(data.stats)
    for key in ("nan_count", "posinf_count", "neginf_count", "min", "max"):
        assert found[key] == reference[key], key
    for key in ("mean", "std"):
        if reference[key] is None:
            assert found[key] is None
        else:
            assert found[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize(
    "make",
    [
        lambda: RNG.standard_normal(300_000).astype(np.float32),
        lambda: np.where(RNG.random(200_000) < 0.01, np.nan, RNG.standard_normal(200_000) + 1e9),
        lambda: np.concatenate([[np.inf, -np.inf], RNG.standard_normal(150_000)]),
        lambda: RNG.integers(-(10**12), 10**12, 200_000),
        lambda: RNG.standard_normal((400, 500)).T,
    ],
    ids=["float32", "NaNs and a large mean", "infinities", "int64", "transposed"],
)
def test_the_statistics_are_the_same_bits_on_any_number_of_processors(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock recorded on a 16-core machine is verified on a laptop: the statistics the pass
    makes spread over summarising threads must be those of the two-thread pass exactly, not
    within rounding (the chunks, their summaries and the order they are merged in are the
    same)."""
    from reprokit.results.arraypass import StatsAccumulator, write_described

    _pipeline_on_small_arrays(monkeypatch)
    array = make()
    found = []
    for threads in (1, 2, 3):
        _spread_over(monkeypatch, threads)
        stats, hasher, out = StatsAccumulator(array.dtype.kind), ArrayHasher(array), io.BytesIO()
        write_described(out, array, hasher, stats)
        found.append((stats.stats(), hasher.hexdigest(), out.getvalue()))
    assert found[1] == found[0] and found[2] == found[0]


def test_zero_d_and_empty_arrays_keep_their_statistics() -> None:
    assert array_stats(np.array(2.5)) == array_stats(np.array([2.5]))
    empty = array_stats(np.empty((0, 3), np.float32))
    assert empty is not None and (empty.min, empty.mean, empty.nan_count) == (None, None, 0)
    assert array_stats(np.array([1 + 2j])) is None


def _peak_bytes(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_array_stats_of_ten_million_floats_uses_a_few_blocks_of_memory() -> None:
    array = RNG.standard_normal(10**7).astype(np.float32)
    array[::1000] = np.nan  # the slow path too: masks of every block
    peak = _peak_bytes(lambda: array_stats(array))
    assert peak < 0.1 * array.nbytes, peak  # before: a float64 copy, masks, finite values (5x)


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_large_result_is_written_hashed_and_summarised_without_copying_it(
    layout: str, tmp_path: Path
) -> None:
    array = RNG.standard_normal(10**7).astype(np.float32)
    if layout == "transposed":
        array = array.reshape(2000, 5000).T
    writer = FolderWriter(tmp_path)
    peak = _peak_bytes(lambda: encode_result("a", array, writer=writer))
    # before: npy bytes, a base64 text of them, a float64 copy and masks (10x the array)
    assert peak < 0.25 * array.nbytes, peak
    data = encode_result("a", array, writer=writer).array
    assert data is not None and data.file is not None
    saved = io.BytesIO()
    np.save(saved, np.ascontiguousarray(array))
    assert (tmp_path / data.file).read_bytes() == saved.getvalue()  # whichever thread wrote
    assert data.digest == hash_value(np.ascontiguousarray(array))


def test_array_hasher_fed_in_blocks_is_hash_value() -> None:
    array = _with_nan_and_inf(100_000, ">f8").reshape(250, 400).T
    hasher = ArrayHasher(array)
    for block in blocks(array, block_bytes=4096):
        hasher.update(block)
    assert hasher.hexdigest() == hash_value(array)
    short = ArrayHasher(array)
    short.update(array[:10])
    with pytest.raises(ValueError, match="fed"):
        short.hexdigest()


def test_write_npy_is_numpy_save_in_c_order() -> None:
    for array in (np.arange(12.0).reshape(3, 4).T, np.zeros((2, 0, 3)), np.array(7, np.int16)):
        written, saved = io.BytesIO(), io.BytesIO()
        write_npy(written, array)
        np.save(saved, np.ascontiguousarray(array) if array.ndim else array)
        assert written.getvalue() == saved.getvalue()


def test_tensor_result_by_reference_matches_its_numpy_digest(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.randn(300, 200).t()  # not contiguous
    data = encode_result("t", tensor, writer=FolderWriter(tmp_path)).array
    assert data is not None and data.file is not None
    assert data.digest == hash_value(np.ascontiguousarray(tensor.numpy()))


def test_loading_a_large_sidecar_reads_it_once_into_the_array(tmp_path: Path) -> None:
    array = RNG.standard_normal(4 * 10**6)
    result = encode_result("a", array, writer=FolderWriter(tmp_path))
    loaded: list[Any] = []
    peak = _peak_bytes(lambda: loaded.append(decode_result(result, base=tmp_path)))
    assert np.array_equal(loaded[0], array)
    assert peak < 1.1 * array.nbytes, peak  # before: the file's bytes, then a copy (2x)


def test_hashing_without_statistics_still_canonicalises_nans() -> None:
    from reprokit.results.arraypass import write_described

    array = np.full(5 * 10**6, np.nan, np.float32)  # above the size written in one call
    array[::2] = 1.0
    array.view(np.uint32)[1] |= 1  # a NaN with other bits
    hasher = ArrayHasher(array)
    write_described(io.BytesIO(), array, hasher, None)
    assert hasher.hexdigest() == hash_value(array)


class _FailingHasher(ArrayHasher):
    def update(self, block: Any, *, canonical: bool = False) -> None:
        if self._fed:
            raise RuntimeError("hasher failed")
        super().update(block, canonical=canonical)


class _FailingFile(io.BytesIO):
    def write(self, data: Any) -> int:
        if self.tell() > 100_000:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failure_on_either_thread_of_the_pipeline_is_raised_not_hung(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reprokit.results.arraypass import StatsAccumulator, write_described

    _pipeline_on_small_arrays(monkeypatch)
    for threads in (1, 3):
        _spread_over(monkeypatch, threads)
        for array in (RNG.standard_normal(200_000), RNG.standard_normal((300, 400)).T):
            stats = StatsAccumulator("f", 1000)
            with pytest.raises(RuntimeError, match="hasher failed"):
                write_described(io.BytesIO(), array, _FailingHasher(array), stats)
            with pytest.raises(OSError, match="No space"):
                write_described(_FailingFile(), array, ArrayHasher(array), stats)
        with monkeypatch.context() as patch, pytest.raises(ZeroDivisionError):
            patch.setattr(arraypass._Scan, "summary", lambda *_: 1 / 0)  # a summary fails
            write_described(io.BytesIO(), RNG.standard_normal(200_000), None, StatsAccumulator("f"))


@pytest.mark.parametrize("mode", ["wb", "ab"])
def test_a_file_written_at_offsets_is_left_at_its_end(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline_on_small_arrays(monkeypatch)
    monkeypatch.setattr(arraypass, "_LAG", 0)  # the caller writes every chunk at its offset
    array = RNG.standard_normal(100_000)
    path = tmp_path / "a.npy"
    path.write_bytes(b"")
    with path.open(mode) as handle:
        # pwrite on a file opened to append would append: such a handle is written in order
        assert (arraypass._positional_fd(handle) is None) == (mode == "ab")  # type: ignore[arg-type]
        arraypass.write_described(handle, array, ArrayHasher(array), None)  # type: ignore[arg-type]
        handle.write(b"after")  # where the array ends
    saved = io.BytesIO()
    np.save(saved, array)
    assert path.read_bytes() == saved.getvalue() + b"after"


def test_a_pipe_gets_its_chunks_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    _pipeline_on_small_arrays(monkeypatch)
    monkeypatch.setattr(arraypass, "_LAG", 0)  # the caller would write every chunk at its offset
    array = RNG.standard_normal(100_000)
    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as source:
            received.extend(source.read())

    reader = threading.Thread(target=drain)
    reader.start()
    with os.fdopen(write_fd, "wb") as handle:
        assert arraypass._positional_fd(handle) is None  # a pipe has no offsets
        arraypass.write_described(handle, array, ArrayHasher(array), None)
    reader.join()
    saved = io.BytesIO()
    np.save(saved, array)
    assert bytes(received) == saved.getvalue()


def test_preallocating_a_sidecar_leaves_its_size_to_what_is_written(tmp_path: Path) -> None:
    from reprokit._fsutil import preallocate

    path = tmp_path / "a.npy"
    with path.open("wb") as handle:
        handle.write(b"head")
        preallocate(handle, 10**6)
        handle.write(b"body")
    assert path.read_bytes() == b"headbody"
    preallocate(io.BytesIO(), 10)  # no file descriptor: nothing to do


def test_a_compressed_stream_gets_its_chunks_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    _pipeline_on_small_arrays(monkeypatch)
    monkeypatch.setattr(arraypass, "_LAG", 0)
    array = RNG.standard_normal(100_000)
    with gzip.GzipFile(tmp_path / "a.npy.gz", "wb") as handle:  # its fileno: the file under it
        assert arraypass._positional_fd(handle) is None  # type: ignore[arg-type]
        arraypass.write_described(handle, array, ArrayHasher(array), None)  # type: ignore[arg-type]
    saved = io.BytesIO()
    np.save(saved, array)
    assert gzip.decompress((tmp_path / "a.npy.gz").read_bytes()) == saved.getvalue()


@pytest.mark.parametrize("threads", [1, 3], ids=["pipelined", "spread"])
def test_an_interrupted_caller_leaves_no_chunk_to_land_in_another_file(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    _pipeline_on_small_arrays(monkeypatch)
    _spread_over(monkeypatch, threads)
    monkeypatch.setattr(arraypass, "_LAG", 10**9)  # the helper writes every chunk
    monkeypatch.setattr(arraypass, "_CHUNK_BYTES", 200_000)  # 4: all fit in the queue
    array = RNG.standard_normal(100_000)
    gate = threading.Event()

    class FirstChunkHeld(ArrayHasher):
        def update(self, block: Any, *, canonical: bool = False) -> None:
            if not self._fed:
                gate.wait(10)  # the helper, descheduled on its first chunk
            super().update(block, canonical=canonical)

    real_join = threading.Thread.join

    def interrupted(self: threading.Thread, timeout: float | None = None) -> None:
        if self.name == "reprokit-array-pass":
            raise KeyboardInterrupt  # Ctrl-C, or a cell's timeout, while the caller waits
        real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted)
    with pytest.raises(KeyboardInterrupt), (tmp_path / "a.npy").open("wb") as handle:
        number = handle.fileno()
        arraypass.write_described(handle, array, FirstChunkHeld(array), None)
    victim = os.open(tmp_path / "victim", os.O_WRONLY | os.O_CREAT)
    if victim != number:  # the next file opened gets the number the handle had
        os.dup2(victim, number)
        os.close(victim)
        victim = number
    os.write(victim, b"hello\n")
    gate.set()
    for thread in threading.enumerate():
        if thread.name == "reprokit-array-pass":
            real_join(thread, 10)
    os.close(victim)
    assert (tmp_path / "victim").read_bytes() == b"hello\n"


@pytest.mark.parametrize(
    "array",
    [np.full(1000, 1e200), np.full(1000, 1e308), np.array([1e308, -1e308, 1.0])],
    ids=["squares overflow", "sum overflows", "spread overflows"],
)
def test_statistics_that_overflow_are_left_out_and_the_result_is_kept(
    array: Any, tmp_path: Path
) -> None:
    from reprokit.results.arrays import check_array_data
    from reprokit.results.describe import value_text

    for writer in (None, FolderWriter(tmp_path)):
        result = encode_result("a", array, writer=writer)
        data = result.array
        assert data is not None and data.stats is not None
        check_array_data(data)  # a recorded result is read back, not refused
        assert "overflow" in value_text(result)
        assert data.stats.min == float(array.min()) and data.stats.max == float(array.max())
        for value in (data.stats.mean, data.stats.std):
            assert value is None or np.isfinite(value)
