"""compare_arrays (numpy, torch), its chunked/threaded kernels, and array summaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reprokit.compare import _kernels, arrays
from reprokit.compare.arrays import compare_arrays
from reprokit.compare.summary import (
    ArraySummary,
    compare_summaries,
    sample_indices,
    summarize_array,
)
from reprokit.comparison import Tolerance
from reprokit.exceptions import InputError

TOL = Tolerance(rtol=1e-5, atol=1e-8)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 1000 elements and threads from 4000: boundaries inside small test arrays."""
    monkeypatch.setattr(_kernels, "CHUNK", 1000)
    monkeypatch.setattr(arrays, "PARALLEL_MIN", 4000)
    monkeypatch.setattr(arrays, "_workers", lambda n: 1 if n < 4000 else 3)


def noisy(n: int, rel: float, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    return a, a * (1 + rng.uniform(-rel, rel, n))


# --- statuses -----------------------------------------------------------------------------


def test_identical_arrays_reproduce() -> None:
    a = np.linspace(0, 1, 1001, dtype=np.float32)
    result = compare_arrays(a, a.copy())
    assert result.status == "reproduced"
    assert result.deviation.total_count == 1001


def test_noise_within_tolerance() -> None:
    a, b = noisy(5000, 1e-7)
    result = compare_arrays(a, b, TOL)
    assert result.status == "within_tolerance"
    assert 0 < result.deviation.max_rel_error <= 1e-7
    assert result.deviation.mismatched_count == 0


def test_out_of_tolerance_counts_fraction_and_first_location() -> None:
    a = np.zeros((4, 5))
    b = a.copy()
    b[1, 3] = 1.0
    b[3, 0] = 2.0
    result = compare_arrays(a, b, TOL)
    dev = result.deviation
    assert result.status == "differs"
    assert (dev.mismatched_count, dev.total_count) == (2, 20)
    assert dev.mismatched_fraction == pytest.approx(0.1)
    assert dev.first_mismatch == "$[1, 3]"
    assert dev.max_abs_location == "$[3, 0]"
    assert dev.max_abs_error == 2.0
    assert dev.max_rel_error == float("inf")  # against a zero reference


def test_agrees_with_numpy_isclose_element_by_element() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(10_000)
    b = a + rng.standard_normal(10_000) * 1e-5
    rtol, atol = 1e-4, 1e-6
    result = compare_arrays(a, b, Tolerance(rtol=rtol, atol=atol))
    expected_bad = int(np.count_nonzero(~np.isclose(b, a, rtol=rtol, atol=atol)))
    assert result.deviation.mismatched_count == expected_bad > 0


def test_shape_change_differs_without_comparing_values() -> None:
    result = compare_arrays(np.zeros((2, 3)), np.zeros((3, 2)))
    assert result.status == "differs"
    assert result.deviation.shape_change == ((2, 3), (3, 2))


def test_float32_against_float64_with_equal_values_is_within_tolerance_with_dtype_change() -> None:
    a = np.array([0.5, 0.25, 1.0])
    result = compare_arrays(a, a.astype(np.float32))
    assert result.status == "within_tolerance"
    assert result.deviation.dtype_change == ("float64", "float32")
    assert compare_arrays(a, a.astype(np.float32), strict_types=True).status == "differs"
    # values that float32 cannot hold are compared in float64: exact fails, a tolerance passes
    tenth = np.array([0.1])
    assert compare_arrays(tenth, tenth.astype(np.float32)).status == "differs"
    assert compare_arrays(tenth, tenth.astype(np.float32), Tolerance(rtol=1e-7)).status == (
        "within_tolerance"
    )


def test_integer_arrays_are_exact_whatever_the_tolerance() -> None:
    a = np.array([1, 2, 3])
    result = compare_arrays(a, np.array([1, 2, 4]), Tolerance(rtol=1.0, atol=10))
    assert result.status == "differs"
    assert result.deviation.max_abs_error == 1.0
    assert result.deviation.first_mismatch == "$[2]"
    assert compare_arrays(a, a.astype(np.int32)).deviation.dtype_change == ("int64", "int32")


def test_integer_against_float_arrays_use_the_tolerance() -> None:
    assert compare_arrays(np.array([1, 2]), np.array([1.0, 2.0000001]), TOL).status == (
        "within_tolerance"
    )


def test_bool_arrays_are_not_numbers() -> None:
    result = compare_arrays(np.array([True, False]), np.array([1, 0]))
    assert result.status == "differs"
    assert result.deviation.dtype_change == ("bool", "int64")
    assert compare_arrays(np.array([True]), np.array([False])).status == "differs"


def test_nan_and_inf_rules_in_arrays() -> None:
    a = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert compare_arrays(a, a.copy()).status == "reproduced"
    flipped = np.array([np.nan, -np.inf, -np.inf, 1.0])
    result = compare_arrays(a, flipped, Tolerance(rtol=1e9))
    assert result.status == "differs"
    assert result.deviation.first_mismatch == "$[1]"
    assert result.deviation.max_abs_error == float("inf")
    nan_for_number = compare_arrays(np.array([1.0, 2.0]), np.array([1.0, np.nan]), TOL)
    assert nan_for_number.deviation.mismatched_count == 1


def test_nan_payload_is_ignored_but_a_signed_zero_is_not_identical() -> None:
    a = np.array([np.nan, 0.0])
    other_nan = a.copy()
    other_nan.view(np.uint64)[0] ^= 1  # another quiet NaN payload
    assert np.isnan(other_nan[0])
    assert compare_arrays(a, other_nan).status == "reproduced"
    assert compare_arrays(a, np.array([np.nan, -0.0])).status == "within_tolerance"


def test_empty_and_zero_dimensional_arrays() -> None:
    assert compare_arrays(np.zeros((0, 3)), np.zeros((0, 3))).status == "reproduced"
    assert compare_arrays(np.float64(1.5), np.array(1.5)).status == "reproduced"
    result = compare_arrays(np.array(1.0), np.array(2.0))
    assert (result.status, result.deviation.first_mismatch) == ("differs", "$")


def test_non_contiguous_and_big_endian_arrays() -> None:
    base = np.arange(60.0).reshape(6, 10)
    view = base[::2, ::3]
    changed = view.copy()
    changed[1, 2] += 1
    assert compare_arrays(view, view.copy()).status == "reproduced"
    assert compare_arrays(view, changed).deviation.first_mismatch == "$[1, 2]"
    assert compare_arrays(base.T, np.ascontiguousarray(base.T)).status == "reproduced"
    swapped = base.astype(">f8")
    assert compare_arrays(base, swapped).status == "within_tolerance"  # dtype spelled apart


def test_strings_datetimes_and_objects() -> None:
    words = np.array(["alpha", "beta"])
    assert compare_arrays(words, words.copy()).status == "reproduced"
    assert compare_arrays(words, np.array(["alpha", "gamma"])).deviation.first_mismatch == "$[1]"
    times = np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")
    assert compare_arrays(times, times.copy()).status == "reproduced"
    objects = np.array([{"a": 1.0}, [1, 2]], dtype=object)
    other = np.array([{"a": 1.5}, [1, 2]], dtype=object)
    result = compare_arrays(objects, other, Tolerance(atol=1.0))
    assert result.status == "within_tolerance"
    assert compare_arrays(objects, other).deviation.first_mismatch == '$[0]["a"]'
    assert compare_arrays(words, np.array([1.0, 2.0])).status == "differs"


def test_complex_and_half_precision() -> None:
    z = np.array([1 + 1j, 2 - 1j])
    assert compare_arrays(z, z + 1e-9j, Tolerance(atol=1e-8)).status == "within_tolerance"
    assert compare_arrays(z, z + 1e-3j, Tolerance(atol=1e-8)).status == "differs"
    h = np.array([0.5, 1.5], dtype=np.float16)
    assert compare_arrays(h, h.copy()).status == "reproduced"


def test_ragged_lists_are_an_input_error() -> None:
    with pytest.raises(InputError):
        compare_arrays([[1.0], [1.0, 2.0]], [[1.0], [1.0, 2.0]])


# --- chunking and threads -----------------------------------------------------------------


@pytest.mark.usefixtures("small_chunks")
def test_chunk_and_thread_boundaries_give_the_same_answer() -> None:
    a, b = noisy(10_007, 1e-9, seed=2)
    for k in (0, 999, 1000, 3335, 3336, 10_006):
        b[k] = a[k] + 1.0
    b[5000] = a[5000] + 7.0
    result = compare_arrays(a, b, TOL)
    dev = result.deviation
    assert dev.mismatched_count == 7
    assert dev.first_mismatch == "$[0]"
    assert dev.max_abs_location == "$[5000]"
    assert dev.max_abs_error == pytest.approx(7.0)


@pytest.mark.usefixtures("small_chunks")
def test_threads_keep_the_earliest_first_mismatch() -> None:
    a = np.zeros(12_000)
    b = a.copy()
    b[11_999] = 1.0
    b[8_500] = 1.0
    assert compare_arrays(a, b).deviation.first_mismatch == "$[8500]"


@pytest.mark.usefixtures("small_chunks")
def test_identical_chunks_are_skipped_and_nonfinite_chunks_take_the_slow_path() -> None:
    a = np.ones(9000)
    a[4500] = np.nan
    a[4501] = np.inf
    b = a.copy()
    assert compare_arrays(a, b).status == "reproduced"
    b[4502] = 1.0 + 1e-12
    assert compare_arrays(a, b, TOL).status == "within_tolerance"
    b[4501] = -np.inf
    assert compare_arrays(a, b, TOL).deviation.first_mismatch == "$[4501]"


# --- torch --------------------------------------------------------------------------------


def test_torch_tensors_compare_as_arrays() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_()
    assert compare_arrays(t, t.detach().clone()).status == "reproduced"
    assert compare_arrays(t.detach().numpy(), t).status == "reproduced"  # no type change
    bf = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    result = compare_arrays(bf, np.array([1.0, 2.0], dtype=np.float32))
    assert result.deviation.dtype_change == ("bfloat16", "float32")
    assert result.status == "within_tolerance"
    assert compare_arrays(torch.tensor([1, 2]), torch.tensor([1, 3])).status == "differs"


def test_odd_tensors_are_converted() -> None:
    torch = pytest.importorskip("torch")
    sparse = torch.eye(3).to_sparse()
    assert compare_arrays(sparse, np.eye(3, dtype=np.float32)).status == "reproduced"
    conj = torch.tensor([1 + 2j]).conj()
    assert compare_arrays(conj, np.array([1 - 2j], dtype=np.complex64)).status == "reproduced"


@pytest.mark.gpu
def test_cuda_tensors_are_compared_on_the_host() -> None:
    import torch

    t = torch.randn(1000, 10, device="cuda")
    assert compare_arrays(t, t.cpu().numpy()).status == "reproduced"
    noisy_gpu = t * (1 + 1e-7)
    assert compare_arrays(t, noisy_gpu, Tolerance(rtol=1e-6)).status == "within_tolerance"


# --- summaries ----------------------------------------------------------------------------


def test_sample_positions_depend_only_on_seed_and_size() -> None:
    first = sample_indices(10**9, 1024, seed=7)
    assert first == sample_indices(10**9, 1024, seed=7)
    assert first != sample_indices(10**9, 1024, seed=8)
    assert len(set(first)) == 1024 and list(first) == sorted(first)
    assert sample_indices(5, 1024, seed=0) == (0, 1, 2, 3, 4)


def test_summary_statistics_match_numpy() -> None:
    a = np.random.default_rng(3).standard_normal((300, 700)).astype(np.float32)
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    s = summarize_array(a, sample_size=100, seed=1)
    finite = a[np.isfinite(a)].astype(np.float64)
    assert (s.nan_count, s.posinf_count, s.neginf_count) == (1, 1, 1)
    assert s.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert s.std == pytest.approx(finite.std(), rel=1e-9)
    assert s.abs_mean == pytest.approx(np.abs(finite).mean(), rel=1e-12)
    assert (s.min, s.max) == (float(finite.min()), float(finite.max()))
    assert s.shape == (300, 700) and s.dtype == "float32" and s.count == 210_000
    assert s.digest.startswith("blake3:")
    flat = a.reshape(-1)
    assert list(s.sample_values[:5]) == [float(flat[i]) for i in s.sample_indices[:5]]


def test_summaries_of_the_same_array_reproduce() -> None:
    a = np.arange(10_000, dtype=np.int64)
    assert compare_summaries(summarize_array(a), summarize_array(a.copy())).status == "reproduced"


def test_summaries_within_tolerance_are_estimated() -> None:
    a, b = noisy(50_000, 1e-7)
    result = compare_summaries(summarize_array(a), summarize_array(b), TOL)
    assert result.status == "within_tolerance"
    assert result.deviation.estimated
    assert result.deviation.total_count == 1024


def test_summaries_catch_a_sampled_difference_and_a_moved_statistic() -> None:
    a, b = noisy(50_000, 1e-7)
    ref = summarize_array(a)
    sampled = b.copy()
    sampled[ref.sample_indices[3]] += 1.0
    result = compare_summaries(ref, summarize_array(sampled), TOL)
    assert result.status == "differs"
    assert result.deviation.first_mismatch == f"$[{ref.sample_indices[3]}]"
    unsampled = b.copy()
    hidden = next(i for i in range(50_000) if i not in set(ref.sample_indices))
    unsampled[hidden] += 1e6  # outside the sample: the max moves further than allowed
    moved = compare_summaries(ref, summarize_array(unsampled), TOL)
    assert moved.status == "differs"
    assert "max" in moved.deviation.message


def test_summaries_with_different_nan_counts_or_shapes_differ() -> None:
    a = np.ones(100)
    b = a.copy()
    b[5] = np.nan
    assert (
        "NaN count 0 -> 1"
        in compare_summaries(
            summarize_array(a), summarize_array(b), Tolerance(rtol=1.0)
        ).deviation.message
    )
    reshaped = compare_summaries(summarize_array(a), summarize_array(a.reshape(10, 10)))
    assert reshaped.deviation.shape_change == ((100,), (10, 10))


def test_exact_summaries_differ_on_any_digest_change() -> None:
    a = np.arange(5000)
    b = a.copy()
    b[1234] += 1  # probably not sampled with sample_size=10
    result = compare_summaries(
        summarize_array(a, sample_size=10), summarize_array(b, sample_size=10)
    )
    assert result.status == "differs"


def test_summary_round_trips_through_json() -> None:
    from reprokit._serde import from_json, to_json

    s = summarize_array(np.array([[1.5, 2.5], [3.5, 4.5]]), sample_size=3)
    assert from_json(to_json(s), ArraySummary) == s


def test_object_arrays_cannot_be_summarized() -> None:
    with pytest.raises(InputError, match="object"):
        summarize_array(np.array([{}], dtype=object))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="long double is float64 here")
