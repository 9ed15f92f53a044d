"""The run stage without kernels: discovery, loading, parameters, devices, local-only runs."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import pytest
from run_helpers import PERCENT_NOTEBOOK, reprokit_cli, write_notebook

from reprokit.exceptions import ExecutionError, PathError, UsageError
from reprokit.notebook.files import declared_parameters, discover_notebooks, load_notebook
from reprokit.recording.recorded_run import LocalRecorder, mlflow_enabled
from reprokit.recording.worker import Call, LogBatch
from reprokit.runner.device import resolve_device
from reprokit.runner.params import check_declared, parse_assignments, parse_value
from reprokit.runner.plan import kernel_env


def test_discovery_skips_checkpoints_hidden_output_and_sidecar_folders(tmp_path: Path) -> None:
    write_notebook(tmp_path / "b.ipynb", ["1"])
    write_notebook(tmp_path / "sub" / "a.ipynb", ["1"])
    (tmp_path / "sub" / "pct.py").write_text(PERCENT_NOTEBOOK)
    (tmp_path / "sub" / "script.py").write_text("print('not a notebook')\n")
    for skipped in (".ipynb_checkpoints", ".reprokit/runs/x", ".hidden", "fig.repro"):
        write_notebook(tmp_path / skipped / "skip.ipynb", ["1"])
    found = [p.relative_to(tmp_path).as_posix() for p in discover_notebooks([tmp_path])]
    assert found == ["b.ipynb", "sub/a.ipynb", "sub/pct.py"]


def test_discovery_keeps_named_files_once_and_rejects_missing_paths(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "a.ipynb", ["1"])
    assert discover_notebooks([nb, nb, tmp_path]) == [nb]
    with pytest.raises(PathError, match=r"missing\.ipynb"):
        discover_notebooks([tmp_path / "missing.ipynb"])


def test_load_rejects_non_json_and_invalid_notebooks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(PathError, match="not JSON") as info:
        load_notebook(broken)
    assert info.value.exit_code == 2
    wrong = tmp_path / "wrong.ipynb"
    wrong.write_text(json.dumps({"cells": "nope", "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(PathError, match="not a valid notebook"):
        load_notebook(wrong)


def test_load_converts_a_percent_script_in_memory(tmp_path: Path) -> None:
    source = tmp_path / "pct.py"
    source.write_text(PERCENT_NOTEBOOK)
    node = load_notebook(source)
    assert declared_parameters(node) == ("scale",)
    assert source.read_text() == PERCENT_NOTEBOOK


def test_declared_parameters_reads_plain_annotated_and_tuple_assignments(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "p.ipynb", ["x = 1"], parameters="a = 1\nb: int = 2\nc, d = 3, 4"
    )
    assert declared_parameters(load_notebook(nb)) == ("a", "b", "c", "d")
    plain = write_notebook(tmp_path / "q.ipynb", ["x = 1"])
    assert declared_parameters(load_notebook(plain)) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.5", 0.5), ("true", True), ("True", True), ("None", None), ("[1, 2]", [1, 2])],
)
def test_parameter_values_parse_as_json_or_python_words(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_parameter_values_fall_back_to_text() -> None:
    assert parse_assignments(["name=abc", "n=3", "n=4", "empty="]) == {
        "name": "abc",
        "n": 4,
        "empty": "",
    }
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_assignments(["noequals"])


def test_undeclared_or_undeclarable_parameters_are_usage_errors() -> None:
    check_declared("nb.ipynb", {"a": 1}, ("a", "b"))
    with pytest.raises(UsageError, match=r"zz not declared.*declared: a, b"):
        check_declared("nb.ipynb", {"zz": 1}, ("a", "b"))
    with pytest.raises(UsageError, match="no cell tagged 'parameters'"):
        check_declared("nb.ipynb", {"a": 1}, None)


def test_device_resolution() -> None:
    assert resolve_device("cpu").env == {"CUDA_VISIBLE_DEVICES": ""}
    assert resolve_device("auto", probe=lambda: False).device == "cpu"
    assert resolve_device("auto", probe=lambda: True).device == "cuda"
    assert resolve_device("CUDA", probe=lambda: True).env == {}
    with pytest.raises(UsageError, match="no CUDA device is visible"):
        resolve_device("cuda", probe=lambda: False)
    with pytest.raises(UsageError, match="expected one of"):
        resolve_device("tpu")


def test_kernel_env_carries_device_parameters_and_seed(tmp_path: Path) -> None:
    env = kernel_env(tmp_path / "a.ipynb", tmp_path / "out", resolve_device("cpu"), {"seed": 7})
    assert env["REPROKIT_MLFLOW"] == "off"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["REPROKIT_DEVICE"] == "cpu"
    assert json.loads(env["REPROKIT_PARAMS"]) == {"seed": 7}
    assert env["PYTHONHASHSEED"] == "7"
    other = kernel_env(tmp_path / "a.ipynb", tmp_path / "out", resolve_device("cpu"), {})
    assert other["PYTHONHASHSEED"] == "0"


def test_kernel_hash_seed_follows_the_parameters_cell_when_seed_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.runner.plan import plan_runs

    monkeypatch.setenv("PYTHONHASHSEED", "5")  # the runner's own value: the notebook's wins
    nb = write_notebook(tmp_path / "a.ipynb", ["1"], parameters="seed = 3\nn = 1")
    cpu = resolve_device("cpu")
    [plain] = plan_runs([nb], tmp_path / "out", cpu, {})
    assert plain.env["PYTHONHASHSEED"] == "3"  # what `verify -p seed=3` gives too
    [given] = plan_runs([nb], tmp_path / "out2", cpu, {"seed": 3})
    assert given.env["PYTHONHASHSEED"] == "3"
    [other] = plan_runs([nb], tmp_path / "out3", cpu, {"seed": 8})
    assert other.env["PYTHONHASHSEED"] == "8"
    for cell in ("seed = 2 ** 3", "seed = True", "seed = 3.0", "seed = '3'", "x = 1"):
        odd = write_notebook(tmp_path / "b.ipynb", ["1"], parameters=cell)
        [plan] = plan_runs([odd], tmp_path / "out4", cpu, {})
        assert plan.env["PYTHONHASHSEED"] == "0", cell  # only a plain int literal counts


@pytest.mark.parametrize(
    ("seed", "expected"),
    [(10_000_000_000, str(10_000_000_000 % 2**32)), (2**32, "0"), (2**32 - 1, "4294967295"),
     (True, "0"), (False, "0"), (-1, "0"), ("7", "0"), (7, "7")],
)  # fmt: skip
def test_kernel_hash_seed_is_always_one_python_accepts(seed: object, expected: str) -> None:
    env = kernel_env(Path("a.ipynb"), Path("out"), resolve_device("cpu"), {"seed": seed})
    assert env["PYTHONHASHSEED"] == expected
    defaults = kernel_env(
        Path("a.ipynb"), Path("out"), resolve_device("cpu"), {}, defaults={"seed": seed}
    )
    assert defaults["PYTHONHASHSEED"] == expected


def test_local_recorder_runs_file_writes_and_drops_mlflow_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPROKIT_MLFLOW", "off")
    assert not mlflow_enabled()
    written: list[int] = []
    gate = threading.Event()
    recorder = LocalRecorder()
    recorder.submit(Call("wait", lambda: gate.wait(10)))
    recorder.submit(Call("write", lambda: written.append(threading.get_ident())))
    recorder.submit(LogBatch(tags={"a": "b"}))
    recorder.submit(Call("fail", lambda: 1 / 0))
    assert recorder.pending == 3 and not recorder.flush(0.05)  # on its thread: not waited for
    gate.set()
    assert recorder.flush(10) and recorder.pending == 0 and recorder.run_id is None
    assert written and written[0] != threading.get_ident()
    assert "ZeroDivisionError" in recorder.take_errors()[0]
    recorder.stop()
    recorder.submit(Call("after the end", lambda: written.append(threading.get_ident())))
    assert written[-1] == threading.get_ident()  # no thread any more: written here, at once


def test_execution_error_exits_three_and_pickles() -> None:
    error = ExecutionError("nb.ipynb", cell_index=2, ename="ValueError", evalue="boom")
    clone = pickle.loads(pickle.dumps(error))
    assert clone.exit_code == 3 and clone.cell_index == 2
    assert str(clone) == "nb.ipynb: cell 3 failed: ValueError: boom"  # index 2, cell 3


def test_a_run_under_the_runner_stays_local(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import mlflow_client, tracking_uri

    from reprokit.api import session

    monkeypatch.setenv("REPROKIT_MLFLOW", "off")
    monkeypatch.setenv("REPROKIT_OUTPUT_DIR", str(project / "out"))
    session.start(experiment="local-only")
    session.result("acc", 0.5)
    status = session.end()
    assert status.status == "FINISHED" and status.run_id is None and status.errors == ()
    assert status.local_dir is not None
    assert json.loads((Path(status.local_dir) / "results.json").read_text())["acc"]["value"] == 0.5
    assert mlflow_client(tracking_uri(project)).get_experiment_by_name("local-only") is None


class _FakeKernel:
    """The shell channel and kernel manager ``BoundedClient`` settles through, scripted."""

    def __init__(self, replies: list[dict[str, object]], alive: bool = True) -> None:
        self.replies, self.alive, self.interrupted, self.sent = replies, alive, 0, []
        self.shell_channel = self

    def execute(self, code: str, **kwargs: object) -> str:
        self.sent.append((code, kwargs))
        return "settle-1"

    def get_msg(self, timeout: float) -> dict[str, object]:
        import queue

        if not self.replies:
            raise queue.Empty
        return self.replies.pop(0)

    def is_alive(self) -> bool:
        return self.alive

    def interrupt_kernel(self) -> None:
        self.interrupted += 1


def _settle(kernel: _FakeKernel) -> str:
    import asyncio
    from types import SimpleNamespace

    from reprokit.runner._outputs import BoundedClient

    fake = SimpleNamespace(kc=kernel, km=kernel)
    fake._async_reply = lambda msg_id, seconds: BoundedClient._async_reply(fake, msg_id, seconds)
    return asyncio.run(BoundedClient._async_settle(fake))


def test_the_runner_settles_a_kernel_on_its_own_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settle request is silent and evaluates the expression; its answer is picked out of
    other replies; a kernel that has not answered by the deadline is interrupted (so it answers
    papermill's next request) and the notebook is told; a dead kernel is left alone."""
    import reprokit.runner._outputs as outputs

    monkeypatch.setattr(outputs, "SETTLE_WAIT_S", 0.3)
    monkeypatch.setattr(outputs, "AFTER_INTERRUPT_S", 0.1)
    text = repr("reprokit: warning: writing data.json failed: OSError: disk full")
    answer = {"status": "ok", "data": {"text/plain": text}}
    reply = {
        "parent_header": {"msg_id": "settle-1"},
        "content": {"user_expressions": {"reprokit": answer}},
    }
    other = {"parent_header": {"msg_id": "an earlier cell"}, "content": {}}
    kernel = _FakeKernel([other, reply])
    assert _settle(kernel) == "reprokit: warning: writing data.json failed: OSError: disk full"
    [(code, sent)] = kernel.sent
    assert code == "" and sent["silent"] is True and sent["store_history"] is False
    assert sent["user_expressions"] == {"reprokit": outputs.SETTLE_EXPRESSION}
    assert kernel.interrupted == 0
    busy = _FakeKernel([])
    assert "still being written after 0.3 s" in _settle(busy) and busy.interrupted == 1
    dead = _FakeKernel([], alive=False)
    assert _settle(dead) == "" and dead.interrupted == 0


