"""Arrays as result payloads: statistics, a seeded sample, inline or by-reference storage.

numpy is imported here on first use only (this module is imported when a result is an array,
which means numpy is already loaded by the notebook).
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, Protocol, cast

from reprokit.results.arraypass import (
    StatsAccumulator,
    array_stats,
    blocks,
    has_stats,
    npy_size,
    pipelined,
    write_described,
)
from reprokit.results.jsonvalue import decode_json, encode_float, encode_json
from reprokit.results.model import (
    INLINE_LIMIT_BYTES,
    SAMPLE_SEED,
    SAMPLE_SIZE,
    ArrayData,
    ArraySample,
)

if TYPE_CHECKING:
    import numpy as np


class ArrayWriter(Protocol):
    """Where arrays too large to be inline go: the run's local folder (see ``RunFolder``)."""

    def write_array(self, stem: str, suffix: str, payload: bytes) -> tuple[str, str, str]:
        """Store ``payload``; return (file relative to the folder, folder, artifact path)."""
        ...

    def write_array_with(
        self, suffix: str, fill: Callable[[BinaryIO], str]
    ) -> tuple[str, str, str]:
        """Store the file ``fill(handle)`` writes; ``fill`` returns its stem (known once the
        content is: it holds the digest). Returns what :meth:`write_array` returns."""
        ...


def is_json_dtype(array: np.ndarray) -> bool:
    """Object arrays cannot go to ``.npy`` without pickle: they are stored as JSON lists."""
    return bool(array.dtype.kind == "O")


def array_sample(array: np.ndarray, name: str) -> ArraySample:
    """Elements at seeded flat indices: the same shape gives the same indices on every machine."""
    import numpy as np

    size = int(array.size)
    count = min(SAMPLE_SIZE, size)
    rng = np.random.default_rng(SAMPLE_SEED)
    indices = np.sort(rng.choice(size, size=count, replace=False)) if count else np.empty(0, int)
    positions = np.unravel_index(indices, array.shape) if array.ndim else ()
    values = tuple(sample_json(element, name) for element in array[positions].reshape(-1))
    return ArraySample(seed=SAMPLE_SEED, indices=tuple(int(i) for i in indices), values=values)


def sample_json(element: Any, name: str) -> Any:
    """One sampled element as the lock keeps it (a long double or a datetime as text)."""
    item = element.item() if hasattr(element, "item") else element
    if isinstance(item, float):
        return encode_float(item)
    if isinstance(item, complex):
        return [encode_float(item.real), encode_float(item.imag)]
    if isinstance(item, bytes):
        return base64.b64encode(item).decode("ascii")
    if not isinstance(item, (bool, int, str, type(None))):
        return str(item)  # datetimes and the like: a readable sample is enough
    return encode_json(item, name=name)


def npy_bytes(array: np.ndarray) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_digest(array: np.ndarray, payload: bytes) -> str:
    """Content digest: ``reprokit.hash_value`` of the array (so it equals what a user computes
    with it), else, for an object array holding what it cannot hash, BLAKE3 of the payload."""
    from reprokit.capturing.values import hash_value
    from reprokit.exceptions import UnhashableValueError

    try:
        return hash_value(array)
    except UnhashableValueError:
        import blake3

        return "blake3:" + blake3.blake3(payload).hexdigest()


