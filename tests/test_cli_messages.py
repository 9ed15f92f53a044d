"""Messages a stranger meets on the command line: report targets checked before anything runs,
a lock with no results, a diff that compared nothing, redacted parameters, a lock given as the
notebook, a lock that is not a regular file, drift counted by kind.

Most tests build locks with ``build_lock`` from unexecuted notebooks (no kernel) and stop before
execution; one integration test executes a tiny notebook twice (record, then a failing verify).
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from lock_helpers import Project, executed, make_project, record, scalar_results
from run_helpers import reprokit_cli, write_notebook

from reprokit.api.verify import notebooks_with_locks
from reprokit.cli import main
from reprokit.compare.verify import check_data, verify_results
from reprokit.exceptions import UsageError
from reprokit.options import ComparisonOptions
from reprokit.recording.lock import build_lock, write_lock
from reprokit.report.table import verdict_line
from reprokit.report.writers import prepare_report_target
from reprokit.results import read_notebook


def _cli(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, list(args))
    return out.exit_code, out.output


@pytest.fixture
def drifted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose lock's data has since changed: verify stops before any kernel starts."""
    project = make_project(tmp_path)
    record(project, scalar_results())
    (project.data / "a.csv").write_text("x,y\n1,3\n")
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))
    return project


# ----------------------------------------------------------------------------- report targets


