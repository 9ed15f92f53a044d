"""Cell output comparison: volatile parts masked, numbers in text within tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from reprokit.compare.cells import compare_cell_outputs, first_failing
from reprokit.compare.outputs import compare_outputs
from reprokit.comparison import Tolerance
from reprokit.notebook.text import cell_text, mask_volatile
from reprokit.recording.lock import output_fingerprints
from reprokit.recording.lock_model import CellFingerprint


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("run 0123456789abcdef0123456789abcdef done", "run <RUN_ID> done"),
        ("id 123e4567-e89b-12d3-a456-426614174000", "id <UUID>"),
        ("at 2024-05-01T12:00:01.123Z", "at <TIMESTAMP>"),
        ("at 2024-05-01 12:00:01+02:00", "at <TIMESTAMP>"),
        ("on 2024-05-01.", "on <DATE>."),
        ("took 1.23s", "took <DURATION>"),
        ("took 12 ms", "took <DURATION>"),
        ("3.2 µs per loop", "<DURATION> per loop"),
        ("elapsed 0:00:01", "elapsed <TIME>"),
        ("Wall time: 1.3 s", "Wall time: <DURATION>"),
        ("12ms/step", "<DURATION>/step"),
        ("<__main__.Foo object at 0x7f3a2b1c0d90>", "<__main__.Foo object at <ADDRESS>>"),
        (" 45%|████▌     | 45/100 [00:01<00:02, 30.5it/s]", " <PROGRESS> <PROGRESS>"),
        ("1.5 it/s", "<RATE>"),
        ("saved /tmp/tmpab12cd34/model.pt ok", "saved /tmp/<TMP>/model.pt ok"),
        ("saved /private/var/folders/xy/ab12/T/m.pt", "saved /private/var/folders/<TMP>/T/m.pt"),
    ],
)
def test_volatile_parts_are_masked(text: str, masked: str) -> None:
    assert mask_volatile(text) == masked
    assert mask_volatile(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "text",
    ["accuracy 0.93 in 10 samples", "Epoch 1/10", "version 1.2.3", "0x1f", "sha 1a2b3c"],
)
def test_stable_text_is_left_alone(text: str) -> None:
    assert mask_volatile(text) == text


def test_carriage_returns_keep_the_final_state_of_a_line() -> None:
    bar = "epoch 1\r 10%|█ | 1/10 [00:00<?, ?it/s]\r100%|██████████| 10/10 [00:01<00:00]\ndone"
    assert mask_volatile(bar) == "<PROGRESS> <PROGRESS>\ndone"
    assert mask_volatile("a\r\nb") == "a\nb"


def test_identical_after_masking_is_reproduced() -> None:
    ref = "finished at 2024-05-01T12:00:00 in 1.2s\nacc 0.91"
    cur = "finished at 2025-01-02T08:30:00 in 3.4s\nacc 0.91"
    assert compare_outputs(ref, cur).status == "reproduced"


def test_numbers_inside_text_are_compared_within_tolerance() -> None:
    ref, cur = "loss: 0.123456 acc: 0.9100", "loss: 0.123457 acc: 0.9100"
    assert compare_outputs(ref, cur).status == "differs"
    assert compare_outputs(ref, cur, Tolerance(rtol=1e-4)).status == "within_tolerance"
    result = compare_outputs("loss: 0.5", "loss: 0.7", Tolerance(rtol=1e-3))
    assert result.status == "differs"
    assert result.deviation.first_mismatch == "line 1"
    assert result.deviation.max_abs_error == pytest.approx(0.2)


def test_printed_rounding_is_allowed_for_when_a_tolerance_is_declared() -> None:
    # 0.12344999 and 0.12345001 are 2e-8 apart but print as 0.1234 and 0.1235
    assert compare_outputs("x=0.1234", "x=0.1235", Tolerance(rtol=1e-6)).status == (
        "within_tolerance"
    )
    assert compare_outputs("x=0.1234", "x=0.1236", Tolerance(rtol=1e-6)).status == "differs"


def test_integer_looking_numbers_are_exact() -> None:
    assert compare_outputs("9512 correct", "9513 correct", Tolerance(rtol=0.1)).status == "differs"
    assert compare_outputs("1.0e-3", "0.001").status == "within_tolerance"


def test_whitespace_realignment_is_within_tolerance() -> None:
    ref = "   a     b\n0  1.5   2.25\n"
    cur = "   a    b\n0  1.5  2.25\n"
    assert compare_outputs(ref, cur).status == "within_tolerance"


def test_words_and_extra_text_differ() -> None:
    result = compare_outputs("shape (3, 4)\nok", "shape (3, 4)\nok\nwarning: x")
    assert result.status == "differs"
    assert result.deviation.first_mismatch == "line 3"
    assert "unexpected" in result.deviation.message
    assert compare_outputs("tensor([1., 2.])", "tensor([1., 3.])").status == "differs"


def test_text_outputs_and_errors_count_as_cell_output_images_do_not() -> None:
    cell = new_code_cell(
        "1/0",
        outputs=[
            new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
            new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]),
            new_output("display_data", data={"image/png": "iVBOR..."}),
        ],
    )
    assert cell_text(cell) == "42\nZeroDivisionError: division by zero"


# ----------------------------------------------------------------------------- lock fingerprints


def test_fingerprints_skip_the_injected_parameters_cell_and_markdown_cells() -> None:
    code = new_code_cell("print()", outputs=[new_output("stream", name="stdout", text="a 1\n")])
    injected = new_code_cell("seed = 1", metadata={"tags": ["injected-parameters"]})
    plain = nbformat.v4.new_notebook(cells=[new_markdown_cell("# t"), code])
    parameterised = nbformat.v4.new_notebook(cells=[new_markdown_cell("# t"), injected, code])
    assert output_fingerprints(plain) == output_fingerprints(parameterised)
    assert [f.index for f in output_fingerprints(plain)] == [1]


def _fp(index: int, text: str | None, digest: str | None = None) -> CellFingerprint:
    return CellFingerprint(index, digest or f"blake3:{hash(text)}", text)


def test_cell_outputs_statuses_against_the_lock() -> None:
    reference = [_fp(0, "a 1.00\n"), _fp(1, "loss 0.5000\n"), _fp(2, "done\n")]
    current = [_fp(0, "a 1.00\n"), _fp(1, "loss 0.5001\n")]
    checks = compare_cell_outputs(reference, current)
    assert [c.status for c in checks] == ["reproduced", "within_tolerance", "missing"]
    assert checks[2].reference == "done"
    assert first_failing(checks) == checks[2]
    longer = compare_cell_outputs(reference[:1], [*current[:1], _fp(4, "new\n")])
    assert [c.status for c in longer] == ["reproduced", "unexpected"]
    assert longer[1].index == 4
    digests = compare_cell_outputs(reference, current, digests_only=True)
    assert [c.status for c in digests] == ["reproduced", "differs", "missing"]
    assert first_failing(digests) == digests[1]


def test_cell_output_beyond_tolerance_quotes_the_line_that_differs() -> None:
    (check,) = compare_cell_outputs(
        [_fp(3, "epoch 1\nloss 0.50\n")], [_fp(3, "epoch 1\nloss 0.75\n")], Tolerance(rtol=1e-3)
    )
    assert check.status == "differs" and check.location == "line 2"
    assert (check.reference, check.obtained) == ("loss 0.50", "loss 0.75")
    assert check.max_abs_error == pytest.approx(0.25)


def test_a_cell_kept_only_as_a_digest_is_compared_by_digest() -> None:
    reference = [CellFingerprint(0, "blake3:aa", None)]
    assert compare_cell_outputs(reference, [CellFingerprint(0, "blake3:aa", "x")])[0].passed
    (check,) = compare_cell_outputs(reference, [CellFingerprint(0, "blake3:bb", "y")])
    assert check.status == "differs" and "only its digest" in check.note


def test_long_outputs_keep_only_their_digest_in_the_lock() -> None:

    from reprokit.recording.lock import output_fingerprints
    from reprokit.recording.lock_model import OUTPUT_TEXT_LIMIT

    node = nbformat.v4.new_notebook()
    for text in ("short\n", "x" * (OUTPUT_TEXT_LIMIT + 1)):
        cell = nbformat.v4.new_code_cell("print()")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        node.cells.append(cell)
    short, long = output_fingerprints(node)
    assert short.text == "short\n" and long.text is None
    assert output_fingerprints(node, text_limit=None)[1].text == "x" * (OUTPUT_TEXT_LIMIT + 1)


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("1796178997.16", "1796179021.05"),  # print(time.time()), 24 s later
        ("t=1796178997.1634524", "t=1796178997.7210391"),  # the same clock half a second on
        ("1000000", "1000001"),  # a counter
        ("day 20240501.0", "day 20240502.0"),  # a date printed as a float
        ("Thu May  2 10:00 2024", "Fri May  3 10:00 2024"),  # a date in words
        ("served 123456.5 requests", "served 123458.5 requests"),
    ],
)
def test_clocks_counters_and_dates_are_not_waved_through_by_rtol(
    reference: str, current: str
) -> None:
    assert compare_outputs(reference, current, Tolerance(rtol=1e-6)).status == "differs"


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("0.30000000000000004", "0.3"),
        ("1.2345678", "1.2345679"),
        ("loss 2.302585092994046", "loss 2.3025850929940455"),
        ("sum 1796178997.16", "sum 1796178997.17"),  # one unit of the last printed digit
        ("big 1.796179e+09", "big 1.7961791e+09"),  # an exponent: significant digits, rtol
    ],
)
def test_last_digit_noise_stays_within_tolerance(reference: str, current: str) -> None:
    assert compare_outputs(reference, current, Tolerance(rtol=1e-6)).status == "within_tolerance"


def test_an_explicit_atol_allows_a_change_in_a_large_number() -> None:
    ref, cur = "total 12345678.0", "total 12345680.0"  # a float32 sum on another device
    assert compare_outputs(ref, cur, Tolerance(rtol=1e-3)).status == "differs"
    assert compare_outputs(ref, cur, Tolerance(atol=4)).status == "within_tolerance"


def test_a_foreign_notebook_printing_the_clock_fails_output_comparison() -> None:
    """Two executions of a notebook written elsewhere (plain JSON, no reprokit in it) that
    print ``time.time()``: the cell differs; the cell printing a float sum does not."""
    node = nbformat.reads(_CLOCK_NOTEBOOK, as_version=4)
    later = nbformat.reads(_CLOCK_NOTEBOOK.replace("1796178997.16", "1796179021.05"), 4)
    later.cells[1].outputs[0]["text"] = "0.30000000000000004\n"
    checks = compare_cell_outputs(output_fingerprints(node), output_fingerprints(later))
    assert [c.status for c in checks] == ["differs", "within_tolerance"]


_CLOCK_NOTEBOOK = """{
 "cells": [
  {"cell_type": "code", "execution_count": 1, "id": "a1", "metadata": {},
   "outputs": [{"name": "stdout", "output_type": "stream", "text": ["1796178997.16\\n"]}],
   "source": ["import time\\n", "print(round(time.time(), 2))"]},
  {"cell_type": "code", "execution_count": 2, "id": "a2", "metadata": {},
   "outputs": [{"name": "stdout", "output_type": "stream", "text": ["0.3\\n"]}],
   "source": ["print(0.1 + 0.2 if False else 0.3)"]}
 ],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
  "language_info": {"name": "python"}},
 "nbformat": 4, "nbformat_minor": 5
}
"""


def _printed(*chunks: str) -> nbformat.NotebookNode:
    """A notebook of one cell whose printing the kernel sent in ``chunks`` (where it flushed)."""
    node = nbformat.v4.new_notebook()
    cell = new_code_cell("for i in range(40): print(i % 10, end='')")
    cell.outputs = [new_output("stream", name="stdout", text=chunk) for chunk in chunks]
    node.cells = [cell]
    return node


def test_where_the_kernel_flushed_a_cells_printing_does_not_change_its_output() -> None:
    """ipykernel sends a cell's printing in pieces cut wherever it flushed (timing): joining
    them with newlines made "01234567\\n89" of what printed "0123456789" (a stranger's report:
    NOT REPRODUCED for an identical output)."""
    one, two = _printed("0123", "456789\n"), _printed("012345", "6789\n")
    assert output_fingerprints(one) == output_fingerprints(two)
    assert output_fingerprints(one)[0].text == "0123456789\n"
    assert cell_text(_printed("105\n", "done\n").cells[0]) == "105\ndone\n"
    cell = _printed("a\n").cells[0]  # another stream or a result still starts a line
    cell.outputs += [
        new_output("stream", name="stderr", text="w\n"),
        new_output("stream", text="b"),
    ]
    assert cell_text(cell) == "a\n\nw\n\nb"


def test_a_lock_written_before_streams_were_merged_still_verifies() -> None:
    """Its fingerprints joined each stream output on a line of its own: a cell whose kernel
    flushed where it did then is still reproduced, one flushed elsewhere differs as before."""
    from reprokit.compare.cells import current_fingerprints

    old = output_fingerprints(_printed("0123", "456789\n"), merge_streams=False)
    same = current_fingerprints(old, _printed("0123", "456789\n"))
    assert [c.status for c in compare_cell_outputs(old, same)] == ["reproduced"]
    moved = current_fingerprints(old, _printed("012345", "6789\n"))
    assert [c.status for c in compare_cell_outputs(old, moved)] == ["differs"]
    new = output_fingerprints(_printed("012345", "6789\n"))  # a lock written now
    again = current_fingerprints(new, _printed("0", "123456789\n"))
    assert [c.status for c in compare_cell_outputs(new, again)] == ["reproduced"]


def test_a_volatile_cell_of_an_old_lock_keeps_its_template() -> None:
    """A cell ``record --repeat`` found volatile in a lock written before streams were merged:
    its template has the old text's shape, so that text is the one compared (masked)."""
    from reprokit.compare.cells import current_fingerprints
    from reprokit.recording.lock_model import VolatileCell

    old = output_fingerprints(_printed("loss ", "0.53\n"), merge_streams=False)
    template = VolatileCell(old[0].index, ("loss \n", "\n"), ("number",))
    later = _printed("loss ", "0.71\n")
    current = current_fingerprints(old, later, None, [template])
    checks = compare_cell_outputs(old, current, volatile=[template])
    assert [c.status for c in checks] == ["reproduced"]
    assert current_fingerprints(old, later)[0].text == "loss 0.71\n"  # no template: merged


