"""``reprokit run`` executing real notebooks in real kernels, recording to a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import mlflow_client, only_run, tracking_uri
from run_helpers import PERCENT_NOTEBOOK, write_notebook

from reprokit.api.run import run
from reprokit.cli import main
from reprokit.options import ExecutionOptions
from reprokit.results.notebook import read_notebook
from reprokit.runner.device import cuda_visible

CPU = ExecutionOptions(device="cpu")

PROBE = """\
import os, sys, json
import reprokit
reprokit.start(seed=seed)
reprokit.result("doubled", 2 * n)
print(json.dumps({
    "cwd": os.getcwd(),
    "mlflow_imported": "mlflow" in sys.modules,
    "device": device,
    "env": {k: os.environ.get(k) for k in (
        "REPROKIT_DEVICE", "REPROKIT_PARAMS", "PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES",
        "REPROKIT_MLFLOW", "REPROKIT_NOTEBOOK")},
}))
"""


def _stdout(output: Path, marker: str) -> str:
    node = nbformat.read(output, as_version=4)
    for cell in node.cells:
        for out in cell.get("outputs", []):
            if out.get("name") == "stdout" and marker in out.get("text", ""):
                return str(out["text"])
    raise AssertionError(f"no stdout with {marker!r} in {output}")


def test_run_injects_parameters_and_records_results_from_the_runner(project: Path) -> None:
    nb = write_notebook(
        project / "nbs" / "probe.ipynb", [PROBE], parameters="n = 1\nseed = 0\ndevice = 'auto'"
    )
    [outcome] = run([nb], execution=CPU, parameters={"n": 21, "seed": 7})
    assert outcome.ok, outcome
    output = Path(outcome.output_path)
    assert output.parent.parent.parent == project / ".reprokit" / "runs"
    assert read_notebook(output).results["doubled"].value == 42
    seen = json.loads(_stdout(output, "mlflow_imported"))
    assert seen["cwd"] == str(nb.parent.resolve())
    assert seen["mlflow_imported"] is False  # the runner records, not the kernel
    assert seen["device"] == "cpu"  # a declared ``device`` parameter gets the resolved device
    assert seen["env"]["REPROKIT_DEVICE"] == "cpu"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["env"]["PYTHONHASHSEED"] == "7"
    assert seen["env"]["REPROKIT_MLFLOW"] == "off"
    assert json.loads(seen["env"]["REPROKIT_PARAMS"]) == {"device": "cpu", "n": 21, "seed": 7}
    assert seen["env"]["REPROKIT_NOTEBOOK"] == str(nb.resolve())
    recorded = only_run(tracking_uri(project), "proj")
    assert recorded.info.run_id == outcome.run_id
    assert recorded.info.status == "FINISHED"
    assert recorded.data.metrics["doubled"] == 42
    assert recorded.data.params["n"] == "21"
    assert recorded.data.tags["reprokit.device"] == "cpu"
    artifacts = {
        a.path
        for a in mlflow_client(tracking_uri(project)).list_artifacts(outcome.run_id, "reprokit")
    }
    assert "reprokit/probe.ipynb" in artifacts


LATE_WRITES = """\
import time
import reprokit
from reprokit.api import session
reprokit.start()
run = session._active
def late():
    time.sleep(13)
    run.folder.write_text("late.txt", "written")
def broken():
    raise OSError(28, "No space left on device")
