"""capture(): a complete Snapshot that round-trips JSON exactly and never carries a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reprokit._serde import from_json, to_json
from reprokit._version import __version__
from reprokit.capturing.model import SCHEMA_VERSION, SeedRecord, Snapshot
from reprokit.capturing.snapshot import capture
from reprokit.exceptions import PathError

CANARY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIACANARY0123456789",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARY1KEY",
    "GITHUB_TOKEN": "ghp_CANARY0123456789abcdefghijABCDEFGHIJ",
    "HF_TOKEN": "hf_CANARYabcdefghijklmnopqrstuvwxyzAB",
    "DB_PASSWORD": "CANARYPW1",
    "DATABASE_URL": "postgresql://u:CANARYPW2@h/db",
    "OMP_NUM_THREADS": "ghp_CANARY9876543210abcdefghijABCDEFGHIJ",
    "MKL_CBWR": "Kx9fQ2mZ7pL4vR8tN3wY6hB1cJ5dG0sAqECANARY3",
    "XLA_FLAGS": "--xla_dump_to=/tmp/x --token=CANARYXLA",
    "JAX_PLATFORMS": "cpu,sk-CANARY0123456789abcdefghijkl",
}
CANARY_REMOTE = "https://user:CANARYTOKEN@example.com/r.git"
CANARIES = [*CANARY_ENV.values(), "CANARYPW2", "CANARYTOKEN", "CANARYXLA", "CANARY"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "nb.py").write_text("print(1)\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    return root


def test_snapshot_has_every_section(repo: Path) -> None:
    seeds = SeedRecord(seed=0, deterministic=False, seeded=("random",))
    snapshot = capture(root=repo, seeds=seeds)
    assert snapshot.schema_version == SCHEMA_VERSION
    assert snapshot.reprokit_version == __version__
    captured = datetime.fromisoformat(snapshot.captured_at)
    assert captured.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - captured).total_seconds()) < 600
    assert snapshot.python.executable == sys.executable
    assert snapshot.platform.logical_cores >= 1
    assert snapshot.packages["reprokit-nb"] == __version__  # distribution name
    assert snapshot.imported["reprokit"] == __version__
    assert snapshot.git.available and snapshot.git.branch == "main"
    assert snapshot.accelerator.available or snapshot.accelerator.reason
    assert snapshot.seeds == seeds
    assert snapshot.data is None


def test_real_capture_round_trips_json_exactly(repo: Path) -> None:
    (repo / "nb.py").write_text("print(2)\n")  # dirty, with a diff digest
    (repo / "new.txt").write_text("x")
    seeds = SeedRecord(
        seed=3, deterministic=True, seeded=("random", "numpy"), settings={"a": "b"}, notes=("n",)
    )
    snapshot = capture(root=repo, seeds=seeds)
    text = to_json(snapshot)
    again = from_json(text, Snapshot)
    assert again == snapshot
    assert to_json(again) == text


def test_no_canary_secret_reaches_the_snapshot(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CANARY_ENV.items():
        monkeypatch.setenv(name, value)
    _git(repo, "remote", "add", "origin", CANARY_REMOTE)
    for allow in ("", "AWS_*,*TOKEN*,DB_*,DATABASE_URL"):  # default list, then forced through it
        monkeypatch.setenv("REPROKIT_ENV_ALLOW", allow)
        snapshot = capture(root=repo)
        text = to_json(snapshot)
        leaked = [canary for canary in CANARIES if canary in text]
        assert leaked == []
    assert snapshot.git.remote_url == "https://example.com/r.git"
    assert snapshot.environment["DATABASE_URL"] == "postgresql://<redacted>@h/db"
    assert snapshot.environment["GITHUB_TOKEN"] == "<redacted>"
    assert snapshot.environment["OMP_NUM_THREADS"] == "<redacted>"
    assert snapshot.environment["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --token=<redacted>"


def test_outside_git_the_snapshot_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    snapshot = capture()
    assert not snapshot.git.available
    assert snapshot.git.reason == "not a git repository"


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="does not exist"):
        capture(root=tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="not a folder"):
        capture(root=tmp_path / "file")


def test_data_is_hashed_relative_to_root(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("reprokit.capturing.hashing")
    data = repo / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n")
    monkeypatch.chdir(repo)
    snapshot = capture(root=repo, data=[data, repo / "nb.py"], algorithm="sha256")
    assert snapshot.data is not None
    entries = {e.path: e for e in snapshot.data.entries}
    assert set(entries) == {"data", "nb.py"}
    assert entries["data"].kind == "dir" and entries["data"].algorithm == "sha256"
    single = capture(root=repo, data="nb.py")  # one path, not its characters
    assert single.data is not None and [e.path for e in single.data.entries] == ["nb.py"]
    assert from_json(to_json(snapshot), Snapshot) == snapshot


HEAVY = ("numpy", "torch", "mlflow", "papermill", "pandas", "rich")
LIGHT_CAPTURE = f"""
import json, sys
import reprokit.capturing.snapshot as snapshot
after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
snapshot.capture()
after_capture = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps([after_import, after_capture]))
"""


def test_capture_imports_nothing_heavy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_CAPTURE],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)},
    )
    assert json.loads(out.stdout) == [[], []]