def test_a_lock_that_kept_the_printed_end_line_verifies_where_it_was_recorded() -> None:
    """Until December 2026 ``%repro end`` printed its line (store and all) and locks kept
    it; now it is an output of reprokit's own, left out. An old lock still verifies where it
    was recorded (the same store); recorded elsewhere, that cell differs as it did then."""
    from reprokit.compare.cells import current_fingerprints
    from reprokit.report.display import run_ended_bundle

    def executed(store: str) -> nbformat.NotebookNode:
        node = nbformat.v4.new_notebook()
        end = new_code_cell("print('bye')\n%repro end")
        end.outputs = [
            new_output("stream", name="stdout", text="bye\n"),
            new_output("display_data", data=run_ended_bundle(None, "FINISHED", 2, store)),
        ]
        node.cells = [new_code_cell("x = 1"), end]
        return node

    here = executed("sqlite:////p/mlflow.db")
    old_lock = output_fingerprints(here, printed_end_line=True)
    assert old_lock[1].text is not None and "ended FINISHED: 2 result(s)" in old_lock[1].text
    assert current_fingerprints(old_lock, here) == old_lock
    new_lock = output_fingerprints(here)
    assert new_lock[1].text == "bye\n"
    assert current_fingerprints(new_lock, executed("sqlite:////q/mlflow.db")) == new_lock
    moved = output_fingerprints(executed("sqlite:////q/mlflow.db"), printed_end_line=True)
    assert current_fingerprints(moved, here)[1].digest != moved[1].digest


