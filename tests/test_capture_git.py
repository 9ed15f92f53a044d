"""Git facts from real repositories made in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import blake3
import pytest

from reprokit.capturing import git as gitmod
from reprokit.capturing.git import collect_git, git_diff


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user/system git configuration, and no repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def run_git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    run_git(root, "init", "-q", "-b", "main")
    (root / "analysis.py").write_text("x = 1\n")
    (root / ".gitignore").write_text("*.log\n")
    run_git(root, "add", ".")
    run_git(root, "commit", "-q", "-m", "first")
    return root


def test_clean_repository(repo: Path) -> None:
    info = collect_git(repo)
    assert info.available and info.reason is None
    assert info.commit == run_git(repo, "rev-parse", "HEAD")
    assert info.branch == "main"
    assert info.dirty is False
    assert info.diff_digest is None
    assert info.untracked == ()
    assert info.remote_url is None
    assert Path(info.root or "").resolve() == repo.resolve()


def test_modified_tracked_file_makes_the_tree_dirty_with_a_stable_digest(repo: Path) -> None:
    (repo / "analysis.py").write_text("x = 2\n")
    info = collect_git(repo)
    assert info.dirty
    diff = git_diff(repo)
    assert diff is not None and "+x = 2" in diff
    assert info.diff_digest == f"blake3:{blake3.blake3(diff.encode()).hexdigest()}"
    assert collect_git(repo).diff_digest == info.diff_digest
    (repo / "analysis.py").write_text("x = 3\n")
    assert collect_git(repo).diff_digest != info.diff_digest


def test_staged_change_counts_as_dirty(repo: Path) -> None:
    (repo / "new.py").write_text("y = 1\n")
    run_git(repo, "add", "new.py")
    info = collect_git(repo)
    assert info.dirty and info.diff_digest is not None
    assert info.untracked == ()


def test_untracked_files_are_listed_not_dirty_and_ignored_ones_left_out(repo: Path) -> None:
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / "data" / "raw" / "b.csv").write_text("1\n")
    (repo / "a b é.txt").write_text("x\n")
    (repo / "run.log").write_text("ignored\n")
    info = collect_git(repo)
    assert info.dirty is False
    assert info.diff_digest is None
    assert info.untracked == ("a b é.txt", "data/raw/b.csv")


def test_reprokits_own_store_and_outputs_are_not_listed_as_untracked(repo: Path) -> None:
    """The default store (with SQLite's files beside it), its artifact folder, ``.reprokit/``
    and folders reprokit marked as its output say nothing about the code, and their names
    carry run ids: a verdict listed them as the reviewer's untracked files."""
    own = [
        "mlflow.db",
        "mlflow.db-journal",
        "mlflow.db.lock",
        "sub/mlflow.db-wal",
        "mlartifacts/proj/0123abcd/artifacts/reprokit/lock.json",
        "sub/.reprokit/runs/x/run.json",
        "out/.reprokit-output",
        "out/fig3/report.html",
        "out.active",  # the output folder's "in use" mark
        ".reprokit-output",
        "tracking/runs.db",  # MLFLOW_TRACKING_URI=sqlite:///tracking/runs.db
        "tracking/runs.db.lock",
        "tracking/runs.db-wal",
    ]
    for name in [*own, "notes.txt", "mlflow.dbx", "results/out/kept.csv"]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x\n")
    info = collect_git(repo)
    assert info.untracked == ("mlflow.dbx", "notes.txt", "results/out/kept.csv")
    assert info.untracked_omitted == 0


def test_diff_never_contains_untracked_contents(repo: Path) -> None:
    (repo / "notes.txt").write_text("UNTRACKED-CONTENT-CANARY\n")
    assert git_diff(repo) == ""
    (repo / "analysis.py").write_text("x = 5\n")
    diff = git_diff(repo)
    assert diff is not None and "x = 5" in diff
    assert "UNTRACKED-CONTENT-CANARY" not in diff


def test_rename_records_do_not_disturb_parsing(repo: Path) -> None:
    run_git(repo, "mv", "analysis.py", "renamed.py")
    (repo / "zz.txt").write_text("new\n")
    info = collect_git(repo)
    assert info.dirty
    assert info.untracked == ("zz.txt",)


def test_detached_head_has_no_branch(repo: Path) -> None:
    run_git(repo, "checkout", "-q", "--detach")
    info = collect_git(repo)
    assert info.available and info.branch is None
    assert info.commit == run_git(repo, "rev-parse", "HEAD")


def test_subfolder_reports_the_repository_root_and_root_relative_names(repo: Path) -> None:
    sub = repo / "notebooks"
    sub.mkdir()
    (sub / "nb.ipynb").write_text("{}")
    info = collect_git(sub)
    assert Path(info.root or "").resolve() == repo.resolve()
    assert info.untracked == ("notebooks/nb.ipynb",)


def test_remote_credentials_are_stripped_and_origin_preferred(repo: Path) -> None:
    run_git(repo, "remote", "add", "backup", "https://backup.example.com/r.git")
    assert collect_git(repo).remote_url == "https://backup.example.com/r.git"
    run_git(repo, "remote", "add", "origin", "https://user:CANARYTOKEN@example.com/r.git")
    info = collect_git(repo)
    assert info.remote_url == "https://example.com/r.git"


def test_untracked_names_are_capped_and_the_rest_counted(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitmod, "UNTRACKED_LIMIT", 3)
    for i in range(5):
        (repo / f"f{i}.txt").write_text("x")
    untracked = collect_git(repo).untracked
    assert untracked[:3] == ("f0.txt", "f1.txt", "f2.txt")
    info = collect_git(repo)
    assert info.untracked == untracked
    assert len(untracked) == 3
    assert info.untracked_omitted == 2


def test_outside_a_repository(tmp_path: Path) -> None:
    info = collect_git(tmp_path)
    assert not info.available
    assert info.reason == "not a git repository"
    assert git_diff(tmp_path) is None


def test_repository_without_commits(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q")
    info = collect_git(tmp_path)
    assert not info.available
    assert info.reason == "repository has no commits yet"


def test_without_git_on_path(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    info = collect_git(repo)
    assert not info.available
    assert info.reason is not None and "git not installed" in info.reason
    assert git_diff(repo) is None


def test_missing_folder_is_a_reason_not_an_error(tmp_path: Path) -> None:
    info = collect_git(tmp_path / "nowhere")
    assert not info.available and info.reason is not None
    assert "cannot run git" in info.reason


def test_git_runs_without_locks_prompts_or_translations() -> None:
    env = gitmod.git_env()
    assert env["GIT_OPTIONAL_LOCKS"] == "0"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["LC_ALL"] == "C"
