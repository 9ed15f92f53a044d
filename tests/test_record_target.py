"""Where runs go: project root, tracking URI resolution order, artifact locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprokit.exceptions import UsageError
from reprokit.recording.target import (
    display_uri,
    find_project_root,
    resolve_target,
    sqlite_path,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def test_project_root_is_nearest_folder_with_pyproject_or_git(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "pkg").mkdir()
    (tmp_path / "repo" / "pkg" / "pyproject.toml").write_text("")
    (tmp_path / "repo" / "pkg" / "nb").mkdir()
    (tmp_path / "repo" / "other").mkdir()
    assert find_project_root(tmp_path / "repo" / "pkg" / "nb") == tmp_path / "repo" / "pkg"
    assert find_project_root(tmp_path / "repo" / "other") == tmp_path / "repo"


def test_project_root_without_markers_is_the_start_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    if any((p / m).exists() for p in folder.parents for m in ("pyproject.toml", ".git")):
        pytest.skip("a parent of the temporary folder is itself a project")
    assert find_project_root(folder) == folder


@pytest.mark.usefixtures("clean_env")
def test_default_is_sqlite_in_project_root_with_mlartifacts(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    target = resolve_target(start=tmp_path)
    assert target.source == "default"
    assert target.uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert sqlite_path(target.uri) == tmp_path / "mlflow.db"
    assert target.experiment == tmp_path.name
    assert target.artifact_location("my exp") == (tmp_path / "mlartifacts" / "my_exp").as_uri()


@pytest.mark.usefixtures("clean_env")
def test_pyproject_uri_is_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.reprokit]\ntracking_uri = 'sqlite:///store/runs.db'\nexperiment = 'paper'\n"
    )
    sub = tmp_path / "notebooks"
    sub.mkdir()
    target = resolve_target(start=sub)
    assert target.source == "pyproject"
    assert target.uri == f"sqlite:///{tmp_path}/store/runs.db"
    assert target.experiment == "paper"
    assert target.artifact_root == str(tmp_path / "store" / "mlartifacts")


def test_env_beats_pyproject_and_argument_beats_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.reprokit]\ntracking_uri = 'sqlite:///a.db'\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1/")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    target = resolve_target(start=tmp_path)
    assert (target.source, target.uri, target.experiment) == (
        "env",
        "http://127.0.0.1:1/",
        "from-env",
    )
    assert target.artifact_root is None  # a server decides where artifacts go
    explicit = resolve_target(start=tmp_path, tracking_uri="sqlite:////x/y.db", experiment="e")
    assert (explicit.source, explicit.experiment) == ("argument", "e")


@pytest.mark.usefixtures("clean_env")
def test_broken_pyproject_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.reprokit\n")
    with pytest.raises(UsageError, match=r"pyproject\.toml"):
        resolve_target(start=tmp_path)


def test_display_uri_removes_credentials_and_keeps_plain_uris() -> None:
    assert display_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    shown = display_uri("https://alice:s3cret@mlflow.example.org/")
    assert "s3cret" not in shown and "alice" not in shown and "mlflow.example.org" in shown


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://lab:canary-pg-pw-5521@127.0.0.1:1/db",
        "postgresql+psycopg2://lab:canary-pg-pw-5521@127.0.0.1:1/db",
    ],
)
def test_a_database_store_that_does_not_answer_is_one_line_without_its_password(
    uri: str, tmp_path: Path
) -> None:
    """MLflow retries a database for about 100 s, logging every attempt: the port is probed
    first (the error is the probe's, not the driver's), in one line naming the store without
    its password."""
    from reprokit.exceptions import RecordError
    from reprokit.recording.writer import MlflowRunWriter

    target = resolve_target(start=tmp_path, tracking_uri=uri)
    with pytest.raises(RecordError) as raised:
        MlflowRunWriter(target).connect(catch_up=False)
    message = str(raised.value)
    assert "\n" not in message and "127.0.0.1:1/db: connecting failed" in message
    assert "OperationalError" not in message  # the probe answered: MLflow was never asked
    assert "canary-pg-pw-5521" not in message


_TELEMETRY_PROBE = """
import sys, threading
from pathlib import Path
from reprokit.recording.target import resolve_target
from reprokit.recording.writer import MlflowRunWriter
writer = MlflowRunWriter(resolve_target(start=Path.cwd(), tracking_uri=sys.argv[1]))
writer.connect()
writer.open_run(run_name="probe", tags={}, params={}, start_ms=1)
writer.close("FINISHED", 2)
import os
names = [thread.name for thread in threading.enumerate()]
print(os.environ["MLFLOW_DISABLE_TELEMETRY"], any("Telemetry" in n for n in names))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "true False"), ("false", "false")])
def test_mlflow_telemetry_is_off_where_reprokit_writes_unless_the_user_set_it(
    tmp_path: Path, mlflow_template_db: Path, given: str | None, expected: str
) -> None:
    """MLflow 3 sends usage telemetry by default (and its thread held each writing process
    about a second at exit); reprokit's writes turn it off, a user's explicit choice stays."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(mlflow_template_db, tmp_path / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    if given is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = given
    done = subprocess.run(
        [sys.executable, "-c", _TELEMETRY_PROBE, f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(expected), done.stdout


@pytest.fixture
def unset_http_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLflow HTTP variable set, but the user's ``MLFLOW_HTTP_REQUEST_TIMEOUT``."""
    from reprokit.recording import writer

    for name in writer.HTTP_LIMITS:
        monkeypatch.setenv(name, "")  # restored afterwards, also when it was not set
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    monkeypatch.setattr(writer, "_limits_set", set())


@pytest.mark.usefixtures("unset_http_limits")
def test_mlflow_http_retries_are_bounded_where_reprokit_writes_unless_the_user_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow's defaults retry a server answering 503 for about 4 minutes per call, in the
    runner that waits for its records; reprokit's own processes give up in seconds (the journal
    keeps the run), a value the user set stays, and the runner's kernels (the notebook's own
    MLflow calls) do not inherit reprokit's bounds."""
    import os

    from reprokit.recording import context
    from reprokit.recording.writer import quiet_mlflow
    from reprokit.runner.execute import kernel_manager_for

    # a process of reprokit's own: no IPython shell (another test may have left one in this
    # worker, which would make it the user's session, where the bounds are not set)
    monkeypatch.setattr(context, "ipython_shell", lambda: None)

    quiet_mlflow()  # as MlflowRunWriter.connect and the runner's warm-up do
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    kernel_env = kernel_manager_for({}).kernel_env
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in kernel_env
    assert "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" not in kernel_env
    assert kernel_env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"


@pytest.mark.usefixtures("unset_http_limits")
def test_mlflow_http_retries_keep_their_defaults_in_a_users_ipython(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel or IPython session is the user's process: its own MLflow calls keep MLflow's
    retries (the kernel's runs go to a background writer, which bounds its own)."""
    import os

    from reprokit.recording import context
    from reprokit.recording.writer import quiet_mlflow

    monkeypatch.setattr(context, "ipython_shell", object)  # a shell, not None
    quiet_mlflow()
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