run._local("writing late.txt", late)
run._local("writing broken.txt", broken)
"""


def test_the_run_folders_writes_pending_after_the_last_cell_are_done_and_reported(
    project: Path,
) -> None:
    """A kernel's run kept local writes its folder's files on a thread; the runner kills the
    kernel after the last cell without its exit hooks, so it first has the kernel finish them
    (silently: no cell, no name added), waiting longer than the cells' ``--timeout``, and the
    problems they had reach the last cell."""
    nb = write_notebook(project / "late.ipynb", [LATE_WRITES, "x = 1"])
    # 12 s: the first cell captures the environment (seconds on a loaded machine); the late
    # write takes 13 s, longer than any cell may
    [outcome] = run([nb], execution=ExecutionOptions(device="cpu", timeout=12))
    assert outcome.ok, outcome
    [late] = (project / ".reprokit" / "runs").glob("*/late/*/late.txt")
    assert late.read_text() == "written"
    executed = nbformat.read(outcome.output_path, as_version=4)
    assert [c.execution_count for c in executed.cells] == [1, 2]
    [text] = [o["text"] for o in executed.cells[-1].outputs if o.get("name") == "stderr"]
    assert "writing broken.txt failed: OSError" in text and "No space left" in text


def test_failing_cell_exits_three_names_the_cell_and_marks_the_run_failed(project: Path) -> None:
    nb = write_notebook(project / "bad.ipynb", ["x = 1", "raise ValueError('boom')", "y = 2"])
    out = CliRunner().invoke(main, ["run", str(nb), "--device", "cpu"])
    assert out.exit_code == 3, out.output
    assert "cell 2 (In [2])" in out.output and "ValueError: boom" in out.output
    assert "raise ValueError('boom')" in out.output
    [output] = (project / ".reprokit" / "runs").glob("*/bad/bad.ipynb")
    assert str(output) in out.output
    executed = nbformat.read(output, as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "ValueError"
    recorded = only_run(tracking_uri(project), "proj")
    assert recorded.info.status == "FAILED"
    assert recorded.data.tags["reprokit.runner.failed_cell"] == "2"


def test_jobs_run_notebooks_side_by_side_in_their_own_folders(project: Path) -> None:
    paths = [
        write_notebook(project / "many" / f"nb{i}.ipynb", [f"value = {i}\nprint('value', value)"])
        for i in range(3)
    ]
    out_dir = project / "out"
    result = CliRunner().invoke(
        main,
        ["run", str(project / "many"), "--jobs", "2", "--no-record", "--output-dir", str(out_dir)],
    )
    assert result.exit_code == 0, result.output
    for i, path in enumerate(paths):
        assert f"value {i}" in _stdout(out_dir / path.stem / f"{path.stem}.ipynb", "value")


SPAN = """\
import json, os, time, psutil
created = psutil.Process().create_time()
first = time.time()
time.sleep(3.0)
with open(os.path.join(os.environ["SPANS"], NAME + ".json"), "w") as f:
    json.dump({"created": created, "first": first, "last": time.time()}, f)
