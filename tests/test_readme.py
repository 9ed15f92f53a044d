"""The README's two set-up commands stay true: the test command is exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_after(marker: str, text: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert match, f"README has no command block after <!-- {marker} -->"
    return match.group(1).strip()


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    command = _fenced_after("test-command", readme)
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert command in ci_lines


def test_readme_main_job_command_installs_and_runs() -> None:
    command = _fenced_after("main-job-command", (ROOT / "README.md").read_text())
    assert "pip install" in command
    assert "reprokit" in command.split("pip install", 1)[1]
    assert "\n" not in command


def test_ci_pins_torch() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in text
    # the same rule as the before-stop hook: any pip line naming torch must pin it
    assert re.search(r"pip[0-9.]* install[^#]*\btorch\b([^=]|$)", text) is None