def test_a_missing_report_folder_is_made(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "deep" / "j.xml"
    prepare_report_target(target, "--junit")
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []  # no probe left


def test_an_impossible_report_target_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--report /proc/x\.html: cannot be written"):
        prepare_report_target("/proc/x.html", "--report")  # even root cannot write /proc
    with pytest.raises(UsageError, match="is a folder, not a file"):
        prepare_report_target(tmp_path, "--json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_report_folder_is_a_usage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot be written"):
        prepare_report_target(locked / "sub" / "r.html", "--report")


def test_verify_refuses_an_impossible_report_before_anything_runs(drifted: Project) -> None:
    nb = str(drifted.notebook)
    code, out = _cli("verify", nb, "--junit", "reports/j.xml", "--json", str(drifted.root))
    assert code == 2
    assert out.count("\n") == 1 and "--json" in out and "is a folder" in out
    assert "input data changed" not in out  # stopped before the data check and any kernel


def test_reports_list_a_notebook_stopped_by_changed_data_as_failed(drifted: Project) -> None:
    """Every report file names a notebook nothing was compared for, as a failure (the JSON
    and HTML once said REPRODUCED with no verdict, the JUnit had no test)."""
    import json
    import xml.etree.ElementTree as ET

    nb = str(drifted.notebook)
    code, _ = _cli("verify", nb, "--json", "v.json", "--junit", "j.xml", "--report", "r.html")
    assert code == 1
    document = json.loads((drifted.root / "v.json").read_text())
    assert document["reproduced"] is False
    (verdict,) = document["verdicts"]
    assert verdict["not_compared"] == "data_changed" and verdict["reproduced"] is False
    suites = ET.parse(drifted.root / "j.xml").getroot()
    assert (suites.get("tests"), suites.get("failures")) == ("1", "1")
    assert suites.find("./testsuite/testcase/failure") is not None
    html = (drifted.root / "r.html").read_text()
    assert "NOT REPRODUCED: 0 of 1 notebook(s) reproduced" in html and "input data changed" in html


def test_a_failed_execution_is_an_error_in_the_reports() -> None:
    from reprokit.api.verify import Verification, VerifyOutcome
    from reprokit.compare.verify import DataCheck
    from reprokit.report.json_report import verdicts_json
    from reprokit.report.junit import junit_xml
    from reprokit.runner.plan import RunOutcome

    run = RunOutcome("nb.ipynb", "failed", "out/nb.ipynb", "out", 1.0, "cpu", message="boom")
    outcome = VerifyOutcome("nb.ipynb", "nb.repro.json", run, None, DataCheck(()))
    (verdict,) = Verification((outcome,)).reported
    assert verdict.not_compared == "execution_failed" and not verdict.reproduced
    assert '"reproduced": false' in verdicts_json([verdict])
    assert 'errors="1"' in junit_xml([verdict]) and "boom" in junit_xml([verdict])


def test_a_failed_execution_keeps_the_cells_whose_source_changed_in_the_reports() -> None:
    """The terminal warned "source changed since the lock was written, cells 2" and the run
    failed, but the JSON said ``source_changes: []`` and the HTML and JUnit nothing."""
    import json

    from reprokit.api.verify import Verification, VerifyOutcome
    from reprokit.compare.verify import DataCheck
    from reprokit.report.html import render_html
    from reprokit.report.json_report import verdicts_json
    from reprokit.report.junit import junit_xml
    from reprokit.runner.plan import RunOutcome

    run = RunOutcome("nb.ipynb", "failed", "out/nb.ipynb", "out", 1.0, "cpu", message="boom")
    outcome = VerifyOutcome("nb.ipynb", "nb.repro.json", run, None, DataCheck(()), None, (1,))
    stopped = replace(outcome, run=None)  # data changed: nothing ran
    for verdict in Verification((outcome, stopped)).reported:
        assert verdict.source_changes == (1,)
        (written,) = json.loads(verdicts_json(verdict))["verdicts"]
        assert written["source_changes"] == [1]
        assert "source changed since the lock</th><td>cells 2" in render_html(verdict)
        assert '<property name="source_changed_cells" value="2"' in junit_xml(verdict)
    error = ET.fromstring(junit_xml(Verification((outcome,)).reported)).find(".//error")
    assert error is not None and error.get("message") == "failed: boom"
    assert error.text == "failed: boom\nsource changed since the lock was written: cells 2"


# ----------------------------------------------------------------------------- verify


def test_a_verdict_without_results_says_nothing_was_compared(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = build_lock(
        project.notebook, executed(project, [], snapshot=False), project_root=project.root
    )
    current = read_notebook(executed(project, [], snapshot=False))
    verdict = verify_results(lock, current, comparison=ComparisonOptions(), lock_dir=tmp_path)
    line = verdict_line(verdict)
    assert line.startswith("REPRODUCED ")
    assert line.endswith(
        "no results declared, nothing compared (use --outputs to compare cell outputs)"
    )


def test_a_redacted_parameter_is_named_with_its_fix(drifted: Project) -> None:
    lock = build_lock(
        drifted.notebook,
        executed(drifted, scalar_results()),
        project_root=drifted.root,
        parameters={"password": "<redacted>", "epochs": 2},
    )
    write_lock(lock, drifted.lock_path)
    (drifted.data / "a.csv").write_text("x,y\n1,4\n")  # stops before execution
    code, out = _cli("verify", str(drifted.notebook))
    assert code == 1
    (warning,) = [line for line in out.splitlines() if "warning" in line]
    assert "'password'" in warning and "--secret-param password or -p password=..." in warning
    code, out = _cli("verify", str(drifted.notebook), "-p", "password=x")
    assert "warning" not in out


def test_a_lock_given_as_the_notebook_names_the_notebook(drifted: Project) -> None:
    code, out = _cli("verify", str(drifted.lock_path))
    assert code == 2
    assert out == (
        f"reprokit: error: {drifted.lock_path} is a lock, not a notebook: give its notebook: "
        f"reprokit verify {drifted.notebook}\n"
    )


def test_a_lock_that_is_not_a_regular_file(drifted: Project) -> None:
    drifted.lock_path.unlink()
    os.mkfifo(drifted.lock_path)
    code, out = _cli("verify", str(drifted.notebook))
    assert code == 2 and "is not a regular file" in out and "no lock" not in out


@pytest.mark.parametrize("kind", ["dangling link", "FIFO", "folder"])
def test_a_lock_that_is_not_a_regular_file_under_a_folder_is_refused(
    drifted: Project, kind: str
) -> None:
    """``verify .`` took such a lock for "no lock": the notebook was left out, exit 0."""
    (drifted.notebook.parent / "clean.ipynb").write_bytes(drifted.notebook.read_bytes())
    drifted.lock_path.unlink()
    if kind == "dangling link":
        drifted.lock_path.symlink_to("nothere.json")
    elif kind == "FIFO":
        os.mkfifo(drifted.lock_path)
    else:
        drifted.lock_path.mkdir()
    for command in ("verify", "check"):
        code, out = _cli(command, ".", *(["--no-record"] if command == "verify" else []))
        assert code == 2 and drifted.lock_path.name in out, (command, out)
    assert notebooks_with_locks([drifted.root]) == [drifted.notebook]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("run", "fifo.ipynb"),
        ("record", "fifo.ipynb"),
        ("verify", "fifo.ipynb"),
        ("check", "fifo.ipynb"),
        ("check", "fifo.repro.json"),
    ],
)
def test_a_notebook_that_is_not_a_regular_file_is_not_called_missing(
    tmp_path: Path, command: str, name: str
) -> None:
    """A FIFO given by name was reported as "no such notebook or folder": it is there."""
    path = tmp_path / name
    os.mkfifo(path)
    assert _cli(command, str(path)) == (
        2,
        f"reprokit: error: {path}: not a regular file (a FIFO); refused\n",
    )
    (tmp_path / "away.ipynb").symlink_to(tmp_path / "gone.ipynb")
    for given, why in (("away.ipynb", "a link leading to no file"), ("gone.ipynb", "no such")):
        code, out = _cli(command, str(tmp_path / given))
        assert code == 2 and out.startswith(f"reprokit: error: {tmp_path / given}: {why}"), out