@pytest.mark.parametrize("int_dtype", [np.int64, np.uint64])
def test_a_64_bit_integer_against_a_float_is_compared_without_float64_rounding(
    int_dtype: Any,
) -> None:
    """2**53 + 1 as an integer and 2**53 as a float are one apart: float64 made them equal."""
    big = np.full(10, 2**53 + 1, int_dtype)
    assert compare_arrays(big, np.full(10, 2.0**53)).status == "differs"
    assert compare_arrays(big, np.full(10, 2.0**53), Tolerance(atol=1.0)).status == (
        "within_tolerance"
    )
    assert compare_arrays(big - 1, np.full(10, 2.0**53)).status == "within_tolerance"


def test_integer_arrays_out_of_a_declared_tolerance_say_why() -> None:
    """``[100, 200]`` against ``[100, 201]`` with ``rtol=0.5`` differs (integers compare
    exactly), which the table's ``rtol=0.5`` beside a 0.005 error left unexplained."""
    declared = compare_arrays(np.array([100, 200]), np.array([100, 201]), Tolerance(rtol=0.5))
    assert declared.status == "differs"
    assert declared.deviation.message.endswith("integers compare exactly, whatever the tolerance")
    exact = compare_arrays(np.array([100, 200]), np.array([100, 201]))
    assert "whatever the tolerance" not in exact.deviation.message
    same = compare_arrays(np.array([100, 200]), np.array([100, 200]), Tolerance(rtol=0.5))
    assert same.status == "reproduced"
