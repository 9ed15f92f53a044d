"""Verification of an execution against its lock: statuses, tolerances, data drift."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from lock_helpers import (
    FolderWriter,
    Project,
    executed,
    make_project,
    record,
    scalar_results,
)

from reprokit._serde import from_json, to_json
from reprokit.capturing.values import hash_value
from reprokit.compare.verify import DataCheck, Verdict, check_data, verify_results
from reprokit.comparison import Tolerance
from reprokit.exceptions import ReprokitWarning
from reprokit.options import ComparisonOptions
from reprokit.recording.lock import Lock, read_lock
from reprokit.recording.lock_model import DeviceTolerance
from reprokit.results import Result, encode_result, read_notebook


def verify(
    project: Project,
    lock: Lock,
    results: list[Result],
    device: str | None = None,
    data: DataCheck | None = None,
    **options: Any,
) -> Verdict:
    """``options``: fields of ComparisonOptions (rtol, atol, device_tolerance, outputs)."""
    current = read_notebook(executed(project, results, snapshot=False))
    comparison = ComparisonOptions(**options)
    folder = project.lock_path.parent
    return verify_results(
        lock, current, comparison=comparison, device=device, lock_dir=folder, data=data
    )


def test_identical_results_reproduce(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    verdict = verify(project, lock, scalar_results())
    assert verdict.reproduced
    assert verdict.counts["reproduced"] == 3
    assert {c.status for c in verdict.checks} == {"reproduced"}


def test_statuses_within_tolerance_differs_missing_unexpected(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(
        project,
        [encode_result("acc", 0.9, rtol=1e-3), encode_result("n", 3), encode_result("gone", "x")],
    )
    now = [encode_result("acc", 0.9004), encode_result("n", 4), encode_result("new", 1.0)]
    verdict = verify(project, lock, now)
    status = {c.name: c.status for c in verdict.checks}
    assert status == {
        "acc": "within_tolerance",
        "n": "differs",
        "gone": "missing",
        "new": "unexpected",
    }
    assert not verdict.reproduced
    by_name = {c.name: c for c in verdict.checks}
    assert by_name["acc"].tolerance == Tolerance(1e-3, None)
    assert by_name["acc"].reference == "0.9" and by_name["acc"].obtained == "0.9004"
    assert by_name["n"].deviation is not None and by_name["n"].deviation.max_abs_error == 1.0
    assert by_name["gone"].obtained == "" and "not produced" in by_name["gone"].message


def test_only_unexpected_results_still_reproduce(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    verdict = verify(project, lock, [*scalar_results(), encode_result("extra", 1)])
    assert verdict.reproduced and verdict.counts["unexpected"] == 1


def test_nan_reproduces_and_nan_against_a_number_differs(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("a", math.nan), encode_result("b", 1.0, rtol=0.1)])
    verdict = verify(project, lock, [encode_result("a", math.nan), encode_result("b", math.nan)])
    status = {c.name: c for c in verdict.checks}
    assert status["a"].status == "reproduced"
    assert status["b"].status == "differs"
    assert status["b"].deviation is not None and status["b"].deviation.max_abs_error == "inf"


def test_run_tolerance_overrides_the_declared_one(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 1.0)])
    assert verify(project, lock, [encode_result("acc", 1.01)]).checks[0].status == "differs"
    check = verify(project, lock, [encode_result("acc", 1.01)], rtol=0.05).checks[0]
    assert check.status == "within_tolerance" and check.tolerance_source == "override"


def test_device_tolerance_applies_only_across_devices(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(
        project, [encode_result("acc", 1.0)], device_tolerances={"acc": DeviceTolerance(1e-2)}
    )
    now = [encode_result("acc", 1.005)]
    assert verify(project, lock, now, device="cpu").checks[0].status == "differs"
    cross = verify(project, lock, now, device="cuda:0")
    assert cross.checks[0].status == "within_tolerance"
    assert cross.checks[0].tolerance_source == "device" and cross.current_device == "cuda"
    given = {"*": Tolerance(atol=1e-4)}
    assert verify(project, lock, now, device="cuda", device_tolerance=given).checks[0].status == (
        "differs"
    )


def test_large_arrays_compare_against_the_sidecar(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ref = np.linspace(0, 1, 20_000)
    lock = record(project, [encode_result("w", ref, rtol=1e-6)])
    drifted = ref.copy()
    drifted[7] += 1e-3
    writer = FolderWriter(tmp_path / "run")
    check = verify(project, lock, [encode_result("w", drifted, writer=writer)]).checks[0]
    assert check.status == "differs" and "\u2192" not in check.reference
    assert check.deviation is not None and check.deviation.mismatched_count == 1
    assert check.deviation.first_mismatch is not None and "7" in check.deviation.first_mismatch
    same = verify(project, lock, [encode_result("w", ref, writer=writer)]).checks[0]
    assert same.status == "reproduced"


def test_an_array_file_changed_after_recording_is_not_the_reference(tmp_path: Path) -> None:
    """A sidecar edited in place (same size, same header) to hold what this run produced
    must not make a changed result 'reproduced': its digest is checked as it is read."""
    project = make_project(tmp_path)
    ref = np.linspace(0, 1, 20_000)
    lock = record(project, [encode_result("w", ref)])
    (sidecar,) = project.lock_path.parent.rglob("w-*.npy")
    changed = ref.copy()
    changed[-1] = 123.0
    with sidecar.open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(np.float64(123.0).tobytes())
    writer = FolderWriter(tmp_path / "run")
    check = verify(project, lock, [encode_result("w", changed, writer=writer)]).checks[0]
    assert check.status == "differs"
    assert "no longer holds the array" in check.message
    assert str(sidecar.name) in check.message


def test_a_json_array_file_changed_after_recording_is_not_the_reference(tmp_path: Path) -> None:
    """An object array kept as a ``.json`` file was read without its digest checked: an
    edited file became the reference, and a changed result verified as ``reproduced``."""
    project = make_project(tmp_path)
    ref = np.array([str(k) for k in range(20_000)], dtype=object)
    held = np.array([np.int64(k) for k in range(20_000)], dtype=object)  # back as int
    lock = record(project, [encode_result("o", ref), encode_result("n", held)])
    writer = FolderWriter(tmp_path / "run")
    now = [encode_result("o", ref, writer=writer), encode_result("n", held, writer=writer)]
    assert [c.status for c in verify(project, lock, now).checks] == ["reproduced"] * 2
    (sidecar,) = project.lock_path.parent.rglob("o-*.json")
    sidecar.write_text(sidecar.read_text().replace('["0",', '["X",', 1))
    changed = ref.copy()
    changed[0] = "X"
    checks = verify(project, lock, [encode_result("o", changed, writer=writer)]).checks
    (check,) = [c for c in checks if c.name == "o"]
    assert check.status == "differs"
    assert "no longer holds the array" in check.message and sidecar.name in check.message


def test_a_changed_part_beside_a_complex_nan_differs(tmp_path: Path) -> None:
    """``nan+1j`` recorded, ``nan+5j`` now: the digests were equal (every NaN element hashed as
    NaN + 0j) and verify, trusting them, said ``reproduced``."""
    torch = pytest.importorskip("torch")
    project = make_project(tmp_path)
    nan = math.nan

    def values(part: float) -> dict[str, Any]:
        """Complex results whose one number part is ``part`` beside a NaN part."""
        return {
            "a": np.array([complex(nan, part), 2 + 2j]),
            "s": np.complex128(complex(nan, part)),
            "f": np.array([complex(part, nan)], np.complex64),
            "t": torch.tensor([complex(nan, part)]),
            "big": np.full(10_000, complex(nan, part)),
        }

    before = values(1.0)
    lock = record(project, [encode_result(name, v) for name, v in before.items()])
    writer = FolderWriter(tmp_path / "run")
    now = [encode_result(name, v, writer=writer) for name, v in before.items()]
    assert {c.status for c in verify(project, lock, now).checks} == {"reproduced"}
    after = values(5.0)
    now = [encode_result(name, v, writer=writer) for name, v in after.items()]
    checks = verify(project, lock, now).checks
    assert {c.name: c.status for c in checks} == dict.fromkeys(after, "differs")


def test_a_lock_with_the_old_complex_nan_digest_still_loads_and_compares(tmp_path: Path) -> None:
    """A sidecar recorded when a complex NaN was hashed as NaN + 0j carries that digest: it is
    still the recorded array (no "no longer holds" alarm), and its elements are compared."""
    project = make_project(tmp_path)
    ref = np.full(10_000, complex(math.nan, 1.0))
    ref[1::2] = 3 - 1j
    lock = record(project, [encode_result("c", ref)])
    legacy = ref.copy()
    legacy[np.isnan(legacy)] = np.nan  # as 0.1.0 canonicalised it before hashing
    new, old = hash_value(ref), hash_value(legacy)
    recorded = lock.results["c"].array
    assert new != old and recorded is not None and recorded.digest == new
    text = project.lock_path.read_text()
    project.lock_path.write_text(text.replace(new.partition(":")[2], old.partition(":")[2]))
    lock = read_lock(project.lock_path)
    writer = FolderWriter(tmp_path / "run")
    same = verify(project, lock, [encode_result("c", ref, writer=writer)]).checks[0]
    assert same.status == "reproduced"
    # NaN + 0j where nan+1j was: its digest is the recorded one, yet it is not the same array
    check = verify(project, lock, [encode_result("c", legacy, writer=writer)]).checks[0]
    assert check.status == "differs" and "no longer holds" not in check.message
    (sidecar,) = project.lock_path.parent.rglob("c-*.npy")
    with sidecar.open("r+b") as handle:  # an edit is still caught
        handle.seek(-16, os.SEEK_END)
        handle.write(np.complex128(7 - 1j).tobytes())
    check = verify(project, lock, [encode_result("c", ref, writer=writer)]).checks[0]
    assert check.status == "differs" and "no longer holds the array" in check.message


def test_nullable_integers_beyond_float64_are_compared_exactly(tmp_path: Path) -> None:
    """``[2**53 + 1, None]`` (Int64) was stored as float64, so ``[2**53, None]`` reproduced."""
    import pandas as pd

    project = make_project(tmp_path)
    values = {
        "s": pd.Series([2**53 + 1, None], dtype="Int64"),
        "u": pd.Series([2**64 - 1, None], dtype="UInt64"),
        "df": pd.DataFrame({"a": pd.Series([2**53 + 1, None], dtype="Int64")}),
        "small": pd.Series([5, None], dtype="Int64"),
    }
    lock = record(project, [encode_result(name, v) for name, v in values.items()])
    now = [encode_result(name, v) for name, v in values.items()]
    assert {c.status for c in verify(project, lock, now).checks} == {"reproduced"}
    changed = {
        "s": pd.Series([2**53, None], dtype="Int64"),  # stored as float64: exact there
        "u": pd.Series([2**64 - 2, None], dtype="UInt64"),
        "df": pd.DataFrame({"a": pd.Series([2**53 + 3, None], dtype="Int64")}),
        "small": pd.Series([6, None], dtype="Int64"),
    }
    checks = verify(project, lock, [encode_result(n, v) for n, v in changed.items()]).checks
    assert {c.name: c.status for c in checks} == dict.fromkeys(values, "differs")
    messages = {c.name: c.message for c in checks}
    assert "current 9007199254740992.0, reference 9007199254740993" in messages["s"]


def test_a_nullable_integer_column_recorded_as_floats_still_compares(tmp_path: Path) -> None:
    """Locks kept every nullable integer column with a missing value as float64: a small one
    still is, and one recorded so beyond 2**53 is compared with this run's exact ints by value,
    not refused as another kind of column."""
    import pandas as pd

    project = make_project(tmp_path)
    floats = encode_result("s", pd.Series([float(2**60), math.nan]))  # as it was recorded
    assert floats.array is not None
    old = replace(floats, array=replace(floats.array, source_dtype="Int64"))
    lock = record(project, [old])
    same = pd.Series([2**60, None], dtype="Int64")
    assert verify(project, lock, [encode_result("s", same)]).checks[0].status == "reproduced"
    exact = pd.Series([2**60 + 1, None], dtype="Int64")
    (check,) = verify(project, lock, [encode_result("s", exact)]).checks
    assert check.status == "differs" and "current 1152921504606846977" in check.message


def test_arrays_whose_files_were_not_committed_reproduce_by_digest(tmp_path: Path) -> None:
    """Without the sidecar folder, a complex array and a DataFrame were ``differs`` ("cannot
    read the array file") though this run made the very same ones: the digests say so."""
    import pandas as pd

    project = make_project(tmp_path)
    values = {
        "c": np.arange(10_000) * (1 + 2j),
        "df": pd.DataFrame({"a": np.arange(20_000.0), "b": np.ones(20_000)}),
        "w": np.linspace(0, 1, 20_000),
    }
    lock = record(project, [encode_result(name, v) for name, v in values.items()])
    shutil.rmtree(project.lock_path.with_suffix("").with_suffix(".repro"))
    writer = FolderWriter(tmp_path / "run")
    now = [encode_result(name, v, writer=writer) for name, v in values.items()]
    checks = verify(project, lock, now).checks
    assert {c.name: c.status for c in checks} == dict.fromkeys(values, "reproduced")
    assert {c.name: c.message for c in checks}["df"] == "identical (40000 elements)"
    changed = values["w"].copy()
    changed[7] += 1e-3
    (check,) = verify(project, lock, [encode_result("w", changed, writer=writer)]).checks[-1:]
    assert check.name == "w" and check.status == "differs"


def test_an_array_compared_by_summary_says_so(tmp_path: Path) -> None:
    """A change 1000x over the tolerance passed on a 64-element sample, shown as deviation
    ``0``: the message now names the file that could not be read, the table says sampled."""
    from reprokit.report.table import format_deviation

    project = make_project(tmp_path)
    big = np.arange(100_000.0) + 1
    lock = record(project, [encode_result("big", big, rtol=1e-5)])
    (sidecar,) = project.lock_path.parent.rglob("big-*.npy")
    sidecar.unlink()
    changed = big.copy()
    changed[54321] *= 1.01
    now = [encode_result("big", changed, rtol=1e-5, writer=FolderWriter(tmp_path / "run"))]
    (check,) = verify(project, lock, now).checks
    assert check.status == "within_tolerance"  # all a summary can say; never "reproduced"
    assert check.message.startswith("the elements of the reference could not be read (")
    assert sidecar.name in check.message and "a sample of 64 elements" in check.message
    assert format_deviation(check.deviation) == "0 (sampled)"
    from reprokit.api.verify import Verification, VerifyOutcome, _warn_sampled

    verdict = verify(project, lock, now)
    outcome = VerifyOutcome("fig3.ipynb", str(project.lock_path), None, verdict, DataCheck())
    with pytest.warns(ReprokitWarning, match=r"^fig3.ipynb: result 'big' passed on its stat"):
        _warn_sampled(Verification((outcome,)))


@pytest.mark.parametrize(
    ("recorded", "now", "change"),
    [
        ("torch.ones(3, dtype=torch.bfloat16)", "torch.ones(3)", "dtype torch.bfloat16 -> float32"),
        ("torch.ones(3)", "np.ones(3, np.float32)", "type torch.Tensor -> numpy.ndarray"),
        ("np.float32(1.5)", "1.5", "type numpy.float32 -> float"),
        ("np.array(3.5)", "3.5", "type numpy.ndarray -> float"),
        (
            "pd.Series(['a', 'b'], dtype='category')",
            "pd.Series(['a', 'b'], dtype=object)",
            "dtype category(['a', 'b']) -> object",
        ),
        ("pd.Series([1, 2], dtype='Int64')", "pd.Series([1, 2])", "dtype Int64 -> int64"),
        (
            "pd.Series(['a'], dtype=pd.CategoricalDtype(['a', 'b']))",
            "pd.Series(['a'], dtype='category')",
            "dtype category(['a', 'b']) -> category(['a'])",
        ),
        (
            "pd.Series(['a'], dtype=pd.CategoricalDtype(['a'], ordered=True))",
            "pd.Series(['a'], dtype='category')",
            "dtype category(['a'], ordered) -> category(['a'])",
        ),
        (
            "pd.DataFrame({'g': pd.Categorical(['x']), 'v': [1]})",
            "pd.DataFrame({'g': ['x'], 'v': [1]}).astype({'g': object})",
            "dtype of column 'g' category(['x']) -> object",
        ),
        (
            "pd.Series([1], index=pd.Index(['a'], dtype='category'))",
            "pd.Series([1], index=pd.Index(['a'], dtype=object))",
            "dtype of the index category(['a']) -> object",
        ),
        (
            "pd.Series([1.0], index=pd.Index([3], name='epoch'))",
            "pd.Series([1.0], index=pd.Index([3], name='step'))",
            "index name 'epoch' -> 'step'",
        ),
        (
            "pd.DataFrame({'a': [1]}, index=pd.RangeIndex(1, name='epoch'))",
            "pd.DataFrame({'a': [1]})",
            "index name 'epoch' -> None",
        ),
        (
            "pd.DataFrame({'a': [1]}).rename_axis(columns='metric')",
            "pd.DataFrame({'a': [1]})",
            "columns name 'metric' -> None",
        ),
        ("0.0", "-0.0", "equal but not bit for bit: a zero changed sign"),
    ],
)
def test_a_declared_type_change_is_named_and_never_reproduced(
    tmp_path: Path, recorded: str, now: str, change: str
) -> None:
    """Values that decode alike verified as ``reproduced`` though their declared type or
    dtype changed (a bfloat16 tensor is kept as float32): the docs promise such a change is
    reported and ``within_tolerance`` at best."""
    import pandas as pd
    import torch

    scope = {"torch": torch, "np": np, "pd": pd}
    project = make_project(tmp_path)
    lock = record(project, [encode_result("v", eval(recorded, scope))])
    (check,) = verify(project, lock, [encode_result("v", eval(now, scope))]).checks
    assert check.status == "within_tolerance" and check.message.endswith(change)
    (same,) = verify(project, lock, [encode_result("v", eval(recorded, scope))]).checks
    assert same.status == "reproduced"


def test_a_multiindex_keeps_its_levels_and_a_changed_label_is_shown(tmp_path: Path) -> None:
    import pandas as pd

    def series(label: str) -> Any:
        index = pd.MultiIndex.from_tuples([(0, "a"), (1, label)], names=["run", "arm"])
        return pd.Series([1.0, 2.0], index=index)

    project = make_project(tmp_path)
    lock = record(project, [encode_result("s", series("b"))])
    (same,) = verify(project, lock, [encode_result("s", series("b"))]).checks
    assert same.status == "reproduced"
    (check,) = verify(project, lock, [encode_result("s", series("c"))]).checks
    assert check.status == "differs" and "(1, 'c'), reference (1, 'b')" in check.message
    renamed = series("b").rename_axis(["run", "group"])
    (named,) = verify(project, lock, [encode_result("s", renamed)]).checks
    assert named.status == "within_tolerance" and "index name 'run', 'arm' -> 'run', 'group'" in (
        named.message
    )


def test_a_pandas_result_of_schema_version_1_is_compared_without_dtypes_or_names(
    tmp_path: Path,
) -> None:
    """A lock recorded before pandas dtypes and axis names were kept (result schema 1) must not
    turn into a false alarm when the same notebook runs now: each side at version 1's
    fidelity."""
    import pandas as pd

    from reprokit.compare.verify import at_schema_version

    frame = pd.DataFrame({"g": pd.Categorical(["x", "y"]), "n": pd.array([1, 2], dtype="Int64")})
    frame = frame.rename_axis(index="row", columns="field")
    old = at_schema_version(encode_result("f", frame), 1)
    assert old.schema_version == 1 and old.index_names is None
    assert [c.data.source_dtype for c in old.columns] == [None, None]
    project = make_project(tmp_path)
    lock = record(project, [old])
    (check,) = verify(project, lock, [encode_result("f", frame)]).checks
    assert check.status == "reproduced", check.message
    zoned = pd.Series(pd.to_datetime(["2024-01-01"]).tz_localize("UTC"))
    assert at_schema_version(encode_result("z", zoned), 1).array.source_dtype == str(zoned.dtype)


def test_long_doubles_beyond_float64_make_a_lock_that_verifies(tmp_path: Path) -> None:
    """Their extremes do not fit float64: the statistics are null, not inf, which a lock
    refuses (record wrote a lock that verify then rejected)."""
    project = make_project(tmp_path)
    huge = np.array([np.longdouble("1e400"), 1.0] * 5000)
    lock = record(project, [encode_result("x", huge), encode_result("y", huge[0])])
    stats = lock.results["x"].array.stats  # type: ignore[union-attr]
    assert stats is not None and stats.min is None and stats.max is None
    now = [encode_result("x", huge.copy()), encode_result("y", huge[0].copy())]
    assert verify(project, lock, now).reproduced


def test_summaries_are_compared_when_the_array_file_is_gone(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ref = np.linspace(0, 1, 20_000)
    lock = record(project, [encode_result("w", ref, rtol=1e-3)])
    run = tmp_path / "run"
    current = [encode_result("w", ref * (1 + 1e-5), writer=FolderWriter(run))]
    found = read_notebook(executed(project, current, snapshot=False))
    for item in (run / "arrays").iterdir():
        item.unlink()
    verdict = verify_results(lock, found, lock_dir=project.lock_path.parent)
    check = verdict.checks[0]
    assert check.status == "within_tolerance"
    assert check.deviation is not None and check.deviation.estimated


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "longdouble"])
def test_summaries_compare_the_current_elements_at_the_reference_positions(
    tmp_path: Path, dtype: str
) -> None:
    """The reference's file is gone: the current elements are taken where the reference was
    sampled (another numpy may draw other positions), whatever the byte order or width."""
    from dataclasses import replace

    from reprokit.results.arrays import sample_json
    from reprokit.results.model import ArraySample

    project = make_project(tmp_path)
    ref = np.random.default_rng(3).standard_normal(50_000).astype(dtype)
    lock = record(project, [encode_result("w", ref, rtol=1e-3)])
    for item in project.lock_path.parent.rglob("w-*.npy"):
        item.unlink()
    data = lock.results["w"].array
    assert data is not None and data.sample is not None
    drawn = ArraySample(
        data.sample.seed, tuple(range(64)), tuple(sample_json(x, "w") for x in ref[:64])
    )
    lock = replace(
        lock, results={"w": replace(lock.results["w"], array=replace(data, sample=drawn))}
    )
    close = verify(
        project, lock, [encode_result("w", ref * (1 + 1e-6), writer=FolderWriter(tmp_path / "a"))]
    )
    assert close.checks[0].status == "within_tolerance", close.checks[0].message
    assert "64 elements" in close.checks[0].message
    swapped = ref.copy()
    swapped[[5, 40_000]] = swapped[[40_000, 5]]  # the statistics cannot see it; position 5 can
    moved = verify(
        project, lock, [encode_result("w", swapped, writer=FolderWriter(tmp_path / "b"))]
    )
    assert moved.checks[0].status == "differs", moved.checks[0].message


