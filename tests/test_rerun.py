"""What a failed verdict tells to do next: the command that re-runs the verification
(``rerun_command``: every option of ``verify`` that can change the verdict, read back by the
real ``verify`` command line), and the parameters given now that the lock's run did not have
(``diff_parameters``: a "what changed" item of the verdict, secret ones by name only)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from reprokit.api.verify import Verification, VerifyOutcome
from reprokit.capturing.redact import REDACTED
from reprokit.cli._verify import verify_command
from reprokit.compare.envdiff import EnvChange, EnvDiff
from reprokit.compare.parameters import diff_parameters, with_parameter_changes
from reprokit.compare.verify import DataCheck, Verdict
from reprokit.notebook.files import parameter_defaults
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.report.describe import describe_verdict
from reprokit.report.html import render_html
from reprokit.report.json_report import verdicts_json
from reprokit.report.rerun import rerun_command
from reprokit.report.table import env_lines
from reprokit.runner.params import parse_assignments

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def _read_back(command: str) -> dict[str, Any]:
    """The command's words as ``reprokit verify`` itself parses them (click's values)."""
    words = shlex.split(command)
    assert words[:2] == ["reprokit", "verify"], command
    with verify_command.make_context("verify", words[2:]) as ctx:
        return dict(ctx.params)


def _command(**given: Any) -> str:
    return rerun_command("nb.ipynb", device=given.pop("device", "cpu"), **given)


# ----------------------------------------------------------------------------- the command


def test_the_bare_command_names_the_notebook_and_the_device() -> None:
    assert _command() == "reprokit verify nb.ipynb --device cpu"
    assert _read_back(_command(device="cuda"))["device"] == "cuda"


def test_parameters_are_given_again_and_read_back_as_the_same_values() -> None:
    values = {"alpha": 0.6, "n": 3, "flag": True, "none": None, "sizes": [1, 2], "name": "cat"}
    command = _command(parameters=values)
    assert "-p alpha=0.6" in command
    assert parse_assignments(_read_back(command)["assignments"]) == values


@pytest.mark.parametrize(
    "text", ["0.6", "true", "None", "[1, 2]", "two words", 'it\'s "quoted" $HOME', "a=b", ""]
)
def test_text_parameters_stay_text_through_the_shell(text: str) -> None:
    """A string that -p would read as a number, a bool or a list is given as JSON text; shell
    characters are quoted."""
    command = _command(parameters={"label": text})
    assert parse_assignments(_read_back(command)["assignments"]) == {"label": text}


def test_a_secret_parameter_is_named_never_its_value() -> None:
    command = _command(execution=ExecutionOptions(secret_parameters={"api_key": "hunter22"}))
    assert "hunter22" not in command
    assert _read_back(command)["secret_parameters"] == ("api_key",)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("api_token", TOKEN, TOKEN),
        ("db_url", "postgres://user:pw1234@db.example/prod", "pw1234"),
        ("note", f"token {TOKEN}", TOKEN),
    ],
)
def test_a_p_value_redaction_changes_becomes_a_secret_param_by_name(
    name: str, value: str, secret: str
) -> None:
    command = _command(parameters={name: value, "alpha": 0.6})
    assert secret not in command
    params = _read_back(command)
    assert params["secret_parameters"] == (name,)
    assert params["assignments"] == ("alpha=0.6",)


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"kernel": "python3"}, "kernel", "python3"),
        ({"timeout": 30.0}, "timeout", 30.0),
        ({"notebook_timeout": 600.0}, "notebook_timeout", 600.0),
        ({"start_timeout": 120.0}, "start_timeout", 120.0),
        ({"memory_limit": 2 * 1024**3}, "memory_limit", str(2 * 1024**3)),
        ({"deterministic": True}, "deterministic", True),
        ({"rebuild_env": "strict"}, "rebuild_env", "strict"),
        ({"rebuild_env": "best-effort"}, "rebuild_env", "best-effort"),
    ],
)
def test_each_execution_option_that_can_change_the_verdict_is_kept(
    options: dict[str, Any], field: str, expected: object
) -> None:
    command = _command(
        execution=ExecutionOptions(**options), comparison=ComparisonOptions(rtol=0.1)
    )
    params = _read_back(command)
    assert params[field] == expected
    assert params["rtol"] == 0.1  # an optional-value flag (--rebuild-env) does not eat it


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"rtol": 1e-3}, "rtol", 1e-3),
        ({"atol": 1e-8}, "atol", 1e-8),
        ({"outputs": True}, "outputs", True),
        ({"allow_data_drift": True}, "allow_data_drift", True),
        ({"rehash": True}, "rehash", True),
    ],
)
def test_each_comparison_option_is_kept(
    options: dict[str, Any], field: str, expected: object
) -> None:
    assert _read_back(_command(comparison=ComparisonOptions(**options)))[field] == expected


def test_repeat_is_kept() -> None:
    assert _read_back(_command(runs=3))["runs"] == 3
    assert "--repeat" not in _command(runs=1)


def test_the_named_lock_is_kept_and_renamed_with_it() -> None:
    params = _read_back(_command(lock=Path("old name.repro.json"), renamed=True))
    assert params["lock_path"] == Path("old name.repro.json")
    assert params["renamed"] is True
    assert _read_back(_command(lock="fit.repro.json"))["renamed"] is False


def test_options_that_do_not_change_the_verdict_are_left_out() -> None:
    """Where, how many at once, what is written: defaults are not spelled out either."""
    execution = ExecutionOptions(
        jobs=4, output_dir="/tmp/out", executor="dask", scheduler="tcp://h:8786", rebuild_force=True
    )
    command = _command(execution=execution, comparison=ComparisonOptions(force=True))
    assert command == "reprokit verify nb.ipynb --device cpu"


def test_a_notebook_path_with_spaces_is_quoted() -> None:
    command = rerun_command("my notebooks/fit 1.ipynb", device="cpu")
    assert _read_back(command)["paths"] == (Path("my notebooks/fit 1.ipynb"),)


def test_an_absolute_path_is_written_relative_to_here_or_to_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify bundle.zip --output-dir /tmp/rev/...`` put the reviewer's absolute folders into
    the re-run line of reports attached to anonymous reviews."""
    project = tmp_path / "rev" / "20261205T000000Z-abc" / "bundle"
    (project / "notebooks").mkdir(parents=True)
    notebook, lock = project / "notebooks" / "fig 3.ipynb", project / "notebooks" / "o.repro.json"
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # outside the project: relative to the project root
    command = rerun_command(notebook, device="cpu", project_root=project, lock=lock)
    assert (
        command
        == "reprokit verify 'notebooks/fig 3.ipynb' --device cpu --lock notebooks/o.repro.json"
    )
    monkeypatch.chdir(project.parent)  # inside here: relative to here, runnable as it is
    command = rerun_command(notebook, device="cpu", project_root=project)
    assert command == "reprokit verify 'bundle/notebooks/fig 3.ipynb' --device cpu"
    assert str(tmp_path) not in rerun_command(notebook, device="cpu", project_root=project)
    assert rerun_command("../x.ipynb", device="cpu") == "reprokit verify ../x.ipynb --device cpu"
    outside = rerun_command(elsewhere / "x.ipynb", device="cpu", project_root=project)
    assert outside == f"reprokit verify {elsewhere / 'x.ipynb'} --device cpu"  # nothing better


