"""``%repro`` in an in-process IPython shell: parsing, outputs, cell outcomes → run status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import only_run, tracking_uri
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from reprokit.api import session
from reprokit.exceptions import DigestMismatchError, UsageError
from reprokit.notebook.magicline import split_result
from reprokit.recording.lock import output_fingerprints
from reprokit.results import RESULT_MIME, SNAPSHOT_MIME
from reprokit.results.model import RUN_ENDED_MIME

pytestmark = pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")


@pytest.fixture
def shell(project: Path, restore_seeding: None) -> Iterator[Any]:
    """This process's IPython with reprokit loaded; ``%repro seed`` undone afterwards."""
    ip = InteractiveShell.instance()
    saved_pub = ip.display_pub
    ip.display_pub = CapturingDisplayPublisher()
    ip.run_line_magic("load_ext", "reprokit")
    yield ip
    ip.run_line_magic("unload_ext", "reprokit")
    ip.display_pub = saved_pub
    if session.on_post_run_cell in ip.events.callbacks["post_run_cell"]:
        ip.events.unregister("post_run_cell", session.on_post_run_cell)


def outputs(ip: Any, mime: str) -> list[Any]:
    return [out["data"][mime] for out in ip.display_pub.outputs if mime in out["data"]]


def run(ip: Any, cell: str) -> Any:
    return ip.run_cell(cell, store_history=True)


def test_start_result_end_through_the_magic(shell: Any, project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "a.txt").write_text("a")
    ok = run(
        shell, "%repro start --experiment exp --run-name r1 --seed 4 --data data --param lr=0.1"
    )
    assert ok.success, ok.error_in_exec
    assert outputs(shell, SNAPSHOT_MIME)[0]["seeds"]["seed"] == 4
    assert run(shell, "acc = 0.5\n%repro result acc --rtol 1e-3").success
    assert run(shell, "%repro result loss --atol 0.01 1.0 - acc * 2").success
    assert run(shell, "%repro result ratio sum([1, 2]) / 4 --rtol=0.5").success
    declared = {r["name"]: r for r in outputs(shell, RESULT_MIME)}
    assert declared["acc"]["rtol"] == 1e-3 and declared["acc"]["value"] == 0.5
    assert declared["loss"]["atol"] == 0.01 and declared["loss"]["value"] == 0.0
    assert declared["ratio"]["value"] == 0.75 and declared["ratio"]["rtol"] == 0.5
    assert run(shell, "%repro end").success
    finished = only_run(tracking_uri(project), "exp")
    assert finished.info.status == "FINISHED"
    assert finished.data.metrics == {"acc": 0.5, "loss": 0.0, "ratio": 0.75}
    # the end line is an output of reprokit's own: its run id and store are never compared
    (ended,) = [o for o in shell.display_pub.outputs if RUN_ENDED_MIME in o["data"]]
    assert ended["data"][RUN_ENDED_MIME] == {"status": "FINISHED", "results": 3}
    line = ended["data"]["text/plain"]
    assert line.startswith("reprokit: run ") and " ended FINISHED: 3 result(s) → sqlite:" in line
    assert finished.info.run_id in line or "handed to a background writer" in line
    shown = {"output_type": "display_data", **ended}
    cells = [
        {"cell_type": "code", "source": "%repro end", "outputs": outputs}
        for outputs in ([shown], [])
    ]
    assert output_fingerprints({"cells": cells[:1]}) == output_fingerprints({"cells": cells[1:]})
    assert finished.data.params["lr"] == "0.1" and finished.data.params["seed"] == "4"


