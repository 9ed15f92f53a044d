"""What a failed verdict tells to do next: the command that re-runs the verification
(``rerun_command``: every option of ``verify`` that can change the verdict, read back by the
real ``verify`` command line)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from reprokit.cli._verify import verify_command
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.report.rerun import rerun_command
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
