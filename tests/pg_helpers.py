"""A throw-away PostgreSQL cluster for the team-store tests (not a test module).

``.ci/run`` starts one with ``.ci/postgres.sh`` and exports ``REPROKIT_TEST_POSTGRES_URI``;
without it, :func:`postgres_cluster` starts its own with the same script when it can (root,
Debian's PostgreSQL binaries), else the tests that need one skip, saying why. Each test module
gets a database of its own (:func:`fresh_database`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / ".ci" / "postgres.sh"
URI_VARIABLE = "REPROKIT_TEST_POSTGRES_URI"
BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def why_no_cluster() -> str | None:
    """Why this machine cannot start a cluster for the tests (``None`` when it can)."""
    if os.geteuid() != 0:
        return f"not root (the cluster runs as 'postgres') and {URI_VARIABLE} is not set"
    if not (BINDIR / "initdb").is_file():
        return f"no PostgreSQL binaries in {BINDIR} and {URI_VARIABLE} is not set"
    return None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """The URI of a PostgreSQL superuser: ``$REPROKIT_TEST_POSTGRES_URI``, else a cluster
    started (and stopped, removed) here with ``.ci/postgres.sh``; skips when neither can be."""
    given = os.environ.get(URI_VARIABLE)
    if given:
        yield given
        return
    if (reason := why_no_cluster()) is not None:
        pytest.skip(reason)
    started = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f".ci/postgres.sh start failed: {started.stderr[-2000:]}")
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
    )
    try:
        yield exported[URI_VARIABLE]
    finally:
        folder = exported["REPROKIT_TEST_POSTGRES_DIR"]
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", folder], timeout=120, check=False)


def fresh_database(uri: str) -> str:
    """A new, empty database of the cluster at ``uri``; its URI."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = "reprokit_" + secrets.token_hex(6)
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(uri).set(database=name).render_as_string(hide_password=False)


def count_runs(database: str, status: str) -> int:
    """Runs of ``status`` in MLflow's ``runs`` table, read from PostgreSQL itself."""
    import psycopg

    with psycopg.connect(database) as connection:
        row = connection.execute(
            "SELECT count(*) FROM runs WHERE status = %s", (status,)
        ).fetchone()
    return int(row[0]) if row else 0