@pytest.mark.parametrize("outputs", [False, True])
def test_an_old_end_line_recorded_for_another_store_says_to_record_again(
    tmp_path: Path, outputs: bool
) -> None:
    from lock_helpers import executed, make_project

    from reprokit.compare.verify import verify_results
    from reprokit.options import ComparisonOptions
    from reprokit.report.table import OLD_END_LINE_HINT, output_lines
    from reprokit.results import encode_result, read_notebook

    project = make_project(tmp_path)
    results = [encode_result("acc", 0.5)]
    line = "reprokit: run (not recorded) ended FINISHED: 1 result(s) → sqlite:////a/mlflow.db\n"
    lock = _locked(project, executed(project, results, stdout=line))
    node = executed(project, results, stdout="")  # the line is reprokit's own output now
    verdict = verify_results(
        lock,
        read_notebook(node),
        comparison=ComparisonOptions(outputs=outputs),
        executed_notebook=node,
    )
    assert verdict.divergent_cell is not None and verdict.divergent_cell.old_end_line
    assert any(OLD_END_LINE_HINT in text for text in output_lines(verdict))
    other = _locked(project, executed(project, results, stdout="loss 0.5\n"))
    plain = verify_results(other, read_notebook(node), executed_notebook=node)
    assert plain.divergent_cell is not None and not plain.divergent_cell.old_end_line


