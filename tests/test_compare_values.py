"""compare_values: scalar rules, tolerance semantics, nested paths, odd input, pandas objects."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from reprokit.compare.values import compare_values
from reprokit.comparison import Tolerance
from reprokit.exceptions import InputError, ReprokitError, UsageError


def status(reference: Any, current: Any, **tol: float) -> str:
    return compare_values(reference, current, Tolerance(**tol) if tol else None).status


# --- tolerance semantics ------------------------------------------------------------------


def test_no_tolerance_means_exact_equality_for_floats() -> None:
    assert status(0.1 + 0.2, 0.1 + 0.2) == "reproduced"
    one_ulp_up = math.nextafter(1.0, 2.0)
    result = compare_values(1.0, one_ulp_up)
    assert result.status == "differs"
    assert result.deviation.max_abs_error == pytest.approx(2.220446049250313e-16)


def test_declared_rtol_accepts_a_relative_difference_against_the_reference() -> None:
    assert status(1.0, 1.0005, rtol=1e-3) == "within_tolerance"
    assert status(1.0, 1.002, rtol=1e-3) == "differs"


def test_rtol_scales_with_the_reference_not_the_current_value() -> None:
    # |100 - 110| = 10 <= 0.1 * |100| passes; reversed, 10 <= 0.1 * 110 passes too, but
    # |100 - 111| = 11 > 10 fails while |111 - 100| = 11 <= 11.1 passes
    assert status(100.0, 111.0, rtol=0.1) == "differs"
    assert status(111.0, 100.0, rtol=0.1) == "within_tolerance"


def test_atol_alone_is_symmetric_and_reported_as_applied() -> None:
    result = compare_values(0.0, 1e-9, Tolerance(atol=1e-8))
    assert result.status == "within_tolerance"
    assert result.tolerance_applied == Tolerance(rtol=0.0, atol=1e-8)
    assert status(1e-9, 0.0, atol=1e-8) == "within_tolerance"


def test_invalid_tolerances_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="rtol"):
        Tolerance(rtol=-1.0)
    with pytest.raises(UsageError, match="atol"):
        Tolerance(atol=float("nan"))
    with pytest.raises(UsageError):
        Tolerance(rtol=True)
    with pytest.raises(UsageError, match="atol must be a finite number"):
        Tolerance(atol=math.inf)  # would pass every finite difference: no check at all


# --- scalar rules -------------------------------------------------------------------------


def test_nan_equals_nan_and_infinities_equal_themselves() -> None:
    assert status(float("nan"), float("nan")) == "reproduced"
    assert status(math.inf, math.inf) == "reproduced"
    assert status(-math.inf, -math.inf) == "reproduced"


def test_infinities_never_match_anything_else_whatever_the_tolerance() -> None:
    assert status(math.inf, -math.inf, rtol=1e9, atol=1e9) == "differs"
    result = compare_values(1e308, math.inf, Tolerance(rtol=1e9))
    assert result.status == "differs"
    assert result.deviation.max_abs_error == math.inf


def test_nan_against_a_number_differs_with_an_infinite_error() -> None:
    result = compare_values(1.0, float("nan"), Tolerance(rtol=1.0, atol=1.0))
    assert result.status == "differs"
    assert result.deviation.max_abs_error == math.inf
    assert "nan" in result.deviation.message


def test_signed_zero_is_equal_but_not_identical() -> None:
    assert status(0.0, -0.0) == "within_tolerance"
    assert status(-0.0, -0.0) == "reproduced"


def test_integers_are_exact_even_when_a_tolerance_is_declared() -> None:
    result = compare_values(
        {"epochs": 10, "loss": 0.5}, {"epochs": 11, "loss": 0.5001}, Tolerance(rtol=0.5)
    )
    assert result.status == "differs"
    assert result.deviation.first_mismatch == '$["epochs"]'
    assert result.deviation.mismatched_count == 1


def test_bool_is_not_int() -> None:
    result = compare_values(True, 1)
    assert result.status == "differs"
    assert result.deviation.type_change == ("bool", "int")
    assert status(True, True) == "reproduced"
    assert status(False, True) == "differs"


def test_int_against_float_is_compared_numerically_and_reports_the_type_change() -> None:
    result = compare_values(1, 1.0)
    assert result.status == "within_tolerance"
    assert result.deviation.type_change == ("int", "float")
    assert compare_values(1, 1.0, strict_types=True).status == "differs"
    assert status(2, 2.5, atol=0.1) == "differs"


def test_int_against_float_beyond_2_53_is_compared_exactly() -> None:
    """``2**53 + 1`` against ``2.0**53`` was made a float and found equal: ``within_tolerance``
    under the exact default tolerance, though they differ by 1."""
    for ref, cur in [(2**53 + 1, float(2**53)), (2**64 + 1, float(2**64))]:
        for wrap in (lambda v: v, lambda v: [v], lambda v: {"a": v}):
            result = compare_values(wrap(ref), wrap(cur))
            assert result.status == "differs", (ref, wrap)
            assert result.deviation.max_abs_error == 1.0
            assert result.deviation.type_change == ("int", "float")
        assert compare_values(cur, ref).status == "differs"
    assert status(2**53 + 1, float(2**53), rtol=1e-15) == "within_tolerance"
    assert compare_values(2**53, float(2**53)).status == "within_tolerance"  # the type changed
    assert compare_values(10**400, 1e308).deviation.max_abs_error == math.inf


def test_strings_bytes_and_none_are_exact() -> None:
    assert status("accuracy", "accuracy") == "reproduced"
    assert status("accuracy", "Accuracy") == "differs"
    assert status(b"\x00\x01", b"\x00\x01") == "reproduced"
    assert status(None, None) == "reproduced"
    assert compare_values(None, 0.0).deviation.type_change == ("NoneType", "float")


def test_huge_integers_do_not_crash() -> None:
    big = 10**5000
    assert status(big, big) == "reproduced"
    result = compare_values(big, big + 1)
    assert result.status == "differs"
    assert "bits" in result.deviation.message  # no 5000-digit number in the message
    assert compare_values(big, 1.0).deviation.max_abs_error == math.inf


def test_complex_numbers_use_the_modulus() -> None:
    assert status(1 + 1j, 1 + 1.0001j, atol=1e-3) == "within_tolerance"
    assert status(1 + 1j, 1 + 2j, atol=1e-3) == "differs"


def test_numpy_scalars_are_their_python_kind() -> None:
    np = pytest.importorskip("numpy")
    assert status(np.float64(0.5), 0.5) == "reproduced"
    assert status(np.int64(3), 3) == "reproduced"
    assert status(np.bool_(True), 1) == "differs"
    assert status(np.float32(0.1), 0.1) == "differs"  # float32 precision is real


# --- containers ---------------------------------------------------------------------------


def test_the_path_of_the_first_difference_is_reported() -> None:
    ref = {"layers": [1.0, 2.0, 3.0], "name": "net"}
    cur = {"layers": [1.0, 2.0, 3.5], "name": "net"}
    result = compare_values(ref, cur)
    assert result.status == "differs"
    assert result.deviation.first_mismatch == '$["layers"][2]'
    assert result.deviation.total_count == 4
    assert "3.5" in result.deviation.message


def test_first_and_worst_differences_are_kept_apart() -> None:
    result = compare_values([1.0, 2.0, 3.0], [1.1, 2.0, 4.0])
    assert result.deviation.first_mismatch == "$[0]"
    assert result.deviation.max_abs_location == "$[2]"
    assert result.deviation.max_abs_error == pytest.approx(1.0)
    assert result.deviation.mismatched_fraction == pytest.approx(2 / 3)


def test_missing_and_unexpected_keys_are_differences() -> None:
    result = compare_values({"a": 1, "b": 2}, {"a": 1, "c": 3})
    assert result.status == "differs"
    assert result.deviation.mismatched_count == 2
    assert result.deviation.first_mismatch == '$["b"]'
    assert "missing" in result.deviation.message


def test_list_length_changes_count_every_missing_element() -> None:
    result = compare_values([1, 2, 3, 4], [1, 2])
    assert result.deviation.mismatched_count == 2
    assert result.deviation.first_mismatch == "$[2]"
    assert compare_values([1], [1, 2, 3]).deviation.mismatched_count == 2


def test_unicode_and_non_string_keys_render_in_paths() -> None:
    assert compare_values({"ключ": 1.0}, {"ключ": 2.0}).deviation.first_mismatch == '$["ключ"]'
    assert compare_values({3: 1.0}, {3: 2.0}).deviation.first_mismatch == "$[3]"


def test_list_and_tuple_are_the_same_kind() -> None:
    assert status([1, 2.5], (1, 2.5)) == "reproduced"


def test_deep_nesting_needs_no_recursion() -> None:
    def nested(depth: int, leaf: float) -> list[Any]:
        root: list[Any] = []
        node = root
        for _ in range(depth):
            child: list[Any] = []
            node.append(child)
            node = child
        node.append(leaf)
        return root

    depth = 20 * sys.getrecursionlimit()
    assert status(nested(depth, 1.0), nested(depth, 1.0)) == "reproduced"
    result = compare_values(nested(depth, 1.0), nested(depth, 2.0))
    assert result.status == "differs"
    assert result.deviation.first_mismatch is not None
    assert result.deviation.first_mismatch.count("[0]") == depth + 1  # + the leaf's index
    assert len(result.deviation.message) < 1000


def test_cyclic_structures_terminate() -> None:
    a: list[Any] = [1.0]
    a.append(a)
    b: list[Any] = [1.0]
    b.append(b)
    assert status(a, b) == "reproduced"


def test_unsupported_types_raise_an_input_error_naming_the_path() -> None:
    with pytest.raises(InputError, match=r'\$\["model"\]') as info:
        compare_values({"model": object()}, {"model": object()})
    assert isinstance(info.value, ReprokitError)
    assert info.value.fields["path"] == '$["model"]'


def test_comparing_plain_values_imports_no_numeric_library() -> None:
    code = (
        "import sys\n"
        "from reprokit.compare.values import compare_values\n"
        "from reprokit.compare.outputs import compare_outputs\n"
        "from reprokit.compare.summary import ArraySummary, compare_summaries\n"
        "import reprokit.compare.envdiff\n"
        "compare_values({'a': [1, 2.0, 'x', None]}, {'a': [1, 2.5, 'x', None]})\n"
        "compare_outputs('loss 0.5 in 1.2s', 'loss 0.6 in 1.3s')\n"
        "s = ArraySummary((2,), 'float32', 'blake3:00', 2, min=0.0, max=1.0)\n"
        "compare_summaries(s, ArraySummary((2,), 'float32', 'blake3:11', 2, min=0.0, max=1.5))\n"
        "print(sorted(m for m in ('numpy', 'torch', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- arrays and pandas inside values ------------------------------------------------------


def test_arrays_nested_in_dicts_report_element_locations() -> None:
    np = pytest.importorskip("numpy")
    w = np.arange(12.0).reshape(3, 4)
    changed = w.copy()
    changed[2, 1] += 0.5
    result = compare_values({"w": w}, {"w": changed})
    assert result.deviation.first_mismatch == '$["w"][2, 1]'
    assert result.deviation.total_count == 12


def test_list_against_array_compares_values_and_reports_the_type_change() -> None:
    np = pytest.importorskip("numpy")
    result = compare_values([1.0, 2.0], np.array([1.0, 2.0]))
    assert result.status == "within_tolerance"
    assert result.deviation.type_change == ("list", "ndarray")
    assert compare_values([[1.0], [2.0, 3.0]], np.array([1.0])).status == "differs"  # ragged


@pytest.fixture
def frame() -> Any:
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(
        {"loss": [0.5, 0.25, 0.125], "label": ["a", "b", None], "n": [1, 2, 3]},
        index=[10, 20, 30],
    )


def test_identical_frames_reproduce(frame: Any) -> None:
    assert status(frame, frame.copy()) == "reproduced"


def test_frame_numeric_columns_use_the_tolerance_and_others_are_exact(frame: Any) -> None:
    close = frame.copy()
    close.loc[20, "loss"] = 0.2500001
    assert status(frame, close, rtol=1e-5) == "within_tolerance"
    relabelled = frame.copy()
    relabelled.loc[30, "label"] = "c"
    result = compare_values(frame, relabelled, Tolerance(rtol=1.0))
    assert result.status == "differs"
    assert result.deviation.first_mismatch == '$["label"].iloc[2]'
    counted = frame.copy()
    counted.loc[10, "n"] = 2
    assert status(frame, counted, rtol=1.0) == "differs"


def test_frame_missing_and_extra_columns(frame: Any) -> None:
    result = compare_values(frame, frame.drop(columns=["n"]).assign(extra=1))
    assert result.status == "differs"
    assert result.deviation.first_mismatch == '$["n"]'
    assert result.deviation.mismatched_count == 6  # 3 rows missing with "n", 3 with "extra"


def test_frame_column_order_change_is_reported(frame: Any) -> None:
    result = compare_values(frame, frame[["n", "loss", "label"]])
    assert result.status == "within_tolerance"
    assert "column order changed" in result.deviation.message


def test_frame_index_changes_are_differences(frame: Any) -> None:
    result = compare_values(frame, frame.reset_index(drop=True))
    assert result.status == "differs"
    assert result.deviation.first_mismatch == "$.index[0]"
    shorter = compare_values(frame, frame.iloc[:2])
    assert shorter.status == "differs"
    assert "index length 3 -> 2" in shorter.deviation.message


def test_frame_dtype_change_is_reported(frame: Any) -> None:
    result = compare_values(frame, frame.astype({"loss": "float32"}))
    assert result.status == "within_tolerance"
    assert result.deviation.dtype_change == ("float64", "float32")


def test_nullable_and_na_values(frame: Any) -> None:
    pd = pytest.importorskip("pandas")
    ints = pd.Series([1, None, 3], dtype="Int64")
    assert status(ints, ints.copy()) == "reproduced"
    assert status(ints, pd.Series([1, 2, 3], dtype="Int64"), rtol=1.0) == "differs"
    objects = pd.Series([pd.NA, "x", float("nan")], dtype=object)
    assert status(objects, objects.copy()) == "reproduced"


def test_a_renamed_series_is_reported_not_reproduced(frame: Any) -> None:
    result = compare_values(frame["loss"], frame["loss"].rename("val_loss"))
    assert result.status == "within_tolerance"
    assert "name 'loss' -> 'val_loss'" in result.deviation.message
    assert compare_values(frame["loss"], frame["loss"].copy()).status == "reproduced"
    renamed = frame.rename_axis("step")
    result = compare_values(frame, renamed)
    assert result.status == "within_tolerance" and "index name" in result.deviation.message
    named = frame.rename_axis("metric", axis="columns")
    assert "columns name None -> 'metric'" in compare_values(frame, named).deviation.message


def test_series_against_frame_is_a_type_change(frame: Any) -> None:
    result = compare_values(frame["loss"], frame)
    assert result.status == "differs"
    assert result.deviation.type_change == ("Series", "DataFrame")


def test_a_complex_nan_is_equal_only_with_its_nan_in_the_same_part() -> None:
    """``complex(nan, 1)`` against ``complex(1, nan)`` was ``reproduced``: both are NaN to
    ``cmath.isnan``/``np.isnan``, which say nothing of the part that holds it."""
    nan = math.nan
    assert status(complex(nan, 1), complex(1, nan)) == "differs"
    assert status(complex(nan, inf := math.inf), complex(inf, nan)) == "differs"
    assert status(complex(nan, 1), complex(nan, 1)) == "reproduced"
    for size in (3, 10_000):  # the small path and the chunked kernel
        ref = np.full(size, complex(nan, 1))
        assert compare_values(ref, np.full(size, complex(1, nan))).status == "differs"
        assert compare_values(ref, np.full(size, complex(nan, 2))).status == "differs"
        assert compare_values(ref, ref.copy()).status == "reproduced"


def test_messages_show_numpy_scalars_as_their_values() -> None:
    """ "index label np.int64(3), reference 2": numpy 2's repr reached the message."""
    import pandas as pd

    reference = pd.Series([1.0, 2.0], index=[1, 2])
    current = pd.Series([1.0, 2.0], index=np.array([1, 3], dtype=np.int64))
    message = compare_values(reference, current).deviation.message
    assert "index label 3, reference 2" in message and "np.int64" not in message
