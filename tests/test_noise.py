"""Noise without kernels: spreads of repeated runs, volatile output spans and their masks,
widened tolerances, ``nondeterministic`` verdicts, determinism settings and calibration's
refusal without a GPU. The real executions are in ``test_repeat.py``."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
from lock_helpers import make_project, record, scalar_results

from reprokit.capturing.accelerator import cuda_visible
from reprokit.capturing.model import SeedRecord
from reprokit.compare.cells import compare_cell_outputs
from reprokit.compare.noise import (
    disagreeing,
    likely_causes,
    measure_noise,
    measure_spreads,
    volatile_cells,
    widened_lock,
    widened_tolerance,
)
from reprokit.compare.verify import FAILING, ResultCheck, Verdict, with_repeated_runs
from reprokit.comparison import Tolerance
from reprokit.exceptions import LockError, ReprokitWarning, UsageError
from reprokit.notebook.text import VOLATILE, mask_spans
from reprokit.options import WIDEN_FACTOR, RepeatOptions
from reprokit.recording.lock import read_lock, write_lock
from reprokit.recording.lock_model import (
    CellFingerprint,
    DeviceCalibration,
    ResultSpread,
    VolatileCell,
)
from reprokit.results.encode import encode_result

# ----------------------------------------------------------------------------- volatile


def _cells(*texts: str) -> list[tuple[CellFingerprint, ...]]:
    return [(CellFingerprint(0, "blake3:00", "header"), CellFingerprint(2, f"blake3:{k}", t))
            for k, t in enumerate(texts)]  # fmt: skip


def test_a_printed_clock_becomes_a_number_span_that_any_length_of_number_fills() -> None:
    (cell,) = volatile_cells(_cells("t = 1764662412.123\nfixed 42", "t = 1764662499.5\nfixed 42"))
    assert (cell.index, cell.literals, cell.spans) == (2, ("t = ", "\nfixed 42"), ("number",))
    assert (
        mask_spans(cell.literals, cell.spans, "t = 17.25\nfixed 42") == f"t = {VOLATILE}\nfixed 42"
    )
    assert mask_spans(cell.literals, cell.spans, "t = -3e-07\nfixed 42") is not None
    assert mask_spans(cell.literals, cell.spans, "time: 5\nfixed 42") is None  # shape changed


def test_cells_that_did_not_move_are_not_volatile_and_a_changed_word_count_is_text() -> None:
    same = volatile_cells(_cells("loss 0.25", "loss 0.25", "loss 0.25"))
    assert same == ()
    (cell,) = volatile_cells(_cells("picked a b", "picked a b c d"))
    assert cell.spans == ("text",)
    assert mask_spans(cell.literals, cell.spans, "picked a x y z") == f"picked a {VOLATILE}"
    assert mask_spans(cell.literals, cell.spans, "chose a b") is None  # literals still count


def test_verify_outputs_masks_exactly_the_volatile_spans() -> None:
    volatile = (VolatileCell(2, ("t = ", "\nfixed 42"), ("number",)),)
    ref = (CellFingerprint(2, "blake3:aa", "t = 1764662412.123\nfixed 42"),)
    clock = (CellFingerprint(2, "blake3:bb", "t = 1764669999.5\nfixed 42"),)
    (unmasked,) = compare_cell_outputs(ref, clock)
    assert unmasked.status == "differs"  # a clock: no relative tolerance for it
    (masked,) = compare_cell_outputs(ref, clock, volatile=volatile)
    assert (masked.status, masked.volatile) == ("reproduced", 1)
    (digests,) = compare_cell_outputs(ref, clock, digests_only=True, volatile=volatile)
    assert digests.status == "reproduced"
    changed = (CellFingerprint(2, "blake3:cc", "t = 1764669999.5\nfixed 43"),)
    (literal,) = compare_cell_outputs(ref, changed, volatile=volatile)
    assert literal.status == "differs"  # only the span is masked, never the rest


# ----------------------------------------------------------------------------- spreads


def _runs(*values: object, rtol: float | None = None) -> list[dict[str, object]]:
    return [{"x": encode_result("x", v, rtol=rtol), "n": encode_result("n", 3)} for v in values]


def test_the_spread_is_the_largest_deviation_from_the_first_run() -> None:
    spreads = measure_spreads(_runs(1.0, 1.001, 0.998))  # type: ignore[arg-type]
    assert spreads["x"].runs == 3
    assert spreads["x"].max_abs_error == pytest.approx(0.002)
    assert spreads["x"].mismatched_fraction == 1.0
    assert spreads["n"].max_abs_error == 0.0


def test_a_result_beyond_its_tolerance_is_unstable_and_widened_to_k_times_its_spread() -> None:
    runs = _runs(1.0, 1.001, 0.998, rtol=1e-6)
    noise = measure_noise(runs, [(), (), ()], factor=WIDEN_FACTOR)  # type: ignore[arg-type]
    (noisy,) = noise.unstable
    assert noisy.name == "x"
    assert noisy.widened is not None
    assert noisy.widened.atol == pytest.approx(4 * 0.002)
    assert noisy.widened.rtol == pytest.approx(4 * 0.002)
    assert disagreeing(runs, {"x": noisy.widened}) == set()  # type: ignore[arg-type]
    within = measure_noise(_runs(1.0, 1.0000001, rtol=1e-3), [(), ()], factor=4)  # type: ignore[arg-type]
    assert within.unstable == ()


def test_integers_that_move_cannot_be_covered_by_any_tolerance() -> None:
    runs = [{"k": encode_result("k", 3)}, {"k": encode_result("k", 5)}]
    (noisy,) = measure_noise(runs, [(), ()], factor=4).unstable  # type: ignore[arg-type]
    assert noisy.widened is None


def test_widening_writes_the_tolerance_and_its_provenance_into_the_lock(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results(acc=0.931, rtol=1e-9))
    runs = [{"acc": encode_result("acc", a, rtol=1e-9)} for a in (0.931, 0.932)]
    noise = measure_noise(runs, [(), ()], factor=4)  # type: ignore[arg-type]
    written = write_lock(widened_lock(lock, noise, 4), project.lock_path)
    again = read_lock(project.lock_path)
    assert again.results["acc"].atol == pytest.approx(0.004)
    spread = again.spreads["acc"]
    assert (spread.widened, spread.factor, spread.runs, spread.declared_rtol) == (True, 4, 2, 1e-9)
    assert written.spreads == again.spreads


def test_likely_causes_name_the_unseeded_generator_cell() -> None:
    import nbformat

    node = nbformat.v4.new_notebook()
    node.cells = [nbformat.v4.new_code_cell("import numpy as np"),
                  nbformat.v4.new_code_cell("rng = np.random.default_rng()")]  # fmt: skip
    causes = likely_causes(node, None)
    assert causes[0].startswith("unseeded generator: default_rng() in cell 2")


def test_likely_causes_without_a_culprit_say_no_seed_was_set() -> None:
    causes = likely_causes({"cells": []}, None)
    assert causes[0].startswith("no seed set")


# ----------------------------------------------------------------------------- verify --repeat


def _verdict(status: str = "differs") -> Verdict:
    check = ResultCheck("x", status, "1.0", "1.1", None, Tolerance(rtol=1e-6))  # type: ignore[arg-type]
    return Verdict("nb.ipynb", False, {"differs": 1}, (check,))


def test_a_differing_result_whose_own_runs_disagree_is_nondeterministic(tmp_path: Path) -> None:
    lock = record(make_project(tmp_path), scalar_results())
    verdict = with_repeated_runs(_verdict(), lock, _runs(1.1, 1.2))  # type: ignore[arg-type]
    (check,) = verdict.checks
    assert check.status == "nondeterministic" and check.status in FAILING
    assert check.spread is not None and check.spread.max_abs_error == pytest.approx(0.1)
    assert "its own runs disagree" in check.message
    assert verdict.counts["nondeterministic"] == 1 and verdict.counts["differs"] == 0


def test_a_differing_result_that_is_stable_here_stays_differs(tmp_path: Path) -> None:
    lock = record(make_project(tmp_path), scalar_results())
    verdict = with_repeated_runs(_verdict(), lock, _runs(1.1, 1.1))  # type: ignore[arg-type]
    assert verdict.checks[0].status == "differs"


# ----------------------------------------------------------------------------- lock schema 2


def test_noise_fields_round_trip_and_a_version_1_lock_still_reads(tmp_path: Path) -> None:
    import json

    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    calibration = DeviceCalibration("2026-12-02T08:00:00+00:00", ("cpu", "cuda"), "H200", 4.0)
    volatile = (VolatileCell(1, ("t = ", ""), ("number",)),)
    write_lock(replace(lock, volatile=volatile, calibration=calibration), project.lock_path)
    again = read_lock(project.lock_path)
    assert again.volatile == volatile and again.calibration == calibration
    data = json.loads(project.lock_path.read_text())
    for key in ("spreads", "volatile", "calibration"):
        data.pop(key)
    data["parameters"].pop("deterministic")
    data["schema_version"] = 1
    project.lock_path.write_text(json.dumps(data))
    assert read_lock(project.lock_path).spreads == {}


def test_a_lock_naming_an_unknown_span_kind_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    bad = (VolatileCell(1, ("a", "b"), ("(.*)*$",)),)  # a lock never carries a pattern
    write_lock(replace(lock, volatile=bad), project.lock_path)
    with pytest.raises(LockError, match=r"volatile\[0\]\.spans"):
        read_lock(project.lock_path)


# ----------------------------------------------------------------------------- options, settings


def test_repeat_must_be_a_whole_number_of_at_least_one() -> None:
    with pytest.raises(UsageError, match="--repeat"):
        RepeatOptions(runs=0)
    assert RepeatOptions(runs=3).measures and not RepeatOptions().measures


def test_deterministic_settings_go_into_the_kernel_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reprokit.runner.device import DeviceChoice
    from reprokit.runner.plan import kernel_env

    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "0")  # the user's own value is kept
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    choice = DeviceChoice("cpu", "cpu", {})
    env = kernel_env(Path("nb.ipynb"), Path("out"), choice, {"seed": 3}, deterministic=True)
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert env["REPROKIT_DETERMINISTIC"] == "1"
    assert "TF_DETERMINISTIC_OPS" not in env
    assert env["PYTHONHASHSEED"] == "3"
    plain = kernel_env(Path("nb.ipynb"), Path("out"), choice, {})
    assert "CUBLAS_WORKSPACE_CONFIG" not in plain


def _fake_torch(initialised: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.manual_seed = lambda seed: None  # type: ignore[attr-defined]
    torch.use_deterministic_algorithms = lambda flag: None  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: initialised, manual_seed_all=lambda seed: None
    )
    torch.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace())  # type: ignore[attr-defined]
    return torch


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("CUBLAS_WORKSPACE_CONFIG", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC",
                 "REPROKIT_DETERMINISTIC"):  # fmt: skip
        monkeypatch.setenv(name, "x")  # so that the test's own setting is undone afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    return monkeypatch


def test_live_deterministic_sets_the_cuda_variables_before_cuda_starts(
    clean_env: pytest.MonkeyPatch,
) -> None:
    import os

    from reprokit.capturing.seeds import seed_everything

    clean_env.setitem(sys.modules, "torch", _fake_torch(initialised=False))
    record = seed_everything(0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert record.settings["TF_DETERMINISTIC_OPS"] == "1"


def test_live_deterministic_after_cuda_started_warns_in_one_line_naming_what_missed(
    clean_env: pytest.MonkeyPatch,
) -> None:
    import os

    from reprokit.capturing.seeds import seed_everything

    clean_env.setitem(sys.modules, "torch", _fake_torch(initialised=True))
    with pytest.warns(ReprokitWarning) as caught:
        seed_everything(0, deterministic=True)
    (message,) = [str(w.message) for w in caught if "CUDA is already" in str(w.message)]
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in message and "\n" not in message
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_kernel_started_deterministic_seeds_deterministically(
    clean_env: pytest.MonkeyPatch,
) -> None:
    from reprokit.capturing.seeds import seed_everything

    clean_env.setitem(sys.modules, "torch", _fake_torch(initialised=False))
    clean_env.setenv("REPROKIT_DETERMINISTIC", "1")
    assert isinstance(seed_everything(0), SeedRecord)
    assert seed_everything(0).deterministic is True


# ----------------------------------------------------------------------------- calibrate


def test_calibrate_without_a_gpu_refuses_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.api.calibrate import calibrate
    from reprokit.capturing import accelerator

    project = make_project(tmp_path)
    record(project, scalar_results())
    monkeypatch.setattr(accelerator, "_nvml_facts", lambda: accelerator._NvmlFacts(ok=False))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(UsageError, match="no CUDA device is visible") as caught:
        calibrate(project.notebook)
    assert "\n" not in str(caught.value)
    assert not (project.root / ".reprokit").exists()  # nothing ran
    with pytest.raises(UsageError, match="expected cpu,cuda"):
        calibrate(project.notebook, devices=["cpu", "tpu"])


def test_deterministic_without_a_seed_still_sets_what_must_precede_cuda(
    clean_env: pytest.MonkeyPatch,
) -> None:
    import os

    from reprokit.capturing.seeds import make_deterministic

    clean_env.setitem(sys.modules, "torch", _fake_torch(initialised=False))
    settings = make_deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert settings["torch.use_deterministic_algorithms"] == "True"
    assert "REPROKIT_DETERMINISTIC" not in os.environ  # the runner's signal, not the notebook's


def test_a_nondeterministic_result_reads_the_same_in_every_report(tmp_path: Path) -> None:
    import json

    from reprokit.report.json_report import write_json_report
    from reprokit.report.junit import write_junit
    from reprokit.report.table import plain_table

    lock = record(make_project(tmp_path), scalar_results())
    verdict = with_repeated_runs(_verdict(), lock, _runs(1.1, 1.2))  # type: ignore[arg-type]
    table = plain_table(verdict)
    assert "nondeterministic" in table
    assert "spread here abs 0.1" in table and "recorded not measured" in table
    write_junit([verdict], tmp_path / "junit.xml")
    assert "x: nondeterministic" in (tmp_path / "junit.xml").read_text()
    write_json_report([verdict], tmp_path / "verdict.json")
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert "nondeterministic" in json.dumps(data)
    assert '"runs": 2' in json.dumps(data)


def test_widening_needs_repeated_runs() -> None:
    with pytest.raises(UsageError, match="--widen-tolerances"):
        RepeatOptions(runs=1, widen_tolerances=True)


@pytest.mark.skipif(cuda_visible(), reason="a CUDA device is visible here")
def test_the_calibrate_command_without_a_gpu_exits_2_in_one_line(tmp_path: Path) -> None:
    import subprocess

    project = make_project(tmp_path)
    record(project, scalar_results())
    done = subprocess.run(
        [sys.executable, "-m", "reprokit", "calibrate", str(project.notebook)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no CUDA device is visible" in done.stderr


def test_the_env_diff_explains_a_change_of_any_determinism_setting() -> None:
    from test_compare_envdiff import snapshot

    from reprokit.capturing.seeds import DETERMINISTIC_ENV
    from reprokit.compare.envdiff import diff_snapshots

    ref = snapshot()
    with_settings = replace(ref, environment={**ref.environment, **DETERMINISTIC_ENV})
    diff = diff_snapshots(with_settings, ref)
    named = {change.key: change for change in diff.changes if change.category == "environment"}
    for name in DETERMINISTIC_ENV:
        assert named[name].importance == 0, name  # shown beside a failed result, first
        assert named[name].hint != "an allow-listed environment variable changed"
    from reprokit.capturing.envvars import collect_environment

    assert "REPROKIT_DETERMINISTIC" in collect_environment({"REPROKIT_DETERMINISTIC": "1"})


def test_repeated_copies_are_planned_apart_and_numbered(tmp_path: Path) -> None:
    from reprokit.runner.device import DeviceChoice
    from reprokit.runner.plan import plan_runs

    project = make_project(tmp_path)
    other = project.root / "other.ipynb"
    other.write_bytes(project.notebook.read_bytes())
    sources = [project.notebook] * 3 + [other]
    plans = plan_runs(sources, tmp_path / "out", DeviceChoice("cpu", "cpu", {}), {})
    assert [p.copy for p in plans] == [(1, 3), (2, 3), (3, 3), (1, 1)]
    assert len({p.output_dir for p in plans}) == 4  # each run in a folder of its own


def test_a_spread_near_the_float_range_widens_nothing() -> None:
    # 2 x 1e308 overflows: no finite tolerance covers that spread, none is written
    huge = ResultSpread(runs=2, max_abs_error=1e308, max_rel_error=1.0)
    assert widened_tolerance(Tolerance(), huge, 2.0) is None
    small = ResultSpread(runs=2, max_abs_error=1e-9, max_rel_error=1e-10)
    assert widened_tolerance(Tolerance(), small, 2.0) == Tolerance(rtol=2e-10, atol=2e-9)
