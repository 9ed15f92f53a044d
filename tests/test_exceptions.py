"""Errors carry typed fields from birth, keep their exit codes and survive pickling."""

from __future__ import annotations

import copy
import pickle
import signal
from pathlib import Path
from typing import Any

import pytest

from reprokit.exceptions import (
    CacheError,
    DigestMismatchError,
    EnvUnavailableError,
    ExecutionError,
    InputError,
    LockError,
    PathError,
    RecordError,
    ReprokitError,
    ResultValueError,
    RunInterrupted,
    SchemaVersionError,
    UnhashableValueError,
    UsageError,
)

# every error class, made with every field it declares, beside the fields it must then hold
# and the bases it must be caught by
CASES: list[tuple[ReprokitError, dict[str, Any], tuple[type[BaseException], ...]]] = [
    (ReprokitError("plain"), {}, (Exception,)),
    (
        UsageError(
            "bad", path="nb.ipynb", option="--jobs", value="0", run_id="abc", names=("n", "m")
        ),
        {
            "path": "nb.ipynb",
            "option": "--jobs",
            "value": "0",
            "run_id": "abc",
            "names": ("n", "m"),
        },
        (ReprokitError,),
    ),
    (
        InputError("nope", path='$["a"]', name="acc", plugin="p", run_id="r1", cell_index=4),
        {"path": '$["a"]', "name": "acc", "plugin": "p", "run_id": "r1", "cell_index": 4},
        (ReprokitError,),
    ),
    (
        PathError("data/x.csv", "no such file or directory"),
        {"path": "data/x.csv", "reason": "no such file or directory", "run_id": None},
        (InputError, ReprokitError),
    ),
    (
        UnhashableValueError("socket", '$["a"]'),
        {"type_name": "socket", "where": '$["a"]', "path": '$["a"]'},
        (InputError, ReprokitError, TypeError),
    ),
    (
        ResultValueError("acc", "object", "$[0]"),
        {"name": "acc", "type_name": "object", "where": "$[0]", "path": "$[0]"},
        (InputError, ReprokitError, TypeError),
    ),
    (
        LockError("nb.repro.json", "not valid JSON", "$.results"),
        {"path": "nb.repro.json", "reason": "not valid JSON", "field": "$.results"},
        (InputError, ReprokitError),
    ),
    (
        SchemaVersionError("nb.repro.json", 9, 1),
        {"path": "nb.repro.json", "found": 9, "supported": 1, "field": "schema_version"},
        (LockError, InputError, ReprokitError),
    ),
    (
        DigestMismatchError("d.csv", "sha256:00", "sha256:11"),
        {"path": "d.csv", "expected": "sha256:00", "actual": "sha256:11"},
        (ReprokitError,),
    ),
    (CacheError("locked", path="/tmp/cache.db"), {"path": "/tmp/cache.db"}, (ReprokitError,)),
    (
        EnvUnavailableError("nb.repro.json", ("six 9.9: not found",)),
        {"path": "nb.repro.json", "pins": ("six 9.9: not found",)},
        (ReprokitError,),
    ),
    (
        RecordError("MLflow at x: failed", uri="file:///m", action="logging", run_id="r"),
        {"uri": "file:///m", "action": "logging", "run_id": "r"},
        (ReprokitError,),
    ),
    (
        ExecutionError(
            "nb.ipynb",
            cell_index=2,
            ename="ValueError",
            evalue="boom",
            traceback=("line 1", "line 2"),
            output_path="out.ipynb",
        ),
        {
            "path": "nb.ipynb",
            "cell_index": 2,
            "ename": "ValueError",
            "evalue": "boom",
            "traceback": ("line 1", "line 2"),
            "output_path": "out.ipynb",
        },
        (ReprokitError,),
    ),
    (
        RunInterrupted(int(signal.SIGTERM), ("a.ipynb",)),
        {"signal": int(signal.SIGTERM), "output_paths": ("a.ipynb",)},
        (ReprokitError,),
    ),
]
IDS = [type(error).__name__ for error, _, _ in CASES]


def test_every_error_class_is_covered() -> None:
    def subclasses(cls: type[ReprokitError]) -> set[type[ReprokitError]]:
        found = {cls}
        for sub in cls.__subclasses__():
            if sub.__module__ == "reprokit.exceptions":
                found |= subclasses(sub)
        return found

    assert subclasses(ReprokitError) == {type(error) for error, _, _ in CASES}