def test_a_notebook_given_as_the_lock_is_called_a_notebook(drifted: Project) -> None:
    """``verify --lock fig.ipynb`` said "schema_version must be an integer, got None"."""
    notebook, lock = drifted.notebook, drifted.lock_path
    code, out = _cli("verify", "--lock", str(notebook), str(notebook))
    assert (code, out) == (
        2,
        f"reprokit: error: {notebook}: not a lock but a notebook: its lock is {lock}\n",
    )
    other = notebook.with_name("other.json")
    other.write_text('{"data": {}}')
    code, out = _cli("verify", "--lock", str(other), str(notebook))
    assert (code, out) == (
        2,
        f"reprokit: error: {other}: not a lock: JSON without the lock's fields "
        "(schema_version, notebook, results)\n",
    )


def test_drift_is_counted_by_kind_of_change(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    (project.data / "a.csv").write_text("x,y\n1,3\n")
    (project.data / "c.csv").write_text("new\n")
    (entry,) = check_data(lock, project.root, cache=None).drifted
    assert entry.reason == "1 changed, 1 added"


# ----------------------------------------------------------------------------- diff


def test_a_diff_that_compared_nothing_says_so_and_exits_2(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = tmp_path / "run.ipynb"  # results, but no snapshot and no data
    nbformat.write(executed(project, scalar_results(), snapshot=False), run)
    code, out = _cli("diff", str(run), "current")
    assert code == 2
    assert "SAME" not in out
    assert out.splitlines()[-1].startswith("NOTHING COMPARED: ")
    assert "no environment snapshot in A" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("name", ["side.ipynb", "side.repro.json"])
def test_a_diff_side_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path, name: str) -> None:
    """``diff`` read a FIFO given as a side as a notebook, and waited for a writer forever."""
    os.mkfifo(tmp_path / name)
    done = reprokit_cli("diff", name, "current", cwd=tmp_path, timeout=60)
    # a notebook is refused by discovery, which names the kind; a lock by the lock reader
    kind = "a FIFO" if name.endswith(".ipynb") else "a FIFO, device or socket"
    assert (done.returncode, done.stderr) == (
        2,
        f"reprokit: error: {name}: not a regular file ({kind}); refused\n",
    )


def test_source_changes_are_named_before_anything_runs(drifted: Project) -> None:
    node = nbformat.read(drifted.notebook, as_version=4)
    node.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('new cell')"))
    nbformat.write(node, drifted.notebook)
    code, out = _cli("verify", str(drifted.notebook))
    # printed whether the run then fails, stops on drifted data (here) or completes
    assert code == 1 and "source changed since the lock was written, cells 5" in out


def test_record_from_run_names_the_real_form() -> None:
    from reprokit.api.record import _run_notebook

    with pytest.raises(UsageError) as caught:
        _run_notebook("abc123", None, None)
    assert "--notebook" not in str(caught.value)
    assert str(caught.value).endswith("reprokit record --from-run abc123 NOTEBOOK")


@pytest.mark.parametrize(
    "args", [["diff", "."], ["diff", "./"], ["record", "--from-run", "abc", "."]]
)
def test_the_current_folder_is_refused_where_one_notebook_is_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """``diff .`` printed a traceback (``'.' has an empty name``); ``record --from-run ID .``
    made an MLflow store in the folder above the project and looked the run up there."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(project)
    code, out = _cli(*args)
    assert code == 2 and out.count("\n") == 1 and "a folder" in out, out
    assert not (tmp_path / "mlflow.db").exists()


# ----------------------------------------------------------------------------- integration


def test_a_cell_edited_so_it_raises_is_named_as_changed_in_the_json(tmp_path: Path) -> None:
    """One real execution (the lock built without a kernel): the edited cell raises, verify
    exits 3, and the JSON report names the cell whose source changed."""
    import json

    project = make_project(tmp_path)
    found = executed(project, scalar_results())
    write_lock(build_lock(project.notebook, found, project_root=project.root), project.lock_path)
    node = nbformat.read(project.notebook, as_version=4)
    node.cells[1].source = "raise RuntimeError('edited')"
    nbformat.write(node, project.notebook)
    done = reprokit_cli(
        "verify", str(project.notebook), "--no-record", "--json", "v.json", "--device", "cpu",
        cwd=project.root,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "source changed since the lock was written, cells 2" in done.stdout + done.stderr
    (verdict,) = json.loads((project.root / "v.json").read_text())["verdicts"]
    assert verdict["not_compared"] == "execution_failed" and verdict["source_changes"] == [1]


@pytest.mark.slow
def test_no_results_renamed_and_a_missing_report_folder(project: Path) -> None:
    """Two real executions: ``record`` warns that nothing will be compared; ``verify`` of the
    notebook renamed names the file run, says nothing was compared, exits 0, and makes the
    report's folder."""
    write_notebook(project / "rng.ipynb", ["x = 1", "print(x)"])
    done = reprokit_cli("record", "rng.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.startswith("reprokit: warning: rng.ipynb declares no results ")
    (project / "rng.ipynb").rename(project / "random_gen.ipynb")
    done = reprokit_cli(
        "verify", "random_gen.ipynb", "--lock", "rng.repro.json", "--renamed",
        "--junit", "reports/j.xml", "--device", "cpu", cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "REPRODUCED random_gen.ipynb: no results declared, nothing compared" in done.stdout
    assert "rng.ipynb" not in done.stdout.replace("random_gen.ipynb", "")
    assert (project / "reports" / "j.xml").is_file()


def test_a_parameter_a_lock_cannot_keep_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was refused after the notebook had run and its MLflow run was written."""
    project = make_project(tmp_path)
    monkeypatch.chdir(project.root)
    for given in ("lr=NaN", "lr=1e400"):
        code, out = _cli("record", str(project.notebook), "-p", given)
        assert code == 2 and out.count("\n") == 1, out
        assert out.startswith("reprokit: error: -p lr=") and "JSON" in out
    assert not (project.root / ".reprokit").exists() and not (project.root / "mlflow.db").exists()


def test_a_tarball_without_a_project_marker_says_where_its_root_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacked without .git or pyproject.toml, the notebook's folder is the root and the
    lock's data is 'missing': the warning says which folder to mark, before any kernel."""
    import shutil

    project = make_project(tmp_path)
    record(project, scalar_results())
    unpacked = tmp_path / "zenodo"
    for part in ("notebooks", "data"):
        shutil.copytree(project.root / part, unpacked / part)
    monkeypatch.chdir(unpacked)
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))
    code, out = _cli("verify", "notebooks/fig3.ipynb")
    assert code == 1  # the data check, before any kernel
    (warning,) = [line for line in out.splitlines() if "the project root here is" in line]
    assert "recorded as notebooks/fig3.ipynb of a project rooted at" in warning
    assert f"touch {unpacked}/pyproject.toml" in warning
    outer = tmp_path / "outer"  # unpacked inside another project: its root is not the lock's
    (outer / "paper").mkdir(parents=True)
    (outer / "pyproject.toml").write_text("[project]\nname = 'o'\n")
    shutil.copytree(unpacked, outer / "paper", dirs_exist_ok=True)
    monkeypatch.chdir(outer / "paper")
    code, out = _cli("verify", "notebooks/fig3.ipynb")
    assert code == 1 and f"touch {outer / 'paper'}/pyproject.toml" in out


def test_an_error_or_warning_quoting_a_lock_stays_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock's parameter named ``x\\n::error file=README.md,...::`` was printed raw in the error:
    GitHub Actions read its second line as a workflow command (an outside tester's report).
    Errors and warnings show control characters escaped (``\\n``, ``\\x1b``): one per line."""
    import json
    import warnings

    from reprokit._warn import one_line

    project = make_project(tmp_path)
    record(project, scalar_results())
    monkeypatch.chdir(project.root)
    lock = json.loads(project.lock_path.read_text())
    evil = "x\n::error file=README.md,title=pwned::injected by lock\n::add-mask::\x1b[2J"
    lock["parameters"]["values"][evil] = 1
    project.lock_path.write_text(json.dumps(lock))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out = _cli("verify", str(project.notebook))
    assert code == 2 and out.count("\n") == 1, out
    assert out.startswith("reprokit: error: ") and "\x1b" not in out
    assert r"x\n::error file=README.md,title=pwned::injected by lock\n::add-mask::\x1b[2J" in out
    assert one_line(f"named {evil}") == (
        r"reprokit: warning: named x ::error file=README.md,title=pwned::injected by lock "
        r"::add-mask::\x1b[2J"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["record", ""],
        ["run", ""],
        ["verify", ""],
        ["check", ""],
        ["calibrate", ""],
        ["bundle", "", "-o", "out.zip"],
        ["diff", ""],
        ["diff", "a.repro.json", ""],
        ["hash", ""],
        ["gc", ""],
        ["status", ""],
        ["sync", ""],
        ["env", "export", ""],
    ],
)
def test_an_empty_path_is_refused_by_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """``reprokit record "$NB"`` with NB unset re-recorded every lock under the current folder
    (``Path("")`` is ``.``); ``diff ""`` printed a traceback."""
    monkeypatch.chdir(tmp_path)
    assert _cli(*args) == (
        2,
        "reprokit: error: '': no such file or directory (an empty path was given)\n",
    )


def test_an_empty_path_option_is_refused_naming_it(tmp_path: Path) -> None:
    code, out = _cli("verify", str(tmp_path), "--report", "")
    assert (code, out) == (2, "reprokit: error: --report '': an empty path was given\n")


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["run", "nb.ipynb", "--kernel", ""], "--kernel", ""),
        (["verify", "nb.ipynb", "--kernel", "  "], "--kernel", "  "),
        (["record", "nb.ipynb", "--kernel", ""], "--kernel", ""),
        (["bundle", "nb.ipynb", "-o", "b.zip", "--author", "Ada", "--author", ""], "--author", ""),
        (["bundle", "nb.ipynb", "-o", "b.zip", "--title", " "], "--title", " "),
        (["bundle", "nb.ipynb", "-o", "b.zip", "--license", ""], "--license", ""),
    ],
)
def test_an_empty_name_is_refused_naming_its_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], flag: str, value: str
) -> None:
    """``--kernel "$KERNEL"`` with KERNEL unset ran the notebook's own kernel without a word;
    ``--author ""`` wrote an empty author into CITATION.cff."""
    monkeypatch.chdir(tmp_path)
    assert _cli(*args) == (2, f"reprokit: error: {flag} {value!r}: an empty name was given\n")


def test_a_notebook_moved_with_its_lock_is_named_where_it_is_now(project: Path) -> None:
    """``mv nb.ipynb nb.repro.json analysis/``: verify said REPRODUCED nb.ipynb (a file that
    is not there), in the JUnit too, and nothing said the lock was for another path."""
    (project / "data").mkdir()
    (project / "data" / "v.csv").write_text("1\n")
    start = "%load_ext reprokit\n%repro start --seed 0 --data data/"
    write_notebook(project / "nb.ipynb", [start, "%repro result x 1.0"])
    done = reprokit_cli("record", "nb.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 0, done.stderr
    (project / "analysis").mkdir()
    for name in ("nb.ipynb", "nb.repro.json"):
        (project / name).rename(project / "analysis" / name)
    shutil.copytree(project / "data", project / "analysis" / "data")  # what it reads now
    done = reprokit_cli(
        "verify", "analysis/nb.ipynb", "--no-record", "--junit", "j.xml", "--device", "cpu",
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.startswith(
        "reprokit: warning: analysis/nb.ipynb: its lock nb.repro.json was recorded for "
        "nb.ipynb, not analysis/nb.ipynb (moved without re-recording?): its data were checked "
    ), warning
    assert "REPRODUCED analysis/nb.ipynb" in done.stdout
    assert 'name="analysis/nb.ipynb' in (project / "j.xml").read_text()