def test_a_notebook_whose_name_cannot_be_kept_is_refused_in_one_line(tmp_path: Path) -> None:
    """A name whose files would not fit in 255 bytes (``<name>.kernel.attempt-N.log``,
    ``<name>.repro.json``), or that is not UTF-8 (it goes into JSON), is refused before
    anything runs, by every command that looks for notebooks (it was a traceback: "File name
    too long", "surrogates not allowed")."""
    from click.testing import CliRunner

    from reprokit.cli import main
    from reprokit.notebook.files import MAX_STEM_BYTES

    fits = tmp_path / ("实" * (MAX_STEM_BYTES // 3) + ".py")
    too_long = tmp_path / "long" / ("b" * (MAX_STEM_BYTES + 1) + ".py")
    not_utf8 = tmp_path / "odd" / os.fsdecode(b"bad\xff\xfename.py")
    # a line break would start a line of its own, read by GitHub as a command (a stranger)
    ci_command = tmp_path / "cmd" / "x\n::warning::y.py"
    for path in (fits, too_long, not_utf8, ci_command):
        path.parent.mkdir(exist_ok=True)
        path.write_text(PERCENT_NOTEBOOK)
    assert discover_notebooks([fits]) == [fits]
    with pytest.raises(PathError, match=f"may take {MAX_STEM_BYTES} bytes, it takes 235"):
        discover_notebooks([tmp_path / "long"])
    with pytest.raises(PathError, match=r"bad\\xff\\xfename.py: the name is not UTF-8 text"):
        discover_notebooks([not_utf8])
    with pytest.raises(PathError, match=r"x\\n::warning::y.py: the path holds a control char"):
        discover_notebooks([tmp_path / "cmd"])
    for command in (
        ["run", "--no-record"],
        ["record"],
        ["verify"],
        ["check"],
        ["bundle", "-o", str(tmp_path / "b.zip")],
    ):
        for path, why in (
            (too_long, "the name is too long"),
            (not_utf8, "is not UTF-8"),
            (ci_command, "control character"),
        ):
            result = CliRunner().invoke(main, [command[0], str(path), *command[1:]])
            assert result.exit_code == 2, (command, result.output)
            assert why in result.output and "Traceback" not in result.output, result.output


def test_a_markdown_file_is_a_notebook_only_with_a_jupytext_header(tmp_path: Path) -> None:
    """A README whose code block shows a ``# %%`` cell is documentation, not a notebook."""
    import jupytext

    (tmp_path / "README.md").write_text("# Notes\n\n```python\n# %%\nprint('hi')\n```\n")
    (tmp_path / "front.md").write_text("---\ntitle: jupytext\n---\n\n```python\n# %%\n```\n")
    node = load_notebook(write_notebook(tmp_path / "src.ipynb", ["x = 1"]))
    (tmp_path / "src.ipynb").unlink()
    (tmp_path / "plain.md").write_text(jupytext.writes(node, "md"))
    (tmp_path / "myst.md").write_text(jupytext.writes(node, "md:myst"))
    # MyST-NB's (Jupyter Book's) mark, whose kernelspec nbformat alone would refuse
    mystnb = "---\nfile_format: mystnb\nkernelspec:\n  name: python3\n---\n\n"
    mystnb += "```{code-cell}\nx = 1\n```\n"
    (tmp_path / "mystnb.md").write_text(mystnb)
    (tmp_path / "other.md").write_text(mystnb.replace("mystnb", "markdown"))
    found = [p.name for p in discover_notebooks([tmp_path])]
    assert found == ["myst.md", "mystnb.md", "plain.md"]
    read = load_notebook(tmp_path / "mystnb.md")
    assert [cell.source for cell in read.cells if cell.cell_type == "code"] == ["x = 1"]
    assert read.metadata.kernelspec == {"name": "python3", "display_name": "python3"}


def test_a_python_file_is_a_notebook_with_a_header_or_percent_cells_at_line_starts(
    tmp_path: Path,
) -> None:
    """jupytext's own rule: a ``# %%`` inside a string or indented in a function is no cell."""
    (tmp_path / "a_percent.py").write_text("# %%\nx = 1\n\n# %% [markdown]\n# hi\n")
    (tmp_path / "b_header.py").write_text(PERCENT_NOTEBOOK.replace("# %%", "#"))
    (tmp_path / "c_docstring.py").write_text('"""Use\n# %%\ncells."""\nx = 1\n')
    (tmp_path / "d_indented.py").write_text("def f():\n    # %%\n    return 1\n")
    (tmp_path / "e_string.py").write_text('MARK = "# %%"\n')
    found = [p.name for p in discover_notebooks([tmp_path])]
    assert found == ["a_percent.py", "b_header.py"]


def _pair(folder: Path, stem: str, *, header: bool = True) -> tuple[Path, Path]:
    """``stem.ipynb`` and ``stem.py`` paired by jupytext (``formats: ipynb,py:percent``); the
    ``.py`` without its header when ``header`` is false (``notebook_metadata_filter: -all``)."""
    import jupytext

    notebook = write_notebook(folder / f"{stem}.ipynb", ["x = 1"])
    node = load_notebook(notebook)
    node.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    if not header:
        node.metadata["jupytext"]["notebook_metadata_filter"] = "-all"
    jupytext.write(node, notebook)
    script = folder / f"{stem}.py"
    script.write_text(jupytext.writes(node, "py:percent"))
    return notebook, script


def test_discovery_takes_a_jupytext_pair_once_as_its_ipynb(tmp_path: Path) -> None:
    fit, fit_py = _pair(tmp_path, "fit")
    hidden, hidden_py = _pair(tmp_path, "hidden", header=False)
    assert "jupytext" in fit_py.read_text() and "jupytext" not in hidden_py.read_text()
    assert discover_notebooks([tmp_path]) == [fit, hidden]
    # named one by one, each is taken as given (and record/verify refuse the two: below)
    assert discover_notebooks([fit_py]) == [fit_py]


def test_a_pair_set_by_jupytext_toml_alone_is_taken_once(tmp_path: Path) -> None:
    """``jupytext --sync`` under a ``jupytext.toml`` writes no pairing into either file."""
    folder = tmp_path / "nbs"
    fit = write_notebook(folder / "fit.ipynb", ["x = 1"])
    (folder / "fit.py").write_text("# %%\nx = 1\n")
    assert discover_notebooks([folder]) == [fit, folder / "fit.py"]  # no pairing known
    (tmp_path / "jupytext.toml").write_text('formats = "ipynb,py:percent"\n')
    assert discover_notebooks([folder]) == [fit]


def test_pytest_collects_a_jupytext_pair_once_as_its_ipynb(tmp_path: Path) -> None:
    """``pytest --reprokit`` made an item of each half of a pair, both checked against one
    lock; the text half of a pair whose ``.ipynb`` is beside it is not an item."""
    from reprokit.pytest_items import is_lockable_notebook

    fit, fit_py = _pair(tmp_path, "fit")
    hidden, hidden_py = _pair(tmp_path, "hidden", header=False)
    alone = tmp_path / "alone.py"
    alone.write_text(PERCENT_NOTEBOOK)
    assert [is_lockable_notebook(p) for p in (fit, fit_py, hidden, hidden_py, alone)] == [
        True, False, True, False, True
    ]  # fmt: skip


def test_two_notebooks_with_one_lock_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """``fit.ipynb`` beside an unpaired percent ``fit.py``, or a pair named both: one lock
    ``fit.repro.json`` would be written twice (record) or verify both (verify)."""
    from click.testing import CliRunner

    from reprokit.cli import main

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    folder = tmp_path / "nbs"
    write_notebook(folder / "fit.ipynb", ["x = 1"])
    (folder / "fit.py").write_text(PERCENT_NOTEBOOK)
    _pair(folder, "pair")
    (folder / "pair.repro.json").write_text("{}")
    for args in (
        ["record", str(folder)],
        ["record", str(folder / "pair.ipynb"), str(folder / "pair.py")],
        ["verify", str(folder / "pair.ipynb"), str(folder / "pair.py")],
    ):
        out = CliRunner().invoke(main, args)
        stem = "fit" if args[1] == str(folder) else "pair"
        assert out.exit_code == 2, out.output
        assert out.output == (
            f"reprokit: error: {folder / stem}.ipynb and {folder / stem}.py would both use the "
            f"lock {folder / stem}.repro.json: give only one of them (of a jupytext pair, the "
            ".ipynb)\n"
        )
    assert not (tmp_path / ".reprokit").exists()  # no run folder: nothing started


def _without_cell_ids(path: Path) -> Path:
    """An nbformat 4.5 notebook whose cells have no ``id`` (written by an older tool)."""
    write_notebook(path, ["print(1)"])
    node = json.loads(path.read_text())
    for cell in node["cells"]:
        del cell["id"]
    path.write_text(json.dumps(node))
    return path


def test_a_notebook_without_cell_ids_is_read_without_warnings_or_rewriting(
    tmp_path: Path,
) -> None:
    """nbformat prints ``MissingIDFieldWarning`` and a source line for every such read: the ids
    are added in memory, the file stays as it was, and stderr stays clean."""
    import warnings

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    notebook = _without_cell_ids(tmp_path / "old.ipynb")
    before = notebook.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node = load_notebook(notebook)
    assert [str(w.message) for w in caught] == []
    assert all(cell.get("id") for cell in node.cells)
    checked = reprokit_cli("check", "--require-lock", notebook.name, cwd=tmp_path)
    assert checked.stderr == (
        "no lock  old.ipynb (error: no old.repro.json)\n"
        "reprokit: 1 of 1 notebook(s) need their lock re-recorded (reprokit record NOTEBOOK)\n"
    )
    ran = reprokit_cli("run", "--no-record", notebook.name, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "Warning" not in ran.stderr and "_validate(" not in ran.stderr
    assert notebook.read_bytes() == before


def test_verify_repeats_the_hash_seed_its_lock_recorded(tmp_path: Path) -> None:
    """A lock recorded while the runner gave every notebook without ``-p seed`` the hash seed 0
    must not turn into a false alarm now that it takes the parameters cell's ``seed``: the
    verification repeats what the lock's run had, unless ``-p seed`` is given."""
    from dataclasses import replace as replaced

    from lock_helpers import make_project, record

    from reprokit.api.verify import recorded_hash_seed
    from reprokit.capturing.model import SeedRecord
    from reprokit.recording.lock import Lock
    from reprokit.runner.plan import plan_runs

    lock = record(make_project(tmp_path), [])
    assert lock.snapshot is not None

    def with_seed(value: str | None) -> Lock:
        seeds = SeedRecord(3, False, ("random",), pythonhashseed=value)
        return replaced(lock, snapshot=replaced(lock.snapshot, seeds=seeds))

    assert recorded_hash_seed(with_seed("0")) == "0"
    assert recorded_hash_seed(with_seed("17")) == "17"
    for odd in (None, "random", "-1", str(2**32), "x"):
        assert recorded_hash_seed(with_seed(odd)) is None, odd
    nb = write_notebook(tmp_path / "a.ipynb", ["1"], parameters="seed = 3")
    [plan] = plan_runs([nb], tmp_path / "out", resolve_device("cpu"), {}, hash_seed="0")
    assert plan.env["PYTHONHASHSEED"] == "0"
