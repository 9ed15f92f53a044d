"""A team's store for real: ``mlflow server`` on PostgreSQL, as ``examples/team/`` starts it.

The cluster is the one ``.ci/run`` starts (``.ci/postgres.sh``), or one the ``postgres_uri``
fixture starts itself; the server is started with the team script's ``--database-url``.
Several ``reprokit record`` processes write through it at once, then ``reprokit verify``
processes verify through it at once (sharing the skip cache); the runs are read back through
MLflow and straight from PostgreSQL. Also what the team script promises about a database: the
URL never printed, a database that does not answer refused in one line without its password.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mlflow_client
from pg_helpers import count_runs, fresh_database
from run_helpers import write_notebook
from server_helpers import run_team_script, script_env, team_server

pytestmark = pytest.mark.slow
pytest.importorskip("flask", reason="`mlflow server` needs full mlflow (the test extra)")
pytest.importorskip("psycopg", reason="PostgreSQL needs psycopg (reprokit-nb[postgres])")

WRITERS = 4


@pytest.fixture(scope="module")
def team(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A database of its own, and the team script's ``mlflow server`` on it."""
    database = fresh_database(postgres_uri)
    folder = tmp_path_factory.mktemp("pg-server")
    with team_server(folder, "--database-url", database) as url:
        yield {"url": url, "database": database, "folder": str(folder)}


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'pgteam'\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    for k in range(WRITERS):
        cells = [
            "%load_ext reprokit",
            "%repro start --seed 0 --data data.csv",
            f"import reprokit\nreprokit.result('x', {k} + 0.25)\nreprokit.result('k', {k})",
            "%repro end",
        ]
        write_notebook(root / f"nb{k}.ipynb", cells)
    return root


def _at_once(commands: list[list[str]], cwd: Path, url: str) -> list[tuple[int, str]]:
    env = script_env() | {"MLFLOW_TRACKING_URI": url, "CI": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reprokit", *c],
            cwd=cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for c in commands
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]  # read while they run: no full pipe
    return [(p.returncode, out) for p, out in zip(procs, outputs, strict=True)]


def _runs(url: str) -> list:  # type: ignore[type-arg]
    client = mlflow_client(url)
    experiment = client.get_experiment_by_name("pgteam")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def test_concurrent_writers_record_and_verify_through_postgres(
    team: dict[str, str], tmp_path: Path
) -> None:
    project = _project(tmp_path / "pgteam")
    records = [["record", f"nb{k}.ipynb", "--device", "cpu"] for k in range(WRITERS)]
    outputs = _at_once(records, project, team["url"])
    for code, out in outputs:
        assert code == 0, out[-3000:]
    runs = _runs(team["url"])
    statuses = {r.info.status for r in runs}
    assert len(runs) == WRITERS and statuses == {"FINISHED"}, [o[-1500:] for _, o in outputs]
    assert sorted(r.data.metrics["k"] for r in runs) == [float(k) for k in range(WRITERS)]
    assert count_runs(team["database"], "FINISHED") == WRITERS  # in PostgreSQL itself
    # the artifacts went through the server into its folder, nothing into the project
    served = Path(team["folder"]) / "mlartifacts"
    assert len(list(served.rglob("results.json"))) >= WRITERS
    assert not (project / "mlflow.db").exists()

    verifies = [
        ["verify", ".", "--device", "cpu", "--jobs", "2", "--json", f"v{k}.json"] for k in range(2)
    ]
    for code, out in _at_once(verifies, project, team["url"]):
        assert code == 0, out[-3000:]
    verified = [r for r in _runs(team["url"]) if r.data.tags.get("reprokit.verdict")]
    # two verifications at once: each notebook verified at least once, none left RUNNING
    assert {r.data.tags["reprokit.verdict"] for r in verified} == {"reproduced"}
    assert WRITERS <= len(verified) <= 2 * WRITERS
    assert count_runs(team["database"], "RUNNING") == 0
    # the skip cache both wrote: the next verify reuses every verdict, executes nothing
    ((code, out),) = _at_once(
        [["verify", ".", "--device", "cpu", "--json", "v.json"]], project, team["url"]
    )
    assert code == 0, out
    report = json.loads((project / "v.json").read_text())
    assert all(v["cached_at"] for v in report["verdicts"]) and len(report["verdicts"]) == WRITERS
    assert len(_runs(team["url"])) == len(verified) + WRITERS


def test_team_script_on_postgres_prints_no_password(team: dict[str, str]) -> None:
    """The script's server started (``team`` fixture): neither its output nor its log nor the
    server's command line carries the database password."""
    from sqlalchemy.engine import make_url

    password = make_url(team["database"]).password
    assert password
    log = (Path(team["folder"]) / "server.log").read_text(errors="replace")
    assert password not in log
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert password not in listing.stdout


def test_a_database_that_does_not_answer_is_one_line_without_its_password(
    postgres_uri: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    wrong = make_url(postgres_uri).set(password="canary-wrong-pw-7731")
    closed = make_url(postgres_uri).set(port=1, password="canary-closed-pw-7732")
    for url, why in ((wrong, "password authentication failed"), (closed, "refused")):
        shown = url.render_as_string(hide_password=False)
        done = run_team_script("--dir", str(tmp_path), "--database-url", shown, cwd=tmp_path)
        assert done.returncode == 1 and done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        assert "cannot connect to the --database-url database" in line and why in line
        assert url.render_as_string(hide_password=True) in line
        assert str(url.password) not in done.stderr
    assert not (tmp_path / "server.pid").exists()


def test_a_missing_driver_is_named(postgres_uri: str, tmp_path: Path) -> None:
    """``postgresql+pg8000://`` needs pg8000, which the test extra does not install."""
    if importlib.util.find_spec("pg8000") is not None:  # a driver the test extra never installs
        pytest.skip("pg8000 is installed here")
    url = postgres_uri.replace("postgresql://", "postgresql+pg8000://")
    done = run_team_script("--dir", str(tmp_path), "--database-url", url, cwd=tmp_path)
    assert done.returncode == 2 and "needs the pg8000 driver" in done.stderr
    assert "reprokit-nb[postgres]" in done.stderr
