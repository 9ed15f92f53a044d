"""An array payload or field in a lock that contradicts itself is a malformed lock (exit 2,
file and field named) when the lock is read, never a "differs" verdict after an execution."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lock_helpers import make_project, record

from reprokit.exceptions import LockError
from reprokit.recording.lock import read_lock
from reprokit.results import encode_result


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    project = make_project(tmp_path_factory.mktemp("payloads"))
    record(project, [encode_result("big", np.arange(1000.0))])
    return project.lock_path, json.loads(project.lock_path.read_text())


def _npy(array: np.ndarray, *, allow_pickle: bool = False) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pickled() -> str:
    return _npy(np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)


def _truncated() -> str:
    raw = base64.b64decode(_npy(np.arange(1000.0)))
    return base64.b64encode(raw[:-8]).decode("ascii")


CASES = [
    ("not base64", "array", "inline", "!!!notbase64", "array.inline", "not base64"),
    ("pickled object npy", "array", "inline", _pickled(), "array.inline", "pickle"),
    ("one element short", "array", "inline", _truncated(), "array.inline", "bytes"),
    (
        "float32 payload",
        "array",
        "inline",
        _npy(np.arange(1000.0, dtype="f4")),
        "array.inline",
        "float32",
    ),
    ("shape of 1e12", "array", "shape", [10**12], "array.inline", "[1000000000000]"),
    ("shape 2-d", "array", "shape", [10, 100], "array.inline", "[10, 100]"),
    ("encoding pickle", "array", "encoding", "pickle", "array.encoding", "pickle"),
    ("kind quaternion", None, "kind", "quaternion", "kind", "quaternion"),
]


@pytest.mark.parametrize(
    ("part", "key", "value", "field", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_contradictory_array_is_a_malformed_lock(
    locked: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    part: str | None,
    key: str,
    value: Any,
    field: str,
    says: str,
) -> None:
    lock_path, document = locked
    changed = json.loads(json.dumps(document))
    target = changed["results"]["big"] if part is None else changed["results"]["big"][part]
    target[key] = value
    path = tmp_path / lock_path.name
    path.write_text(json.dumps(changed))
    with pytest.raises(LockError) as info:
        read_lock(path)
    error = info.value
    assert error.exit_code == 2 and error.field == f"results.big.{field}"
    assert str(path) in str(error) and says in error.reason and "\n" not in str(error)


def test_the_untouched_lock_reads(locked: tuple[Path, dict[str, Any]]) -> None:
    lock = read_lock(locked[0])
    assert lock.results["big"].array is not None and lock.results["big"].array.shape == (1000,)