def _locked(project: Any, node: Any) -> Any:
    from reprokit.recording.lock import build_lock

    return build_lock(project.notebook, node, project_root=project.root, device="cpu")


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("lr=0.001", "lr=0.002"),  # a 100% change is not rounding (a stranger's report)
        ("acc=0.5", "acc=0.6"),
        ("tiny=1e-05", "tiny=2e-05"),
        ("huge=3e+20", "huge=4e+20"),
        ("numpy 2.1.0", "numpy 2.2.0"),  # a version is text, not two numbers
        ("build 1234.5678.1", "build 1234.5679.1"),
        ("x=0.123", "x=0.124"),  # three significant digits: a flip is 0.8%, beyond 1e-3
    ],
)
def test_a_last_digit_change_of_few_significant_digits_differs(
    reference: str, current: str
) -> None:
    assert compare_outputs(reference, current, Tolerance(rtol=1e-6)).status == "differs"
    result = compare_cell_outputs([_fp(0, reference)], [_fp(0, current)])  # verify's default
    assert [c.status for c in result] == ["differs"]


def test_a_fixed_format_value_jittering_across_a_rounding_boundary_still_passes() -> None:
    """The value 12.3455 moved by 1e-9 prints as 12.345 on one side and 12.346 on the other
    under ``:.3f``: one unit of the last digit, 8e-5 of the value, is rounding."""
    below, above = f"loss {12.3455 - 1e-9:.3f}", f"loss {12.3455 + 1e-9:.3f}"
    assert (below, above) == ("loss 12.345", "loss 12.346")
    assert compare_outputs(below, above, Tolerance(rtol=1e-6)).status == "within_tolerance"
    result = compare_cell_outputs([_fp(0, below)], [_fp(0, above)])
    assert [c.status for c in result] == ["within_tolerance"]
    assert compare_outputs("loss 12.345", "loss 12.347", Tolerance(rtol=1e-6)).status == (
        "differs"  # two units is not rounding
    )