@pytest.mark.parametrize(("error", "expected", "bases"), CASES, ids=IDS)
def test_fields_are_attributes_from_birth(
    error: ReprokitError, expected: dict[str, Any], bases: tuple[type[BaseException], ...]
) -> None:
    for name, value in expected.items():
        assert getattr(error, name) == value, name
    assert set(expected) <= set(error.fields)
    assert error.fields == {name: getattr(error, name) for name in error.fields}
    assert str(error) == error.message and "\n" not in str(error)


@pytest.mark.parametrize(("error", "expected", "bases"), CASES, ids=IDS)
def test_errors_pickle_with_fields(
    error: ReprokitError, expected: dict[str, Any], bases: tuple[type[BaseException], ...]
) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.args == error.args
        assert clone.fields == error.fields
        assert clone.exit_code == error.exit_code


@pytest.mark.parametrize(("error", "expected", "bases"), CASES, ids=IDS)
def test_errors_are_caught_by_their_documented_bases(
    error: ReprokitError, expected: dict[str, Any], bases: tuple[type[BaseException], ...]
) -> None:
    for base in bases:
        with pytest.raises(base):
            raise error


def test_a_subclass_holds_its_bases_fields() -> None:
    error: InputError = PathError("x", "gone")
    assert (error.name, error.plugin, error.run_id, error.cell_index) == (None,) * 4
    assert UsageError("bad").fields == {
        "path": None,
        "option": None,
        "value": None,
        "run_id": None,
        "names": (),
    }


def test_an_amended_message_survives_pickling() -> None:
    error = ExecutionError("nb.ipynb", ename="Timeout")
    error.message += " (2 of 3 notebooks failed)"
    clone = pickle.loads(pickle.dumps(error))
    assert (
        str(clone)
        == str(error)
        == "nb.ipynb: execution failed: Timeout:  (2 of 3 notebooks failed)"
    )
    assert clone.ename == "Timeout"


def test_undeclared_fields_are_refused() -> None:
    with pytest.raises(TypeError):
        UsageError("bad", jobs=0)  # type: ignore[call-arg]


def test_path_error_names_the_path() -> None:
    error = PathError("data/x.csv", "no such file or directory")
    assert error.path == "data/x.csv"
    assert str(error) == "data/x.csv: no such file or directory"
    assert error.exit_code == 2


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("x"), 2),
        (DigestMismatchError("f", "a", "b"), 1),
        (ExecutionError("nb.ipynb"), 3),
        (RunInterrupted(int(signal.SIGINT)), 130),
        (RunInterrupted(int(signal.SIGTERM)), 143),
    ],
)
def test_exit_codes(error: ReprokitError, code: int) -> None:
    assert error.exit_code == code


def test_digest_mismatch_exits_one() -> None:
    assert DigestMismatchError("f", "a", "b").exit_code == 1


def test_unhashable_is_also_a_type_error() -> None:
    error = UnhashableValueError("object")
    assert isinstance(error, TypeError)
    assert "object" in str(error)
    assert error.path is None


def test_an_interruption_says_which_runs_no_journal_keeps() -> None:
    """Runs written outside the project's .reprokit (``--output-dir``) are journaled nowhere: the
    message must not send their user to ``reprokit sync``, which cannot find them."""
    error = RunInterrupted(
        int(signal.SIGTERM), (), ("p/.reprokit/runs/x/a.ipynb", "/out/b.ipynb"), ("/out/b.ipynb",)
    )
    text = str(error)
    assert "1 run(s) not in MLflow yet" in text and "`reprokit sync` records them" in text
    assert "kept in no journal" in text and text.endswith("(/out/b.ipynb)")
    alone = str(RunInterrupted(int(signal.SIGTERM), (), ("/out/b.ipynb",), ("/out/b.ipynb",)))
    assert "sync" not in alone and error.exit_code == 143


def test_only_outputs_in_the_projects_reprokit_folder_are_journaled(tmp_path: Path) -> None:
    from reprokit.recording.executed import journaled

    assert journaled(tmp_path, tmp_path / ".reprokit" / "runs" / "x" / "a")
    assert not journaled(tmp_path, tmp_path / "out")
    assert not journaled(tmp_path, tmp_path.parent / "elsewhere" / ".reprokit")
