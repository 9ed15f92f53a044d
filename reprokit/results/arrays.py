"""Arrays as result payloads: statistics, a seeded sample, inline or by-reference storage.

numpy is imported here on first use only (this module is imported when a result is an array,
which means numpy is already loaded by the notebook).
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reprokit.results.jsonvalue import decode_json, encode_float, encode_json
from reprokit.results.model import (
    INLINE_LIMIT_BYTES,
    SAMPLE_SEED,
    SAMPLE_SIZE,
    ArrayData,
    ArraySample,
    ArrayStats,
)

if TYPE_CHECKING:
    import numpy as np


class ArrayWriter(Protocol):
    """Where arrays too large to be inline go: the run's local folder (see ``RunFolder``)."""

    def write_array(self, stem: str, suffix: str, payload: bytes) -> tuple[str, str, str]:
        """Store ``payload``; return (file relative to the folder, folder, artifact path)."""
        ...


def is_json_dtype(array: np.ndarray) -> bool:
    """Object arrays cannot go to ``.npy`` without pickle: they are stored as JSON lists."""
    return bool(array.dtype.kind == "O")


def array_stats(array: np.ndarray) -> ArrayStats | None:
    """Statistics of a real numeric array (bool/int/uint/float); None for other dtypes."""
    import numpy as np

    if array.dtype.kind not in "biuf":
        return None
    values = array.astype(np.float64, copy=False).reshape(-1)
    nan = np.isnan(values)
    posinf = np.isposinf(values)
    neginf = np.isneginf(values)
    finite = values[~(nan | posinf | neginf)]
    empty = finite.size == 0
    return ArrayStats(
        min=None if empty else float(finite.min()),
        max=None if empty else float(finite.max()),
        mean=None if empty else float(finite.mean()),
        std=None if empty else float(finite.std()),
        nan_count=int(nan.sum()),
        posinf_count=int(posinf.sum()),
        neginf_count=int(neginf.sum()),
    )


def array_sample(array: np.ndarray, name: str) -> ArraySample:
    """Elements at seeded flat indices: the same shape gives the same indices on every machine."""
    import numpy as np

    size = int(array.size)
    count = min(SAMPLE_SIZE, size)
    rng = np.random.default_rng(SAMPLE_SEED)
    indices = np.sort(rng.choice(size, size=count, replace=False)) if count else np.empty(0, int)
    flat = array.reshape(-1)
    values = tuple(_element_json(flat[int(i)], name) for i in indices)
    return ArraySample(seed=SAMPLE_SEED, indices=tuple(int(i) for i in indices), values=values)


def _element_json(element: Any, name: str) -> Any:
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
    a notebook that carries the whole array beats a reference to nowhere.
    """
    array = _contiguous(array)
    if is_json_dtype(array):
        encoding, suffix = "json", ".json"
        listed = encode_json(array.tolist(), name=name)
        payload = json.dumps(listed, separators=(",", ":"), allow_nan=False).encode("utf-8")
        inline: Any = listed
    else:
        encoding, suffix = "npy", ".npy"
        payload = npy_bytes(array)
        inline = base64.b64encode(payload).decode("ascii")
    digest = array_digest(array, payload)
    common: dict[str, Any] = {
        "dtype": str(array.dtype),
        "shape": tuple(int(n) for n in array.shape),
        "digest": digest,
        "encoding": encoding,
        "stats": array_stats(array),
        "source_dtype": source_dtype,
    }
    if len(payload) <= inline_limit or writer is None:
        return ArrayData(inline=inline, **common)
    file, location, artifact = writer.write_array(_file_stem(stem, digest), suffix, payload)
    return ArrayData(
        file=file,
        location=location,
        artifact=artifact,
        sample=array_sample(array, name),
        **common,
    )


def _contiguous(array: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(array) if array.ndim else array


def _file_stem(stem: str, digest: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
    return f"{safe}-{digest.split(':', 1)[-1][:16]}"


def load_array(data: ArrayData, *, base: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The stored elements as a numpy array.

    A by-reference array is read from ``base / data.file`` when ``base`` is given (e.g. the
    MLflow artifacts downloaded to a folder, or a runner's output folder), else from
    ``data.location / data.file``; a missing file raises :class:`~reprokit.exceptions.PathError`.
    """
    import numpy as np

    if data.inline is not None:
        if data.encoding == "json":
            return _json_array(decode_json(data.inline), data)
        raw = base64.b64decode(data.inline)
    else:
        raw = _read_payload(data, base)
    if data.encoding == "json":
        return _json_array(decode_json(json.loads(raw)), data)
    loaded: np.ndarray = np.load(io.BytesIO(raw), allow_pickle=False)
    return loaded


def _read_payload(data: ArrayData, base: str | os.PathLike[str] | None) -> bytes:
    path = _payload_path(data, base)
    try:
        return path.read_bytes()
    except OSError as exc:
        from reprokit.exceptions import PathError

        raise PathError(str(path), f"cannot read the array file: {exc.strerror}") from None


def _payload_path(data: ArrayData, base: str | os.PathLike[str] | None) -> Path:
    if data.file is None:
        from reprokit.exceptions import InputError

        raise InputError("array has neither inline data nor a file reference")
    folder = Path(base) if base is not None else Path(data.location or ".")
    return folder / data.file


def _json_array(listed: Any, data: ArrayData) -> np.ndarray:
    import numpy as np

    out = np.empty(data.shape, dtype=object)
    if data.shape == ():
        out[()] = listed
        return out
    if data.size:
        out.reshape(-1)[:] = np.array(listed, dtype=object).reshape(-1)
    return out