def test_a_version_is_compared_as_text_and_a_number_ending_a_sentence_as_a_number() -> None:
    assert compare_outputs("numpy 2.1.0", "numpy 2.1.0").status == "reproduced"
    within = compare_outputs("acc 2.5.", "acc 2.5000001.", Tolerance(rtol=1e-6))
    assert within.status == "within_tolerance"


_RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "printed",
    [
        f"View run bold-fox-12 at: http://127.0.0.1:5000/#/experiments/0/runs/{_RUN}",
        f"logged to runs:/{_RUN}/model",
        f"<RunInfo: artifact_uri='file:///p/mlruns/0/{_RUN}/artifacts', run_id='{_RUN}'>",
        f"Run ID: {_RUN}",
        f'{{"run_id": "{_RUN}"}}',
        f"(MLflow run {_RUN})",
        f"mlflow.parentRunId={_RUN}",
    ],
)
def test_a_run_id_is_masked_where_it_reads_as_one(printed: str) -> None:
    masked = mask_volatile(printed)
    assert _RUN not in masked and "<RUN_ID>" in masked
    assert mask_volatile(masked) == masked
    other = printed.replace(_RUN, "fedcba9876543210fedcba9876543210")
    assert compare_outputs(printed, other).status == "reproduced"


_OTHER = "fedcba9876543210fedcba9876543210"
_SEARCH_RUNS = f"""\
                             run_id experiment_id    status
0  {_RUN}             0  FINISHED
1  {_RUN[::-1]}             0  FINISHED"""