"""


def test_jobs_start_one_kernel_ahead_and_execute_at_most_jobs_at_once(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_dir = project / "spans"
    spans_dir.mkdir()
    monkeypatch.setenv("SPANS", str(spans_dir))
    for name in ("a", "b", "c"):
        write_notebook(project / "ahead" / f"{name}.ipynb", [SPAN], parameters=f"NAME = {name!r}")
    options = ExecutionOptions(device="cpu", jobs=2, output_dir=project / "out")
    outcomes = run([project / "ahead"], execution=options, record=False)
    assert [o.status for o in outcomes] == ["ok"] * 3
    spans = {p.stem: json.loads(p.read_text()) for p in spans_dir.iterdir()}
    moments = sorted(t for s in spans.values() for t in (s["first"], s["last"]))
    for moment in moments:  # never more than --jobs notebooks between first and last cell
        assert sum(s["first"] <= moment < s["last"] for s in spans.values()) <= 2, spans
    # the notebook that executed last had its kernel before either other one had finished
    *first_two, third = sorted(spans, key=lambda name: spans[name]["first"])
    assert spans[third]["created"] < min(spans[n]["last"] for n in first_two), spans
    # its wait for a slot (about 3 s: a notebook's sleep) is not part of its duration
    waited = next(o for o in outcomes if Path(o.notebook).stem == third)
    assert waited.duration_s < spans[third]["last"] - spans[third]["created"] - 1.0, spans


def test_a_percent_script_runs_without_being_rewritten(project: Path) -> None:
    source = project / "pct.py"
    source.write_text(PERCENT_NOTEBOOK)
    before = (source.read_bytes(), source.stat().st_mtime_ns)
    [outcome] = run([source], execution=CPU, parameters={"scale": 5}, record=False)
    assert outcome.ok, outcome
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before
    assert read_notebook(outcome.output_path).results["scaled"].value == 15
    assert not list(project.glob("pct.ipynb"))


def test_timeouts_and_dead_kernels_are_outcomes_naming_the_cell(project: Path) -> None:
    slow = write_notebook(project / "slow.ipynb", ["x = 1", "import time\ntime.sleep(60)"])
    # results whose outputs never reach the notebook: one %%capture kept from being shown, one
    # clear_output() erased, and those declared right before the kernel died (still waiting on
    # its I/O thread): the runner puts them back from the kernel's spool
    captured = "%%capture\nimport os, reprokit\nreprokit.start()\nreprokit.result('captured', 2)"
    dying = "from IPython.display import clear_output\nreprokit.result('cleared', 3)\n"
    dying += "clear_output()\nfor i in range(20):\n    reprokit.result(f'r{i}', i)\nos._exit(1)"
    dead = write_notebook(project / "dead.ipynb", [captured, dying])
    # 8 s: a first cell of a freshly started kernel on a loaded 2-core machine can take seconds
    outcomes = run(
        [slow, dead], execution=ExecutionOptions(device="cpu", timeout=8, jobs=2), record=False
    )
    by_name = {Path(o.notebook).stem: o for o in outcomes}
    assert by_name["slow"].status == "timeout"
    assert by_name["slow"].failure is not None and by_name["slow"].failure.index == 1
    assert by_name["dead"].status == "kernel_died"
    assert by_name["dead"].failure is not None and by_name["dead"].failure.index == 1
    assert all(Path(o.output_path).is_file() for o in outcomes)
    died = Path(by_name["dead"].output_path)
    found = read_notebook(died)
    assert found.results.keys() == {"captured", "cleared"} | {f"r{i}" for i in range(20)}
    cells = {o.result.name: o.cell for o in found.outputs}
    assert cells["captured"] == 0 and cells["cleared"] == cells["r19"] == 1
    assert not died.with_name("dead.results.jsonl").exists()


@pytest.mark.skipif(cuda_visible(), reason="a CUDA device is visible here")
def test_device_cuda_without_a_gpu_is_a_usage_error(project: Path) -> None:
    nb = write_notebook(project / "a.ipynb", ["x = 1"])
    out = CliRunner().invoke(main, ["run", str(nb), "--device", "cuda"])
    assert out.exit_code == 2
    assert "no CUDA device is visible" in out.output


def test_input_problems_exit_two_before_anything_runs(project: Path) -> None:
    good = write_notebook(project / "good.ipynb", ["x = 1"], parameters="alpha = 1")
    plain = write_notebook(project / "plain.ipynb", ["x = 1"])
    broken = project / "broken.ipynb"
    broken.write_text("{oops")
    cases = [
        (["run", str(good), "-p", "beta=2"], "beta not declared"),
        (["run", str(plain), "-p", "alpha=2"], "no cell tagged 'parameters'"),
        (["run", str(good), str(broken)], "not JSON"),
        (["run", str(project / "missing.ipynb")], "missing.ipynb"),
        (["run", str(good), "--jobs", "0"], "--jobs"),
        (["run", str(good), "--kernel", "nope"], "no Jupyter kernel named 'nope'"),
    ]
    for args, message in cases:
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 2, (args, out.output)
        assert message in out.output
        assert "Traceback" not in out.output
    assert not (project / ".reprokit" / "runs").exists()