# ----------------------------------------------------------------------------- what changed


def test_a_parameter_given_now_is_named_with_the_recorded_and_the_given_value() -> None:
    changes = diff_parameters({"alpha": 0.5, "n": 3}, {"alpha": 0.6, "n": 3})
    assert [(c.category, c.key, c.reference, c.current, c.change) for c in changes] == [
        ("parameters", "alpha", "0.5", "0.6", "changed")
    ]
    assert changes[0].importance == 0


def test_the_notebook_default_is_what_the_lock_run_had_when_the_lock_has_none() -> None:
    changes = diff_parameters({}, {"alpha": 0.6, "beta": 1}, defaults={"alpha": 0.5})
    assert [(c.key, c.reference, c.current, c.change) for c in changes] == [
        ("alpha", "0.5", "0.6", "changed"),
        ("beta", None, "1", "added"),  # unknown: "-"
    ]
    assert diff_parameters({}, {"alpha": 0.5}, defaults={"alpha": 0.5}) == ()


def test_another_type_is_a_change() -> None:
    assert [c.key for c in diff_parameters({"n": 1, "f": 1}, {"n": 1.0, "f": True})] == ["f", "n"]
    assert diff_parameters({"sizes": [1, 2]}, {"sizes": (1, 2)}) == ()


def test_secret_parameters_are_named_without_their_values() -> None:
    recorded = {"db_url": "postgres://<redacted>@old.example/db", "seed_text": "abc"}
    given = {"db_url": "postgres://u:pw1234@new.example/db"}
    changes = diff_parameters(recorded, given, {"seed_text": "hunter22"})
    assert [(c.key, c.reference, c.current) for c in changes] == [
        ("db_url", REDACTED, REDACTED),
        ("seed_text", REDACTED, REDACTED),
    ]
    assert all("not shown" in c.hint for c in changes)
    text = repr(changes)
    assert "pw1234" not in text and "hunter22" not in text and "new.example" not in text