def test_the_end_line_says_a_background_writer_records_the_run(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said ``run (not recorded)`` whenever MLflow was not done within 50 ms of the end (its
    import in a fresh kernel), although the background writer records the run moments later."""
    import threading

    from reprokit.recording.worker import BackgroundRecorder

    go_on, connect = threading.Event(), BackgroundRecorder._connect

    def slow_import(recorder: BackgroundRecorder) -> None:
        go_on.wait(60)
        connect(recorder)

    monkeypatch.setattr(BackgroundRecorder, "_connect", slow_import)
    run(shell, "%repro start --experiment exp")
    run(shell, "%repro end")
    go_on.set()
    (ended,) = [o for o in shell.display_pub.outputs if RUN_ENDED_MIME in o["data"]]
    line = ended["data"]["text/plain"]
    assert line.startswith("reprokit: run ended FINISHED: 0 result(s) → sqlite:"), line
    assert line.endswith(", handed to a background writer (reprokit.flush() waits for it)")
    assert session.flush(120)


def test_failed_cell_since_start_ends_the_run_failed(shell: Any, project: Path) -> None:
    run(shell, "%repro start --experiment exp")
    assert not run(shell, "1 / 0").success
    run(shell, "%repro end")
    assert only_run(tracking_uri(project), "exp").info.status == "FAILED"


def test_interrupted_cell_ends_the_run_killed(shell: Any, project: Path) -> None:
    run(shell, "%repro start --experiment exp")
    run(shell, "raise KeyboardInterrupt")
    run(shell, "%repro end")
    assert only_run(tracking_uri(project), "exp").info.status == "KILLED"


def test_end_status_option_overrides(shell: Any, project: Path) -> None:
    run(shell, "%repro start --experiment exp")
    run(shell, "1 / 0")
    run(shell, "%repro end --status finished")
    assert only_run(tracking_uri(project), "exp").info.status == "FINISHED"


def test_result_of_a_missing_variable_is_a_usage_error(shell: Any, capsys: Any) -> None:
    run(shell, "%repro start --experiment exp")
    outcome = run(shell, "%repro result nothing_here")
    assert not outcome.success
    assert "no variable named 'nothing_here'" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors_not_tracebacks(shell: Any, capsys: Any) -> None:
    assert not run(shell, "%repro start --seed abc").success
    assert "invalid int value" in capsys.readouterr().err
    assert not run(shell, "%repro frobnicate").success
    assert "invalid choice" in capsys.readouterr().err
    assert not run(shell, "%repro result x 1 --rtol much").success
    assert "--rtol needs a number" in capsys.readouterr().err
    # an option left without its number was evaluated as Python: `x --rtol` is x + rtol
    assert run(shell, "x, rtol = 1.0, 0.25").success
    assert not run(shell, "%repro result z x --atol 0.5 --rtol").success
    assert "--rtol needs a number" in capsys.readouterr().err


def test_an_option_inside_a_string_is_the_expression_s_text(shell: Any) -> None:
    from reprokit.api import session

    assert run(shell, '%repro result label "text --rtol 5" --atol 1').success
    result = session.results()["label"]
    assert result.value == "text --rtol 5" and result.rtol is None and result.atol == 1.0


def test_reprokit_errors_show_one_line(shell: Any, project: Path, capsys: Any) -> None:
    (project / "f.txt").write_text("x")
    run(shell, "%repro start --experiment exp")
    outcome = run(shell, "%repro data f.txt --expect sha256:" + "0" * 64)
    assert isinstance(outcome.error_in_exec, DigestMismatchError)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "DigestMismatchError: f.txt: digest mismatch" in text
    assert "Traceback" not in text


def test_data_seed_status_env_device_subcommands(shell: Any, project: Path, capsys: Any) -> None:
    (project / "f.txt").write_text("x")
    run(shell, "%repro start --experiment exp")
    assert run(shell, "%repro data f.txt").success
    assert "f.txt: file, 1 bytes, blake3:" in capsys.readouterr().out
    assert run(shell, "%repro seed 5 --deterministic").success
    assert "with 5 (deterministic)" in capsys.readouterr().out
    assert run(shell, "%repro status").success
    status_html = shell.display_pub.outputs[-1]["data"]["text/html"]
    assert "f.txt" in status_html and "RUNNING" in status_html
    assert run(shell, "%repro env").success
    env_text = shell.display_pub.outputs[-1]["data"]["text/plain"]
    assert "python" in env_text and "seed" in env_text
    assert run(shell, "d = %repro device").success
    assert shell.user_ns["d"] in ("cpu", "cuda")


def test_status_without_a_run(shell: Any) -> None:
    assert run(shell, "%repro status").success
    assert "none (start one" in shell.display_pub.outputs[-1]["data"]["text/plain"]


def test_help_is_shown_as_usage(shell: Any, capsys: Any) -> None:
    run(shell, "%repro start --help")
    assert "--tracking-uri" in capsys.readouterr().err


def test_unload_removes_the_magic(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "reprokit")
    assert "repro" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "reprokit")
    assert "repro" in shell.magics_manager.magics["line"]


def test_load_ext_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'reprokit')\n"
        "print(sorted({'mlflow', 'numpy', 'torch', 'pandas', 'nbformat'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_trailing_comment_is_not_an_argument(shell: Any, project: Path) -> None:
    """``%repro end  # the kernel's exit ends it too`` — an apostrophe in a comment once raised."""
    ok = run(shell, "%repro start --experiment c --seed 1  # it's seeded, isn't it")
    assert ok.success, ok.error_in_exec
    assert outputs(shell, SNAPSHOT_MIME)[0]["seeds"]["seed"] == 1
    assert run(shell, "%repro end  # the kernel's exit ends the run too").success
    assert only_run(tracking_uri(project), "c").info.status == "FINISHED"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acc", ("acc", "")),
        ("loss 1.0 - acc * 2", ("loss", "1.0 - acc * 2")),
        ("'sp ace' 1", ("sp ace", "1")),  # the name as the API sees it: quotes are not part of it
        ('"a b"  d["k"]', ("a b", 'd["k"]')),
        ("'' 1", ("", "1")),  # the empty name: refused by reprokit.result, as from the API
        ("   ", (None, "")),
    ],
)
def test_a_result_name_is_one_shell_word(text: str, expected: tuple[str | None, str]) -> None:
    assert split_result(text) == expected


