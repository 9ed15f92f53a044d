"""The CI recipes in ``examples/ci/`` stay valid: every ``reprokit`` line they run parses with
the real click commands (so a renamed or removed option fails here), and the verification's
JUnit file and HTML report are the artifacts they keep, also when verification fails."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from reprokit.cli import main

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "examples" / "ci"


def _parse(line: str) -> tuple[str, dict[str, Any]]:
    """Parse a ``reprokit ...`` command line as the CLI would, without running it."""
    words = shlex.split(line)
    assert words[0] == "reprokit", line
    with click.Context(main) as parent:
        command = main.get_command(parent, words[1])
        assert command is not None, f"no command {words[1]!r}: {line}"
        with command.make_context(words[1], words[2:], parent=parent) as ctx:
            return words[1], dict(ctx.params)


def _reprokit_lines(commands: list[str]) -> list[str]:
    lines = [line.strip() for block in commands for line in block.splitlines()]
    return [line for line in lines if line.startswith("reprokit ")]


def _github() -> tuple[list[str], dict[str, Any]]:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    (job,) = workflow["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    (upload,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    return runs, upload


def _gitlab() -> dict[str, Any]:
    config = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    (job,) = config.values()
    assert isinstance(job, dict)
    return job


def _check_verify_line(lines: list[str], ci: str) -> None:
    parsed = dict(_parse(line) for line in lines)
    assert set(parsed) == {"check", "verify"}
    verify = parsed["verify"]
    assert verify["paths"] == (Path("notebooks/"),)
    assert (verify["junit"], verify["report"], verify["jobs"]) == (
        Path("junit.xml"),
        Path("report.html"),
        2,
    )
    assert parsed["check"]["paths"] == (Path("notebooks/"),)
    assert verify["ci"] == ci and not verify["force"]  # CI-native output, the skip cache on


def test_github_actions_workflow_runs_valid_commands_and_keeps_the_reports() -> None:
    runs, upload = _github()
    _check_verify_line(_reprokit_lines(runs), "github")
    assert any("pip install reprokit" in run for run in runs)
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["junit.xml", "report.html"]


def test_gitlab_job_runs_valid_commands_and_keeps_the_reports() -> None:
    job = _gitlab()
    _check_verify_line(_reprokit_lines(job["script"]), "gitlab")
    assert any("pip install reprokit" in line for line in job["script"])
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == "junit.xml"
    assert artifacts["paths"] == ["junit.xml", "report.html"]
    assert ".reprokit/verified" in job["cache"]["paths"]


def test_github_workflow_keeps_the_skip_cache_between_runs() -> None:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    (cache,) = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert cache["with"]["path"] == ".reprokit/verified"
    assert cache["with"]["restore-keys"].endswith("-")  # any earlier run's entries: still checked
    verify_step = next(i for i, s in enumerate(steps) if "reprokit verify" in s.get("run", ""))
    assert steps.index(cache) < verify_step


def test_the_parser_would_catch_a_drifted_option() -> None:
    with pytest.raises(click.NoSuchOption):
        _parse("reprokit verify notebooks/ --junit-xml junit.xml")
    with pytest.raises(click.BadParameter):
        _parse("reprokit verify notebooks/ --jobs two")
    with pytest.raises(AssertionError):
        _parse("reprokit verfiy notebooks/")


def test_the_gpu_check_script_refuses_a_machine_without_a_gpu(tmp_path: Path) -> None:
    """``tools/gpu_check.sh`` (CONTRIBUTING.md) runs where CI cannot: here it must say why
    it does nothing, in one line and with exit 2, and leave no output folder half-made."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is not None:
        pytest.skip("an NVIDIA driver is here: the script would run its checks")
    script = ROOT / "tools" / "gpu_check.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "gpu_check.sh run OUT" in usage.stderr
    refused = subprocess.run(
        ["bash", str(script), "run", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == "no NVIDIA GPU visible (nvidia-smi -L)"
    assert not (tmp_path / "out").exists()