@pytest.mark.parametrize(
    "printed",
    [
        f"models:/m-{_RUN}",  # MLflow 3 logged model, as mlflow.log_model returns its URI
        f"file:///p/mlruns/0/models/m-{_RUN}/artifacts/model.pkl",
        f"Trace(trace_id=tr-{_RUN})",
        f"tr-{_RUN}",
        _SEARCH_RUNS,  # mlflow.search_runs(): a run_id column of bare ids
        f"run_id\n{_RUN}\n{_RUN[::-1]}",  # .to_string(index=False)
        f"run_id  experiment_id\n{_RUN}  0",  # a row that reads like md5sum's "<hex>  name"
        f"model_id  name\nm-{_RUN}  clf",
        f"run_id -> {_RUN}",
        f"run ({_RUN})",
        f"Run {_RUN}",
        f"'{_RUN}'",  # mlflow.active_run().info.run_id as a cell's last expression
        f"{_RUN}",
        f"md5 of run {_RUN}",  # the label is not right before it
        f"md5: m-{_RUN}",  # an m- or tr- prefixed id is an id, labelled or not
    ],
)
def test_mlflow_ids_are_masked_in_every_form_mlflow_prints(printed: str) -> None:
    """MLflow 3 model and trace ids, a DataFrame's run_id column, "run (<id>)": since only
    ids after "run"/"runs/" were masked, every verify of such a notebook failed (a
    stranger's report)."""
    masked = mask_volatile(printed)
    assert _RUN not in masked and "<RUN_ID>" in masked
    assert mask_volatile(masked) == masked
    other = printed.replace(_RUN, _OTHER)
    assert compare_outputs(printed, other).status == "reproduced"
    checks = compare_cell_outputs([_fp(0, masked)], [_fp(0, other)])
    assert [c.status for c in checks] == ["reproduced"]


@pytest.mark.parametrize(
    "label",
    [
        "md5: {}",
        "md5sum={}",
        "MD5 {}",
        "digest: {}",
        "hexdigest() -> {}",
        "data_hash='{}'",
        '{{"ETag": "{}"}}',
        "checksum  {}",
        "sha1 {}",
        "fingerprint={}",
        "MD5 (data/a.csv) = {}",  # BSD md5
        "{}  data/a.csv",  # md5sum
        "\\{} *data/b c.csv",  # md5sum -b of a name with a space
        "run_id\n<RUN_ID>\n\n{}  a.csv",  # a paragraph after a run_id column: md5sum
    ],
)
def test_a_changed_digest_labelled_as_a_hash_is_compared_not_masked(label: str) -> None:
    """``hashlib.md5(...).hexdigest()`` is 32 hex digits too: masked as a run id, a changed
    digest was ``reproduced`` while a changed SHA1 was caught (a stranger's report). A bare
    one is still masked (see the test above): one cannot tell it from a run id."""
    import hashlib

    before, after = hashlib.md5(b"weights v1").hexdigest(), hashlib.md5(b"weights v2").hexdigest()
    printed, changed = label.format(before), label.format(after)
    assert mask_volatile(printed) == printed
    assert compare_outputs(printed, changed).status == "differs"
    checks = compare_cell_outputs([_fp(0, printed)], [_fp(0, changed)])
    assert [c.status for c in checks] == ["differs"]
    assert compare_outputs(printed, printed).status == "reproduced"