def test_quoted_and_empty_result_names_through_the_magic(
    shell: Any, project: Path, capsys: Any
) -> None:
    run(shell, "%repro start --experiment exp")
    assert run(shell, "%repro result 'sp ace' 1 --rtol inf").error_in_exec is not None
    ok = run(shell, "%repro result 'sp ace' 1 --rtol 0.5")
    assert ok.success, ok.error_in_exec
    assert outputs(shell, RESULT_MIME)[-1]["name"] == "sp ace"
    empty = run(shell, "%repro result '' 1")
    assert isinstance(empty.error_in_exec, UsageError)
    assert str(empty.error_in_exec) == "a result name must be a non-empty string, got ''"
    assert not run(shell, "%repro result 'open 1").success
    out = capsys.readouterr()
    text = out.out + out.err
    assert "UsageError: result 'sp ace': rtol must be a finite number >= 0, got inf" in text
    assert "%repro result: No closing quotation" in text and "Traceback" not in text
    assert [r["name"] for r in outputs(shell, RESULT_MIME)] == ["sp ace"]


def test_the_status_magic_is_reprokit_s_own_output(shell: Any) -> None:
    """``%repro status`` shows the run's folder, which differs on every run: without a reprokit
    MIME type ``verify --outputs`` compared it and failed unchanged notebooks."""
    from reprokit.results.model import RUN_STATUS_MIME

    assert run(shell, "%repro start --experiment exp").success
    assert run(shell, "%repro status").success
    (shown,) = [o for o in shell.display_pub.outputs if RUN_STATUS_MIME in o["data"]]
    assert shown["data"][RUN_STATUS_MIME]["active"] is True
    assert "local folder" in shown["data"]["text/plain"]
    assert run(shell, "%repro end").success
