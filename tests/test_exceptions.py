"""Errors carry structured fields, keep their exit codes and survive pickling (process pools)."""

from __future__ import annotations

import pickle

import pytest

from reprokit.exceptions import (
    DigestMismatchError,
    InputError,
    PathError,
    ReprokitError,
    UnhashableValueError,
    UsageError,
)


@pytest.mark.parametrize(
    "error",
    [
        PathError("data/x.csv", "no such file or directory"),
        UnhashableValueError("socket", '$["a"]'),
        DigestMismatchError("d.csv", "sha256:00", "sha256:11"),
        UsageError("bad", option="--algo"),
        InputError("nope"),
    ],
)
def test_errors_pickle_with_fields(error: ReprokitError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.fields == error.fields
    assert clone.exit_code == error.exit_code


def test_path_error_names_the_path() -> None:
    error = PathError("data/x.csv", "no such file or directory")
    assert error.path == "data/x.csv"
    assert str(error) == "data/x.csv: no such file or directory"
    assert error.exit_code == 2


def test_digest_mismatch_exits_one() -> None:
    assert DigestMismatchError("f", "a", "b").exit_code == 1


def test_unhashable_is_also_a_type_error() -> None:
    error = UnhashableValueError("object")
    assert isinstance(error, TypeError)
    assert "object" in str(error)