def test_a_number_with_thousands_separators_is_one_number() -> None:
    """``f"{x:,.1f}"`` of 1002.35 moved by 2e-10 prints 1,002.3 or 1,002.4: the comma cut it
    in two and ``002.3`` against ``002.4`` was no rounding, while 1002.3 against 1002.4
    passed (a stranger's report)."""
    below, above = f"total {1002.35 - 2e-10:,.1f}", f"total {1002.35 + 2e-10:,.1f}"
    assert (below, above) == ("total 1,002.3", "total 1,002.4")
    for ref, cur in ((below, above), ("1_002.3", "1_002.4"), ("(-12,345.67)", "(-12,345.68)")):
        assert compare_outputs(ref, cur, Tolerance(rtol=1e-6)).status == "within_tolerance"
        assert [c.status for c in compare_cell_outputs([_fp(0, ref)], [_fp(0, cur)])] == [
            "within_tolerance"
        ]
    for ref, cur in (("1,002.3", "1,102.3"), ("1,002", "1,003"), ("1_002.3", "2_002.3")):
        assert compare_outputs(ref, cur, Tolerance(rtol=1e-6)).status == "differs"
    # a clock printed with separators is still large: no relative tolerance
    clock = compare_outputs("1,714,550,400.5", "1,714,550,424.5", Tolerance(rtol=1e-6))
    assert clock.status == "differs"


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("1,002,3", "1,002,4"),  # a CSV row: a group that is not 3 digits, so three numbers
        ("0,125,0.5", "0,125,0.6"),  # a group starting at 0 is no thousands group
        ("1,2,3", "1,2,4"),
        ("(0.5,0.6)", "(0.5,0.7)"),
        ("0.125,0.250", "0.125,0.251"),
    ],
)
def test_a_csv_row_of_small_numbers_is_still_compared_number_by_number(
    reference: str, current: str
) -> None:
    assert compare_outputs(reference, current, Tolerance(rtol=1e-6)).status == "differs"
    assert compare_outputs(reference, reference).status == "reproduced"


def test_the_end_line_of_a_run_mlflow_opened_then_refused_says_not_recorded() -> None:
    """A disk that filled up after MLflow opened the run: the line said ``run <id> ended
    FINISHED: 50 result(s) → …`` as if MLflow had it."""
    from reprokit.report.display import run_ended_bundle

    line = run_ended_bundle("7a53", "FINISHED", 50, "sqlite:///m.db", recording=False)
    assert line["text/plain"] == (
        "reprokit: run 7a53 ended FINISHED: 50 result(s) → sqlite:///m.db: not recorded there "
        "(see the warning)"
    )
    kept = run_ended_bundle("7a53", "FINISHED", 50, "sqlite:///m.db")
    assert kept["text/plain"] == "reprokit: run 7a53 ended FINISHED: 50 result(s) → sqlite:///m.db"


def test_a_run_status_shown_as_a_cells_last_value_is_reprokits_own_output() -> None:
    """``reprokit.start(seed=0)`` on a cell's last line displays a RunStatus whose repr holds
    the run folder: ``verify --outputs`` failed every unchanged notebook on it."""
    from IPython.core.formatters import DisplayFormatter

    from reprokit.recording.recorded_run import RunStatus

    def shown(local_dir: str, run_id: str) -> Any:
        status = RunStatus(active=True, run_id=run_id, local_dir=local_dir, status="RUNNING")
        data, metadata = DisplayFormatter().format(status)
        assert "local_dir=" in data["text/plain"]  # the user still sees the repr
        output = new_output("execute_result", data=data, metadata=metadata, execution_count=2)
        cell = new_code_cell("import reprokit\nreprokit.start(seed=0)", outputs=[output])
        node = nbformat.v4.new_notebook()
        node.cells = [cell]
        return node

    recorded = output_fingerprints(shown("/p/.reprokit/runs/20260101-000000-a", "a" * 32))
    verified = output_fingerprints(shown("/p/.reprokit/runs/20260202-111111-b", "b" * 32))
    assert recorded == verified and recorded[0].text == ""
    assert all(check.passed for check in compare_cell_outputs(recorded, verified))