def test_a_secret_that_cannot_be_compared_is_not_reported() -> None:
    # the lock keeps a secret-looking name redacted, and never a --secret-param
    assert diff_parameters({"api_token": REDACTED}, {"api_token": TOKEN}) == ()
    assert diff_parameters({}, {}, {"api_key": "hunter22"}, defaults={"api_key": ""}) == ()
    same_host = {"db_url": "postgres://<redacted>@h/db"}
    assert diff_parameters(same_host, {"db_url": "postgres://u:other@h/db"}) == ()


def test_parameter_changes_come_first_in_the_environment_diff() -> None:
    git = EnvChange("git", "commit", "a", "b", "changed", "the code changed", 1)
    change = diff_parameters({"alpha": 0.5}, {"alpha": 0.6})
    merged = with_parameter_changes(EnvDiff((git,)), change)
    assert merged is not None and [c.category for c in merged.changes] == ["parameters", "git"]
    assert with_parameter_changes(None, ()) is None


def test_the_explanation_says_which_parameter_was_given_otherwise() -> None:
    """The terminal's lines, the pytest plugin's text and the JSON verdict name the parameter."""
    changed = diff_parameters({}, {"alpha": 0.6}, defaults={"alpha": 0.5})
    verdict = Verdict(
        "good.ipynb",
        False,
        {"differs": 1},
        (),
        env_diff=EnvDiff(changed),
        command=_command(parameters={"alpha": 0.6}),
    )
    line = env_lines(verdict)[0]
    assert line.startswith("parameters: alpha: 0.5 -> 0.6 (given now (-p)")
    described = describe_verdict(verdict)
    assert line in described
    assert "re-run: reprokit verify nb.ipynb --device cpu -p alpha=0.6" in described
    document = verdicts_json(verdict)
    assert '"category": "parameters"' in document and '"key": "alpha"' in document


def test_parameter_defaults_are_the_literals_of_the_parameters_cell() -> None:
    cell = new_code_cell(
        "alpha = 0.5\nname: str = 'x'\nn = 2 ** 10\na, b = 1, 2\nc = d = [1]\n%matplotlib inline\n"
        "alpha = 0.7"
    )
    cell.metadata["tags"] = ["parameters"]
    node = new_notebook(cells=[new_code_cell("x = 1"), cell])
    assert parameter_defaults(node) == {"alpha": 0.7, "name": "x", "c": [1], "d": [1]}
    assert parameter_defaults(new_notebook(cells=[new_code_cell("alpha = 1")])) == {}
    broken = new_code_cell("alpha = (")
    broken.metadata["tags"] = ["parameters"]
    assert parameter_defaults(nbformat.v4.new_notebook(cells=[broken])) == {}


def test_a_notebook_nothing_was_compared_for_keeps_its_re_run_command(tmp_path: Path) -> None:
    """Data changed (or the execution failed): the reports' stand-in verdict has the command,
    not a bare ``reprokit verify NB --device ...`` without the options."""
    command = _command(parameters={"alpha": 0.6}, comparison=ComparisonOptions(rtol=0.1))
    outcome = VerifyOutcome("nb.ipynb", "nb.repro.json", None, None, DataCheck(()), command)
    (reported,) = Verification((outcome,)).reported
    assert reported.not_compared == "data_changed" and reported.command == command
    assert f"<pre>{command}</pre>" in render_html(reported)
