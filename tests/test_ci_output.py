"""CI-native output: GitHub's step summary and ``::error`` annotations, GitLab's JUnit.

Unit tests build real verification outcomes (real locks, verdicts, run outcomes) and check the
text a CI system reads, escaping included (a notebook path with commas, colons, percent signs
and newlines); one slow test runs ``reprokit verify`` with GitHub's and GitLab's variables set.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from lock_helpers import executed, make_project, record
from run_helpers import reprokit_cli, write_notebook

from reprokit.api.verify import VerifyOutcome
from reprokit.compare.verify import check_data, verify_results
from reprokit.report.ci import NotebookCase, ci_base, detect_ci, notebook_case
from reprokit.report.github import (
    error_annotations,
    escape_data,
    escape_property,
    step_summary,
)
from reprokit.report.junit import junit_notebooks_xml
from reprokit.results import encode_result, read_notebook
from reprokit.runner.failure import CellFailure
from reprokit.runner.plan import RunOutcome

SECRET = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


def _run(notebook: str, status: str = "ok", failure: CellFailure | None = None) -> RunOutcome:
    return RunOutcome(
        notebook,
        status,
        f"/runs/{Path(notebook).name}",
        "/runs",
        2.5,
        "cpu",  # type: ignore[arg-type]
        failure=failure,
    )


def _outcomes(tmp_path: Path, name: str = "fig3.ipynb") -> dict[str, VerifyOutcome]:
    """reproduced, not reproduced (with an environment change), data changed, failed."""
    project = make_project(tmp_path)
    notebook = project.notebook.with_name(name)
    lock = record(project, [encode_result("acc", 0.5), encode_result("n", 3)])
    assert lock.snapshot is not None
    data = check_data(lock, project.root, cache=None)
    good = verify_results(
        lock,
        read_notebook(executed(project, [encode_result("acc", 0.5), encode_result("n", 3)])),
        data=data,
    )
    older = replace(lock.snapshot, packages={**lock.snapshot.packages, "numpy": "0.0.1"})
    bad = verify_results(
        replace(lock, snapshot=older),
        read_notebook(executed(project, [encode_result("acc", 0.75), encode_result("n", 3)])),
        data=data,
    )
    (project.data / "a.csv").write_text("changed\n")
    drifted = check_data(lock, project.root, cache=None)
    failure = CellFailure(2, 3, "ValueError", f"bad token {SECRET}", ("Traceback...",), "x = 1")
    if notebook != project.notebook:
        shutil.copy(project.notebook, notebook)
    path, lock_path = str(notebook), str(project.lock_path)
    cached = replace(good, cached_at="2026-01-02T03:04:05Z")
    crashed = _run(path, "failed", failure)
    return {
        "reproduced": VerifyOutcome(path, lock_path, _run(path), good, data),
        "cached": VerifyOutcome(path, lock_path, None, cached, data),
        "not_reproduced": VerifyOutcome(path, lock_path, _run(path), bad, data),
        "data_changed": VerifyOutcome(path, lock_path, None, None, drifted),
        "execution_failed": VerifyOutcome(path, lock_path, crashed, None, data),
    }


@pytest.fixture
def cases(tmp_path: Path) -> dict[str, NotebookCase]:
    outcomes = _outcomes(tmp_path)
    base = tmp_path / "project"
    return {name: notebook_case(outcome, base) for name, outcome in outcomes.items()}


def test_detection_and_the_base_folder(tmp_path: Path) -> None:
    assert detect_ci({"GITHUB_ACTIONS": "true"}) == "github"
    assert detect_ci({"GITLAB_CI": "true", "CI": "true"}) == "gitlab"
    assert (
        detect_ci({"CI": "true"}) == detect_ci({}) == detect_ci({"GITHUB_ACTIONS": "0"}) == "none"
    )
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir()
    assert ci_base({}, tmp_path / "repo" / "sub") == (tmp_path / "repo").resolve()
    assert ci_base({"GITHUB_WORKSPACE": str(tmp_path)}, tmp_path / "repo") == tmp_path.resolve()
    assert ci_base({"CI_PROJECT_DIR": str(tmp_path)}, tmp_path / "repo") == tmp_path.resolve()


def test_each_outcome_in_words(cases: dict[str, NotebookCase]) -> None:
    assert {name: case.file for name, case in cases.items()} == dict.fromkeys(
        cases, "notebooks/fig3.ipynb"
    )
    assert cases["reproduced"].verdict == "reproduced" and cases["reproduced"].reproduced == 2
    assert cases["cached"].verdict == "reproduced (cached, verified at 2026-01-02T03:04:05Z)"
    bad = cases["not_reproduced"]
    assert (bad.reproduced, bad.failed, bad.duration_s) == (1, 1, 2.5)
    assert "acc" in bad.title and "numpy: 0.0.1 -> " in bad.detail
    assert "a.csv" in cases["data_changed"].detail and "data changed" in cases["data_changed"].title
    failed = cases["execution_failed"]
    assert failed.verdict == "execution failed (FAILED)" and "cell 3: ValueError" in failed.title
    assert failed.line is not None  # the line where cell 3 starts in the .ipynb
    assert SECRET not in failed.detail + failed.title


def test_github_escaping_follows_the_toolkit() -> None:
    assert escape_data("a%b\r\nc:d,e") == "a%25b%0D%0Ac:d,e"
    assert escape_property("a%b\r\nc:d,e") == "a%25b%0D%0Ac%3Ad%2Ce"


def _unescape(text: str) -> str:
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, raw)
    return text


def _parse_command(command: str) -> tuple[dict[str, str], str]:
    assert command.startswith("::error ") and "\n" not in command and "\r" not in command
    head, _, message = command.removeprefix("::error ").partition("::")
    properties = dict(item.split("=", 1) for item in head.split(","))
    return {k: _unescape(v) for k, v in properties.items()}, _unescape(message)


def test_one_annotation_per_failing_notebook(cases: dict[str, NotebookCase]) -> None:
    commands = error_annotations(list(cases.values()))
    assert len(commands) == 3  # not reproduced, data changed, execution failed
    parsed = [_parse_command(c) for c in commands]
    assert {p["file"] for p, _ in parsed} == {"notebooks/fig3.ipynb"}
    failed = next(p for p, _ in parsed if "execution failed" in p["title"])
    assert failed["line"] == str(cases["execution_failed"].line)
    (bad_message,) = [m for p, m in parsed if "not reproduced" in p["title"]]
    assert "acc: differs" in bad_message and "numpy: 0.0.1" in bad_message
    assert all(SECRET not in c for c in commands)


@pytest.mark.parametrize("name", ["a,b:c%d.ipynb", "line\nbreak::x.ipynb", "pipe | `tick`.ipynb"])
def test_a_hostile_notebook_name_survives_the_annotation_and_the_summary(
    tmp_path: Path, name: str
) -> None:
    outcome = _outcomes(tmp_path, name)["not_reproduced"]
    case = notebook_case(outcome, tmp_path / "project")
    (command,) = error_annotations([case])
    properties, message = _parse_command(command)
    assert properties["file"] == f"notebooks/{name}"
    assert set(properties) == {"file", "title"}  # no property injected through the name
    assert message.startswith("NOT REPRODUCED")
    summary = step_summary([case])
    (row,) = [line for line in summary.splitlines() if line.startswith("| ") and "❌" in line]
    assert row.count(" | ") == 4  # the name's pipe is escaped, the row keeps its five cells


def test_the_step_summary_table(cases: dict[str, NotebookCase]) -> None:
    summary = step_summary(list(cases.values()))
    lines = summary.splitlines()
    assert lines[0].startswith("### ❌ reprokit verify: 2 of 5 notebook(s) reproduced")
    assert "| notebook | verdict | results reproduced | results failed | duration |" in lines
    assert "| notebooks/fig3.ipynb | ✅ reproduced | 2 | 0 | 2.5 s |" in lines
    assert any(
        "cached, verified at 2026-01-02T03:04:05Z" in line and "| cached |" in line
        for line in lines
    )
    assert summary.count("<details>") == 3 and "numpy: 0.0.1" in summary
    assert SECRET not in summary


def test_gitlab_junit_has_one_testcase_per_notebook_with_the_fields_gitlab_reads(
    cases: dict[str, NotebookCase],
) -> None:
    listed = list(cases.values())
    root = ET.fromstring(junit_notebooks_xml(listed, [[("worker", "w1")]] * len(listed)))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "2", "1")
    assert suite.find("system-err") is None and suite.find("system-out") is None
    testcases = suite.findall("testcase")
    assert len(testcases) == 5
    for element in testcases:
        assert element.get("classname") == "reprokit.notebooks"
        assert element.get("name") == "fig3.ipynb"
        assert element.get("file") == "notebooks/fig3.ipynb"
        assert float(element.get("time", "nan")) >= 0
        properties = {p.get("name"): p.get("value") for p in element.iter("property")}
        assert properties["worker"] == "w1" and properties["status"]
        if properties["status"] not in ("data_changed", "execution_failed"):
            assert properties["current_device"] == "cpu"
    by_status = {
        next(p.get("value") for p in e.iter("property") if p.get("name") == "status"): e
        for e in testcases
        if e.find("properties/property[@name='cached_at']") is None
    }
    assert by_status["reproduced"].get("time") == "2.500"
    bad = by_status["not_reproduced"].find("failure")
    assert bad is not None and "numpy: 0.0.1" in (bad.text or "")
    drift = by_status["data_changed"]
    assert drift.find("failure") is not None and "a.csv" in (drift.findtext("system-out") or "")
    error = by_status["execution_failed"].find("error")
    assert error is not None and "ValueError" in (error.text or "")
    assert SECRET not in ET.tostring(root, encoding="unicode")


def _notebook(root: Path, name: str, value: float) -> Path:
    cells = ["import reprokit", f"reprokit.result('x', {value})"]
    return write_notebook(root / name, cells)


@pytest.mark.slow
def test_verify_under_github_and_gitlab_with_the_skip_cache(tmp_path: Path) -> None:
    """Two notebooks recorded; one then changed. Under GitHub: an annotation for the changed one
    and the summary; under GitLab: the unchanged one cached (no kernel), the JUnit per notebook;
    ``--force`` executes again."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'ci'\n")
    _notebook(root, "good.ipynb", 0.5)
    bad = _notebook(root, "b,a:d.ipynb", 1.5)
    assert reprokit_cli("record", ".", "--device", "cpu", "--jobs", "2", cwd=root).returncode == 0
    _notebook(root, bad.name, 9.5)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    done = reprokit_cli("verify", ".", "--device", "cpu", "--jobs", "2", cwd=root, env=github)
    assert done.returncode == 1, done.stdout + done.stderr
    (command,) = [line for line in done.stdout.splitlines() if line.startswith("::error")]
    properties, message = _parse_command(command)
    assert properties["file"] == "b,a:d.ipynb" and "x: differs" in message
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| good.ipynb | ✅ reproduced | 1 | 0 |" in text
    gitlab = {"GITLAB_CI": "true"}
    done = reprokit_cli(
        "verify",
        ".",
        "--device",
        "cpu",
        "--junit",
        "j.xml",
        "--json",
        "v.json",
        cwd=root,
        env=gitlab,
    )
    assert done.returncode == 1 and "running  good.ipynb" not in done.stdout + done.stderr
    assert "::error" not in done.stdout  # GitLab: no GitHub commands
    cases = {c.get("file"): c for c in ET.parse(root / "j.xml").getroot().iter("testcase")}
    assert set(cases) == {"good.ipynb", "b,a:d.ipynb"}
    assert cases["good.ipynb"].find("properties/property[@name='cached_at']") is not None
    assert float(cases["b,a:d.ipynb"].get("time", "0")) > 0
    assert cases["b,a:d.ipynb"].find("failure") is not None
    done = reprokit_cli(
        "verify", "good.ipynb", "--device", "cpu", "--force", "--json", "f.json", cwd=root
    )
    assert done.returncode == 0 and "running  good.ipynb" in done.stdout + done.stderr
    (verdict,) = json.loads((root / "f.json").read_text())["verdicts"]
    assert verdict["cached_at"] is None and verdict["reproduced"]
    cached = json.loads((root / "v.json").read_text())["verdicts"]
    assert sorted(bool(v["cached_at"]) for v in cached) == [False, True]


def test_a_long_explanation_is_cut_in_the_annotation_not_in_the_summary(
    cases: dict[str, NotebookCase],
) -> None:
    long = replace(cases["not_reproduced"], detail="environment changes:\n" + "x" * 20_000)
    (command,) = error_annotations([long])
    assert len(command) < 5000 and command.endswith("in the step summary)")
    assert "x" * 20_000 in step_summary([long])