def test_env_diff_git_and_divergent_cell_are_in_the_verdict(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    node = executed(project, scalar_results(), stdout="loss 0.75\n")
    verdict = verify_results(
        lock, read_notebook(node), executed_notebook=node, lock_dir=project.lock_path.parent
    )
    assert verdict.env_diff is not None  # both sides have a snapshot
    assert verdict.divergent_cell is not None and verdict.divergent_cell.index == 2
    assert verdict.divergent_cell.reason == "output differs"
    same = executed(project, scalar_results())
    assert verify_results(lock, read_notebook(same), executed_notebook=same).divergent_cell is None


def test_the_explanation_names_another_commit_the_code_changed_only_if_the_source_did(
    tmp_path: Path,
) -> None:
    """``verify``'s explanation of a result that differs: another commit with the notebook's
    source unchanged (the commit that added the lock) is a note, not "the code changed";
    with changed cells, or when nobody checked, it is a change as before."""
    from dataclasses import replace

    from reprokit.report.table import env_lines

    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    assert lock.snapshot is not None
    node = executed(project, scalar_results(acc=0.5))
    git = replace(lock.snapshot.git, available=True, commit="b" * 40, dirty=False)
    later = replace(lock.snapshot, git=git)
    lock = replace(lock, snapshot=replace(lock.snapshot, git=replace(git, commit="a" * 40)))

    def explained(source_changes: tuple[int, ...] | None) -> list[str]:
        verdict = verify_results(
            lock, read_notebook(node), current_snapshot=later, source_changes=source_changes
        )
        assert not verdict.reproduced
        return [line for line in env_lines(verdict) if line.startswith("git: commit")]

    (line,) = explained(())
    assert "not counted" in line and "the code changed" not in line
    for source_changes in ((1,), None):
        (line,) = explained(source_changes)
        assert "the code changed" in line


def test_files_an_os_or_editor_adds_to_a_data_folder_are_not_a_change(tmp_path: Path) -> None:
    """A reviewer's Finder leaves .DS_Store, Jupyter its checkpoints: the data is the same."""
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    (project.data / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (project.data / "._a.csv").write_bytes(b"AppleDouble")
    (project.data / ".ipynb_checkpoints").mkdir()
    (project.data / ".ipynb_checkpoints" / "a-checkpoint.csv").write_text("x,y\n1,2\n")
    check = check_data(lock, project.root, cache=None)
    assert check.ok, check
    (entry,) = check.entries
    assert entry.reason.startswith("ignored what an OS adds: .DS_Store")
    (project.data / "c.csv").write_text("x,y\n5,6\n")  # a file of data: a change
    again = check_data(lock, project.root, cache=None)
    assert not again.ok and again.entries[0].reason == "4 added"
    (project.data / "c.csv").unlink()
    littered = record(project, scalar_results())  # litter recorded: a clean clone lacks it
    for item in (".DS_Store", "._a.csv"):
        (project.data / item).unlink()
    shutil.rmtree(project.data / ".ipynb_checkpoints")
    assert check_data(littered, project.root, cache=None).ok


def test_verdict_round_trips_json_with_infinite_errors(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("b", 1.0), encode_result("c", [1.0, 2.0])])
    verdict = verify(
        project,
        lock,
        [encode_result("b", math.inf), encode_result("c", [1.0])],
        data=check_data(lock, project.root, cache=None),
    )
    text = to_json(verdict)
    assert "Infinity" not in text and "NaN" not in text
    back = from_json(text, Verdict)
    assert back == verdict


def test_data_check_passes_on_unchanged_data(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    check = check_data(lock, project.root, cache=None)
    assert check.ok and [e.status for e in check.entries] == ["ok"]


def test_data_drift_is_named_file_by_file(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    (project.data / "a.csv").write_text("x,y\n1,3\n")
    (project.data / "b.csv").unlink()
    (project.data / "c.csv").write_text("new\n")
    check = check_data(lock, project.root, cache=None)
    assert not check.ok
    (entry,) = check.drifted
    assert entry.status == "changed" and entry.path == "data"
    changes = {f.path: f.change for f in entry.files}
    assert changes == {"a.csv": "changed", "b.csv": "missing", "c.csv": "added"}


def test_a_missing_data_path_is_reported(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    for item in project.data.iterdir():
        item.unlink()
    project.data.rmdir()
    (entry,) = check_data(lock, project.root, cache=None).entries
    assert entry.status == "missing" and entry.current_digest is None


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_verdict_records_both_devices(tmp_path: Path, device: str) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results(), device="cuda")
    verdict = verify(project, lock, scalar_results(), device=device)
    assert verdict.reference_device == "cuda" and verdict.current_device == device


def test_a_changed_notebook_is_read_from_disk_unchanged(tmp_path: Path) -> None:
    # the lock's reference arrays are read from the lock folder, not from where they were made
    project = make_project(tmp_path)
    ref = np.linspace(0, 1, 20_000)
    lock = record(project, [encode_result("w", ref, writer=FolderWriter(tmp_path / "r0"))])
    for item in (tmp_path / "r0" / "arrays").iterdir():
        item.unlink()
    assert verify(project, lock, [encode_result("w", ref)]).reproduced
    nbformat.validate(executed(project, scalar_results()))


def test_data_links_leaving_the_project_are_reported(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.csv").write_text("x,y\n9,9\n")
    (project.data / "inside.csv").symlink_to(project.data / "a.csv")  # stays in: not reported
    (project.data / "leak.csv").symlink_to(outside / "secret.csv")
    (project.data / "far").symlink_to(outside, target_is_directory=True)
    lock = record(project, scalar_results())
    with pytest.warns(ReprokitWarning, match="data link outside the project root") as caught:
        check = check_data(lock, project.root, cache=None)
    assert check.ok  # reported, not refused: the digests still match
    target = outside.resolve()
    assert check.outside_links == (
        f"data/far -> {target}",
        f"data/leak.csv -> {target / 'secret.csv'}",
    )
    assert len(caught) == 2


def test_a_cross_device_tolerance_declared_in_the_notebook_reaches_the_lock(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    declared = encode_result("loss", 0.5, rtol=0.0, device_rtol=1e-3)
    lock = record(project, [declared])
    assert lock.results["loss"].device_rtol == 1e-3
    assert lock.device_tolerances == {"loss": DeviceTolerance(rtol=1e-3)}
    current = [encode_result("loss", 0.5002)]
    same_device = verify(project, lock, current)
    assert same_device.checks[0].status == "differs"
    across = verify(project, lock, current, device="cuda")
    assert across.checks[0].status == "within_tolerance"
    assert across.checks[0].tolerance_source == "device"


def test_links_leaving_the_project_are_found_at_any_depth_without_a_stat_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.capturing import walk

    root, outside = tmp_path / "project", tmp_path / "elsewhere"
    (root / "data" / "deep" / "er").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "x.csv").write_text("x\n")
    (outside / "back").symlink_to(root / "data")  # under a link: never walked
    for n in range(50):
        (root / "data" / "deep" / f"f{n}.csv").write_text("1\n")
    (root / "data" / "deep" / "er" / "out.csv").symlink_to(outside / "sub" / "x.csv")
    (root / "data" / "deep" / "in.csv").symlink_to(root / "data" / "deep" / "f0.csv")
    (root / "data" / "far").symlink_to(outside, target_is_directory=True)
    (root / "linked").symlink_to(root / "data" / "deep" / "er")
    calls: list[object] = []
    original = os.path.islink
    monkeypatch.setattr(os.path, "islink", lambda p: calls.append(p) or original(p))
    found = walk.links_outside(root / "data", root)
    target = outside.resolve()
    assert found == [f"data/deep/er/out.csv -> {target / 'sub' / 'x.csv'}", f"data/far -> {target}"]
    assert len(calls) <= 1  # the path given; its files' types come from the listing
    assert walk.links_outside(root / "linked", root) == [
        f"linked/out.csv -> {target / 'sub' / 'x.csv'}"
    ]


def test_a_changed_result_with_nothing_seeded_names_that_as_the_likely_cause(
    tmp_path: Path,
) -> None:
    """A plain verify of a notebook that seeds nothing gave no likely cause (only
    ``record --repeat`` said "no seed set"); a missing result alone (``diff`` against the
    environment) is no reason to say it."""
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 0.5)])
    assert lock.snapshot is not None and lock.snapshot.seeds is None
    changed = read_notebook(executed(project, [encode_result("acc", 0.7)]))
    verdict = verify_results(lock, changed, lock_dir=project.lock_path.parent)
    assert verdict.env_diff is not None
    assert [n.key for n in verdict.env_diff.notes] == ["seed"]
    assert "nothing was seeded" in verdict.env_diff.notes[0].hint
    gone = read_notebook(executed(project, []))
    missing = verify_results(lock, gone, lock_dir=project.lock_path.parent)
    assert missing.env_diff is None or not missing.env_diff.notes