def encode_array(
    array: np.ndarray,
    *,
    name: str,
    stem: str,
    writer: ArrayWriter | None,
    source_dtype: str | None = None,
    inline_limit: int = INLINE_LIMIT_BYTES,
) -> ArrayData:
    """Describe ``array`` and store its elements inline or through ``writer``.

    Without a writer (no run folder could be made) every array is inline, whatever its size:
    a notebook that carries the whole array beats a reference to nowhere. An array stored by
    reference is written, hashed and summarised in one pass of bounded memory
    (:mod:`~reprokit.results.arraypass`), and never encoded as text.
    """
    if array.ndim > MAX_DIMS:  # a lock refuses it: refused here, not by the next verify
        from reprokit.exceptions import InputError

        raise InputError(
            f"result {name!r}: an array of {array.ndim} dimensions cannot be recorded (a lock "
            f"holds at most {MAX_DIMS}); reshape it",
            name=name,
        )
    if writer is not None and _streamable(array) and npy_size(array) > inline_limit:
        return _stream_by_reference(array, name, stem, writer, source_dtype)
    array = _contiguous(array)
    listed, payload, digest = _payload(array, name)
    encoding, suffix = ("json", ".json") if is_json_dtype(array) else ("npy", ".npy")
    common: dict[str, Any] = {
        "dtype": str(array.dtype),
        "shape": tuple(int(n) for n in array.shape),
        "digest": digest,
        "encoding": encoding,
        "stats": array_stats(array),
        "source_dtype": source_dtype,
    }
    if len(payload) <= inline_limit or writer is None:
        inline = listed if encoding == "json" else base64.b64encode(payload).decode("ascii")
        return ArrayData(inline=inline, **common)
    file, location, artifact = writer.write_array(
        _file_stem(stem, common["digest"]), suffix, payload
    )
    sample = array_sample(array, name)
    return ArrayData(file=file, location=location, artifact=artifact, sample=sample, **common)


def _payload(array: np.ndarray, name: str) -> tuple[Any, bytes, str]:
    """``(listed, payload, digest)``: an array of objects or text as JSON (``listed``: its
    nested lists), any other as ``.npy`` bytes (``listed`` None). A JSON array's digest is
    that of its elements as read back (a numpy scalar it held comes back a Python one), so
    that its file can be checked against it."""
    if not is_json_dtype(array):
        payload = npy_bytes(array)
        return None, payload, array_digest(array, payload)
    listed = encode_json(array.tolist(), name=name)
    payload = json.dumps(listed, separators=(",", ":"), allow_nan=False).encode("utf-8")
    back = _json_array(decode_json(json.loads(payload)), array.shape)
    return listed, payload, array_digest(back, payload)


def _streamable(array: Any) -> bool:
    """An array whose ``.npy`` file can be written block by block: not a numpy scalar, not
    0-d, and a dtype ``.npy`` holds without pickle."""
    import numpy as np

    return isinstance(array, np.ndarray) and array.ndim > 0 and array.dtype.kind in "biufcmMSU"


def _stream_by_reference(
    array: np.ndarray, name: str, stem: str, writer: ArrayWriter, source_dtype: str | None
) -> ArrayData:
    """Write, hash and summarise ``array`` in one pass of blocks: no copy of the whole."""
    import numpy as np

    from reprokit.capturing.values import ArrayHasher

    array = np.asarray(array)  # a subclass (masked, matrix) as its plain elements
    hasher = ArrayHasher(array, threads=not pipelined(array))  # else its own thread hashes
    stats = StatsAccumulator(array.dtype.kind) if has_stats(array) else None

    def fill(handle: BinaryIO) -> str:
        write_described(handle, array, hasher, stats)
        return _file_stem(stem, hasher.hexdigest())

    file, location, artifact = writer.write_array_with(".npy", fill)
    return ArrayData(
        dtype=str(array.dtype),
        shape=tuple(int(n) for n in array.shape),
        digest=hasher.hexdigest(),
        encoding="npy",
        file=file,
        location=location,
        artifact=artifact,
        stats=None if stats is None else stats.stats(),
        sample=array_sample(array, name),
        source_dtype=source_dtype,
    )


def _contiguous(array: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(array) if array.ndim else array


def _file_stem(stem: str, digest: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
    return f"{safe}-{digest.split(':', 1)[-1][:16]}"


MAX_DIMS = 32
"""Most dimensions an array may declare (numpy's own limit is 64)."""

MAX_EXTENT = 2**62
"""Largest number of elements an array may declare (along one axis or in all)."""

MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024
"""Largest ``.json`` array file read (object arrays; ``.npy`` files are bounded by their
declared shape and dtype instead)."""


def check_array_data(data: ArrayData) -> None:
    """Refuse (:class:`~reprokit.exceptions.InputError`) array metadata that cannot describe a
    stored array: an unknown encoding or dtype, a negative or absurd shape, inline elements that
    do not match the declared shape and dtype. Nothing is allocated from the declared shape."""
    if data.encoding not in ("npy", "json"):
        _refuse(f"unknown encoding {data.encoding!r} (npy or json)", "encoding")
    dtype = _dtype_of(data.dtype, "dtype")
    _check_shape(data.shape)
    _check_summary(data)
    if (data.encoding == "json") != (dtype.kind == "O"):
        _refuse(f"encoding {data.encoding!r} cannot hold dtype {data.dtype!r}", "encoding")
    if data.inline is None:
        if not isinstance(data.file, str) or not data.file:
            _refuse("neither inline elements nor a file", "file")
        return
    if data.encoding == "json":
        _json_elements(data.inline, data.shape)
    else:
        _npy_from_text(data)


def _check_summary(data: ArrayData) -> None:
    """Statistics finite and counts not negative; sample indices inside the array, one value
    each."""
    import math

    stats = data.stats
    if stats is not None:
        numbers = (stats.min, stats.max, stats.mean, stats.std)
        if any(x is not None and not math.isfinite(x) for x in numbers):
            _refuse("stats must be finite numbers or null", "stats")
        if (stats.min is None) != (stats.max is None) or (
            stats.min is None and (stats.mean, stats.std) != (None, None)
        ):  # a mean or std alone may be null: it overflowed float64
            _refuse(
                "stats min and max are both numbers or both null (and then so are mean and std)",
                "stats",
            )
        if min(stats.nan_count, stats.posinf_count, stats.neginf_count) < 0:
            _refuse("stats counts must not be negative", "stats")
    sample = data.sample
    if sample is not None:
        if len(sample.indices) != len(sample.values):
            _refuse("sample has not one value per index", "sample")
        if any(not 0 <= i < data.size for i in sample.indices):
            _refuse("sample index outside the array", "sample.indices")


def _refuse(reason: str, part: str | None = None) -> NoReturn:
    """Raise :class:`~reprokit.exceptions.InputError`; ``part`` (its ``path``) is the field of
    the array metadata at fault (``inline``, ``shape``, ...), which a lock error names."""
    from reprokit.exceptions import InputError

    raise InputError(reason, path=part)


def check_dtype_name(name: str) -> None:
    """Refuse (:class:`~reprokit.exceptions.InputError`) a name numpy has no dtype for."""
    _dtype_of(name)


def _dtype_of(name: Any, part: str | None = None) -> np.dtype[Any]:
    import numpy as np

    if not isinstance(name, str) or not 0 < len(name) <= 200:
        _refuse(f"dtype {name!r} is not a numpy dtype name", part)
    try:
        return np.dtype(name)
    except (TypeError, ValueError, SyntaxError):
        _refuse(f"dtype {name!r} is not a numpy dtype", part)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) > MAX_DIMS:
        _refuse(f"shape has {len(shape)} dimensions, more than {MAX_DIMS}", "shape")
    size = 1
    for extent in shape:
        if extent < 0 or extent > MAX_EXTENT:
            _refuse(f"shape {list(shape)} has an extent outside 0..2**62", "shape")
        size *= extent
    if size > MAX_EXTENT:
        _refuse(f"shape {list(shape)} has more than 2**62 elements", "shape")


def _json_elements(listed: Any, shape: tuple[int, ...]) -> list[Any]:
    """The elements of a nested list in C order, exactly ``shape`` deep and wide."""
    items = [listed]
    for extent in shape:
        level: list[Any] = []
        for item in items:
            if not isinstance(item, list) or len(item) != extent:
                _refuse(
                    f"the inline elements do not have the declared shape {list(shape)}", "inline"
                )
            level.extend(item)
        items = level
    return items


def _npy_from_text(data: ArrayData) -> bytes:
    """The inline ``.npy`` bytes, checked without building the array: base64, a header that
    says the declared shape and dtype (not object: that would need pickle), the byte count."""
    if not isinstance(data.inline, str):
        _refuse("inline npy elements must be base64 text", "inline")
    try:
        raw = base64.b64decode(data.inline, validate=True)
    except ValueError:
        _refuse("inline npy elements are not base64", "inline")
    handle = io.BytesIO(raw)
    _check_npy_header(handle, data, "inline")
    if len(raw) != handle.tell() + _byte_count(data):
        _refuse(
            f"inline npy holds {len(raw)} bytes, not what shape and dtype declare "
            f"({handle.tell()} of header and {_byte_count(data)} of elements)",
            "inline",
        )
    return raw


def _byte_count(data: ArrayData) -> int:
    return data.size * _dtype_of(data.dtype).itemsize


def _check_npy_header(handle: BinaryIO, data: ArrayData, part: str | None = None) -> None:
    """Read the ``.npy`` header from ``handle``; refuse it unless it says the declared shape
    and dtype in C order, and a dtype that needs no pickle."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        read = _HEADER_READERS.get(version)
        header = None if read is None else read(handle)
    except Exception as exc:  # ValueError, tokenize.TokenError, ...: numpy parses the header
        _refuse(f"not a valid npy header ({type(exc).__name__})", part)
    if header is None:
        _refuse(f"npy format version {version} is not supported", part)
    shape, fortran, dtype = header
    if dtype.hasobject:
        _refuse(f"npy header says {dtype}: an object array needs pickle, which is refused", part)
    if tuple(shape) != tuple(data.shape) or dtype != _dtype_of(data.dtype) or fortran:
        order = " (Fortran order)" if fortran else ""
        _refuse(
            f"npy header says {dtype} {list(shape)}{order}, the lock {data.dtype} "
            f"{list(data.shape)}",
            part,
        )


_HEADER_READERS: dict[tuple[int, int], Any] = {
    (1, 0): lambda handle: _np_format().read_array_header_1_0(handle),
    (2, 0): lambda handle: _np_format().read_array_header_2_0(handle),
}


def _np_format() -> Any:
    import numpy as np

    return np.lib.format


def load_array(data: ArrayData, *, base: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The stored elements as a numpy array, after :func:`check_array_data`.

    A by-reference array is read from ``base / data.file`` when ``base`` is given (e.g. the
    MLflow artifacts downloaded to a folder, or a runner's output folder), else from
    ``data.location / data.file``: only a regular file inside that folder whose size is what
    the declared shape and dtype say; anything else raises
    :class:`~reprokit.exceptions.PathError`.
    """
    import numpy as np

    check_array_data(data)
    if data.inline is not None:
        if data.encoding == "json":
            return _json_array(decode_json(data.inline), data.shape)
        raw = _npy_from_text(data)
    elif data.encoding == "npy":
        return _read_npy(data, base)
    else:
        return _read_json_file(data, base)
    loaded: np.ndarray = np.load(io.BytesIO(raw), allow_pickle=False)
    return loaded


def _read_json_file(data: ArrayData, base: str | os.PathLike[str] | None) -> np.ndarray:
    """The elements of a checked JSON array file, which must be those its digest names (as
    an ``.npy`` file's are): an edited file is not taken for the recorded array."""
    from reprokit.exceptions import DigestMismatchError

    raw = _read_payload(data, base)
    array = _json_array(decode_json(_json_file(raw, data)), data.shape)
    actual = array_digest(array, raw)
    if actual != data.digest:
        raise DigestMismatchError(str(_payload_path(data, base)[0]), data.digest, actual)
    return array


def _json_file(raw: bytes, data: ArrayData) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        _refuse(f"array file {data.file} is not valid JSON")


def check_array_file(data: ArrayData, base: str | os.PathLike[str]) -> None:
    """Refuse the file of a by-reference array unless it is a regular file inside ``base``
    (links resolved) of the declared shape and dtype: only its header is read."""
    open_array_file(data, base).close()


def open_array_file(data: ArrayData, base: str | os.PathLike[str]) -> BinaryIO:
    """The file of a by-reference array, checked as :func:`check_array_file` does, opened at
    its start (for a copy of its bytes)."""
    if data.encoding == "npy":
        handle = _open_npy(data, base)
        handle.seek(0)
        return handle
    from reprokit.results.untrusted import inside_folder, open_regular

    path, folder = _payload_path(data, base)
    inside_folder(path, folder)
    return open_regular(path, "array file")


def _read_payload(data: ArrayData, base: str | os.PathLike[str] | None) -> bytes:
    from reprokit.results.untrusted import inside_folder, read_regular

    path, folder = _payload_path(data, base)
    inside_folder(path, folder)
    return read_regular(path, MAX_JSON_ARRAY_BYTES, what="array file")


def _read_npy(data: ArrayData, base: str | os.PathLike[str] | None) -> np.ndarray:
    """The elements of a checked ``.npy`` file read straight into the array (no bytes copy)."""
    import numpy as np

    array = np.empty(data.shape, _dtype_of(data.dtype))
    view = array.reshape(-1).view(np.uint8).data
    with _open_npy(data, base) as opened:
        handle = cast(io.BufferedIOBase, opened)
        got = 0
        try:
            while got < len(view) and (n := handle.readinto(view[got:])):
                got += n
            extra = handle.read(1)
        except OSError as exc:
            _refuse(f"cannot read array file {data.file}: {exc.strerror}")
    if got != len(view) or extra:
        _refuse(f"array file {data.file} changed while it was read")
    _check_digest(array, data, base)
    return array


def _check_digest(array: np.ndarray, data: ArrayData, base: str | os.PathLike[str] | None) -> None:
    """Raise :class:`~reprokit.exceptions.DigestMismatchError` unless the elements read from
    an array's file are those its digest names: a file edited or corrupted after it was
    recorded (its size and header unchanged) is not taken for the recorded array."""
    from reprokit.capturing.hashing import SUPPORTED_ALGORITHMS
    from reprokit.exceptions import DigestMismatchError

    algorithm = data.digest.partition(":")[0]
    if algorithm not in SUPPORTED_ALGORITHMS:
        _refuse(f"digest {data.digest!r} of array file {data.file}: unknown algorithm", "digest")
    actual = _file_digest(array, algorithm, legacy=False)
    if actual != data.digest and array.dtype.kind == "c":  # recorded by 0.1.0: NaN parts
        legacy = _file_digest(array, algorithm, legacy=True)
        actual = data.digest if legacy == data.digest else actual
    if actual != data.digest:
        path, _ = _payload_path(data, base)
        raise DigestMismatchError(str(path), data.digest, actual)


def _file_digest(array: np.ndarray, algorithm: str, *, legacy: bool) -> str:
    from reprokit.capturing.values import ArrayHasher

    hasher = ArrayHasher(array, algorithm=algorithm, threads=True, legacy=legacy)
    for block in blocks(array, _CHECK_BLOCK):  # views; a block with a NaN is copied
        hasher.update(block)
    return hasher.hexdigest()


def _open_npy(data: ArrayData, base: str | os.PathLike[str] | None) -> BinaryIO:
    """The ``.npy`` file opened, checked (inside its folder, regular, a header that says the
    declared shape and dtype, the size they make) and positioned after its header."""
    from reprokit.results.untrusted import inside_folder, open_regular

    path, folder = _payload_path(data, base)
    inside_folder(path, folder)
    handle = open_regular(path, "array file")
    try:
        _check_npy_header(handle, data)
        if os.fstat(handle.fileno()).st_size != handle.tell() + _byte_count(data):
            _refuse(f"array file {path} is not the size its shape and dtype declare")
    except BaseException:
        handle.close()
        raise
    return handle


_CHECK_BLOCK = 1 << 24
"""Bytes hashed at a time when an array file is checked (BLAKE3 spreads them over cores)."""


def _payload_path(data: ArrayData, base: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    if data.file is None:
        _refuse("array has neither inline data nor a file reference")
    folder = Path(base) if base is not None else Path(data.location or ".")
    return folder / data.file, folder


def _json_array(listed: Any, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    out = np.empty(shape, dtype=object)
    if shape == ():
        out[()] = listed
        return out
    flat = out.reshape(-1)
    for k, element in enumerate(_json_elements(listed, shape)):
        flat[k] = element
    return out
