"""``reprokit check`` (and the pre-commit hook built on it): is every notebook's lock current?

Fast tests build real locks with ``build_lock`` from unexecuted notebooks (no kernel); the
integration test records with the real CLI in a real git repository and runs the hook through
real ``pre-commit`` with the shipped example configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
import yaml
from click.testing import CliRunner

from reprokit.api.check import CellChange, LockFreshness, check_locks
from reprokit.cli import main
from reprokit.recording.lock import build_lock, lock_path_for, write_lock

ROOT = Path(__file__).resolve().parents[1]
CELLS = ["seed = 0", "x = seed + 1\nx", "print(x)"]
PERCENT = "# %% [markdown]\n# A text notebook\n\n# %%\ny = 2\n\n# %%\nprint(y)\n"


def _notebook(path: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def _lock(notebook: Path, root: Path) -> Path:
    node = nbformat.read(notebook, as_version=4) if notebook.suffix == ".ipynb" else None
    executed = node if node is not None else _as_node(notebook)
    write_lock(build_lock(notebook, executed, project_root=root), lock_path_for(notebook))
    return lock_path_for(notebook)


def _as_node(path: Path) -> object:
    import jupytext

    return jupytext.read(path)


def _edit(path: Path, index: int, source: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].source = source
    nbformat.write(nb, path)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "paper"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'paper'\n")
    monkeypatch.chdir(root)
    return root


def _check(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["check", *args])
    return out.exit_code, out.output


# ----------------------------------------------------------------------------- API


def test_current_lock_and_output_or_metadata_changes_do_not_count(repo: Path) -> None:
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    _lock(notebook, repo)
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 7
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, notebook)
    assert check_locks([notebook]) == [
        LockFreshness(str(notebook), str(lock_path_for(notebook)), "current")
    ]


def test_changed_added_and_removed_cells_are_named(repo: Path) -> None:
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    _lock(notebook, repo)
    _edit(notebook, 2, "x = seed + 2\nx")
    (stale,) = check_locks([notebook])
    assert stale.status == "stale" and stale.changes == (CellChange(2, "changed", "code"),)
    _notebook(notebook, [*CELLS, "print('more')"])
    (added,) = check_locks([notebook])
    assert added.changes == (CellChange(4, "added", "code"),)
    _notebook(notebook, CELLS[:1])
    (removed,) = check_locks([notebook])
    assert removed.changes == (
        CellChange(2, "removed", "code"),
        CellChange(3, "removed", "code"),
    )


def test_markdown_edits_count(repo: Path) -> None:
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    _lock(notebook, repo)
    _edit(notebook, 0, "# Another title")
    assert check_locks([notebook])[0].changes == (CellChange(0, "changed", "markdown"),)


def test_a_folder_lists_notebooks_without_locks_and_orphan_locks(repo: Path) -> None:
    folder = repo / "notebooks"
    locked = _notebook(folder / "a.ipynb", CELLS)
    _lock(locked, repo)
    _notebook(folder / "b.ipynb", CELLS)  # never recorded
    gone = _notebook(folder / "c.ipynb", CELLS)
    _lock(gone, repo)
    gone.unlink()
    (folder / "helper.py").write_text("def f():\n    return 1\n")  # a script, not a notebook
    (folder / "tool.py").write_text('MARK = "# %%"  # jupytext:\n')  # not a notebook either
    statuses = {Path(f.notebook).name: f.status for f in check_locks([folder])}
    assert statuses == {"a.ipynb": "current", "b.ipynb": "no_lock", "c.ipynb": "orphan"}


def test_a_lock_given_alone_checks_its_notebook(repo: Path) -> None:
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    lock = _lock(notebook, repo)
    _edit(notebook, 3, "print(x, x)")
    (found,) = check_locks([lock])
    assert found.status == "stale" and found.notebook == str(notebook)
    assert check_locks([notebook, lock]) == [found]  # each notebook once


def test_text_notebooks(repo: Path) -> None:
    notebook = repo / "notebooks" / "study.py"
    notebook.write_text(PERCENT)
    _lock(notebook, repo)
    assert check_locks([notebook])[0].status == "current"
    notebook.write_text(PERCENT.replace("y = 2", "y = 3"))
    assert check_locks([notebook])[0].changes == (CellChange(1, "changed", "code"),)


@pytest.mark.parametrize("declared_in", ["ipynb", "py"])
def test_a_pair_text_edited_and_not_synced_is_stale(repo: Path, declared_in: str) -> None:
    """Discovery takes a jupytext pair as its ``.ipynb``: an edit made in ``fit.py`` alone
    passed ``check .`` as current, while ``check fit.py`` said stale (a stranger's report)."""
    import jupytext

    notebook = _notebook(repo / "fit.ipynb", CELLS)
    node = jupytext.read(notebook)
    node.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    text = repo / "fit.py"
    text.write_text(jupytext.writes(node, "py:percent"))  # the pairing in its header
    if declared_in == "ipynb":
        jupytext.write(node, notebook)
        text.write_text(jupytext.writes(node, "py:percent").split("# ---\n", 2)[2].lstrip())
    _lock(notebook, repo)
    assert [f.status for f in check_locks([repo])] == ["current"]
    text.write_text(text.read_text().replace("x = seed + 1", "x = seed + 2"))
    found = check_locks([repo])
    assert [(Path(f.notebook).name, f.status) for f in found] == [
        ("fit.ipynb", "current"),
        ("fit.py", "stale"),
    ]
    assert found[1].changes == (CellChange(2, "changed", "code"),)
    assert [f.status for f in check_locks([notebook])] == ["current", "stale"]


def _synced_pair(repo: Path) -> tuple[Path, Path]:
    """``fit.ipynb`` whose cells end in a line break (as nbformat and many editors write
    them) and ``fit.py``, its pair as ``jupytext --sync`` writes it, which jupytext reads
    back without that line break (how much of a cell's end it keeps depends on the format)."""
    import jupytext

    notebook = _notebook(repo / "fit.ipynb", [f"{source}\n" for source in CELLS])
    node = jupytext.read(notebook)
    node.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    jupytext.write(node, notebook)
    text = repo / "fit.py"
    jupytext.write(node, text, fmt="py:percent")
    assert jupytext.read(text).cells[2].source == CELLS[1]  # read back without them
    return notebook, text


def test_a_pair_just_synced_is_current_though_jupytext_drops_a_line_break(repo: Path) -> None:
    """A pair fresh from ``jupytext --sync`` was reported stale by ``check .`` and ``check
    fit.py``, and ``verify fit.py`` warned that its source changed: the text's cells lack
    the line break that ends the ``.ipynb``'s, so their digests differ."""
    from reprokit.recording.lock import check_source, read_lock

    notebook, text = _synced_pair(repo)
    lock = _lock(notebook, repo)
    assert [f.status for f in check_locks([repo])] == ["current"]
    assert [f.status for f in check_locks([text])] == ["current"]
    assert check_source(read_lock(lock), text) == []
    text.write_text(text.read_text().replace("print(x)", "print(x + 1)"))
    (stale,) = check_locks([text])
    assert stale.changes == (CellChange(3, "changed", "code"),)  # only the edited cell


def test_run_and_verify_warn_of_a_pair_text_edited_after_its_ipynb(repo: Path) -> None:
    """``run``/``record``/``verify fit.ipynb`` ran the ``.ipynb`` silently while ``fit.py``
    held newer edits (what Jupyter with jupytext would have run)."""
    from reprokit.api.check import warn_edited_pairs
    from reprokit.exceptions import ReprokitWarning

    notebook, text = _synced_pair(repo)
    later = notebook.stat().st_mtime + 10
    os.utime(text, (later, later))  # synced, and the text written last: nothing to say
    with warnings.catch_warnings(record=True) as caught:
        warn_edited_pairs([notebook])
    assert [str(w.message) for w in caught] == []
    text.write_text(text.read_text().replace("print(x)", "print(x + 1)"))
    os.utime(text, (later, later))
    with pytest.warns(ReprokitWarning) as caught:
        warn_edited_pairs([notebook, text])  # the text itself, given too, is no pair
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{text}, the jupytext pair of {notebook}, was saved after it")
    assert "cell(s) 4:" in message and f"jupytext --sync {notebook}" in message
    os.utime(notebook, (later + 10, later + 10))  # the .ipynb is the newer: it is the one run
    with warnings.catch_warnings(record=True) as caught:
        warn_edited_pairs([notebook])
    assert [str(w.message) for w in caught] == []


def test_a_readme_with_a_percent_code_block_needs_no_lock(repo: Path) -> None:
    """The pre-commit hook passes a changed README: a ``# %%`` in a code block does not make it
    a notebook that needs a lock (the same rule as ``run``'s discovery)."""
    readme = repo / "notebooks" / "README.md"
    readme.write_text("# Notebooks\n\nCells look like this:\n\n```python\n# %%\nx = 1\n```\n")
    assert check_locks([readme]) == []
    assert check_locks([repo / "notebooks"]) == []
    assert _check("--require-lock", "notebooks/README.md") == (0, "")
    assert _check("--require-lock", "notebooks") == (0, "")
    study = repo / "notebooks" / "study.py"
    study.write_text(PERCENT)
    code, out = _check("--require-lock", "notebooks/README.md", "notebooks/study.py")
    assert code == 1 and "notebooks/study.py" in out and "README" not in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_lock_that_is_no_regular_file_inside_the_project_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    """As ``verify`` refuses it: a FIFO is not taken for "no lock", and a link leading out of
    the project is refused without reading what it leads to (a valid lock, here)."""
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    lock = _lock(notebook, repo)
    inside = repo / "locks" / "fig.repro.json"
    inside.parent.mkdir()
    lock.rename(inside)
    lock.symlink_to(inside)  # a link that stays inside the project is followed
    assert _check("notebooks/fig.ipynb") == (0, "")
    outside = tmp_path / "elsewhere" / "fig.repro.json"
    outside.parent.mkdir()
    inside.rename(outside)
    lock.unlink()
    lock.symlink_to(outside)
    for command in ("check", "verify"):
        out = CliRunner().invoke(main, [command, "notebooks/fig.ipynb"])
        assert (out.exit_code, out.output) == (
            2,
            f"reprokit: error: notebooks/fig.repro.json: leads outside {repo} (to {outside}); "
            "refused\n",
        )
    lock.unlink()
    os.mkfifo(lock)
    assert _check("notebooks/fig.ipynb") == (
        2,
        "reprokit: error: notebooks/fig.repro.json: not a regular file (a FIFO, device or "
        "socket); refused\n",
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_lines(repo: Path) -> None:
    folder = repo / "notebooks"
    notebook = _notebook(folder / "fig.ipynb", CELLS)
    _lock(notebook, repo)
    assert _check() == (0, "")
    code, out = _check("-v", "notebooks")
    assert (code, out) == (0, "current  notebooks/fig.ipynb\n")
    _edit(notebook, 2, "x = 3")
    code, out = _check("notebooks")
    assert code == 1
    assert (
        "stale    notebooks/fig.ipynb: cell 3 (code) changed since notebooks/fig.repro.json "
        "was recorded"
    ) in out
    assert "1 of 1 notebook(s) need their lock re-recorded" in out


def test_cli_no_lock_is_a_warning_unless_required(repo: Path) -> None:
    _notebook(repo / "notebooks" / "draft.ipynb", CELLS)
    code, out = _check("notebooks")
    assert code == 0 and "no lock  notebooks/draft.ipynb (warning: no draft.repro.json)" in out
    code, out = _check("--require-lock", "notebooks")
    assert code == 1 and "(error: no draft.repro.json)" in out


def test_cli_bad_input_is_one_line_exit_2(repo: Path) -> None:
    code, out = _check("missing.ipynb")
    assert code == 2 and out == "reprokit: error: missing.ipynb: no such notebook or folder\n"
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    lock = _lock(notebook, repo)
    lock.write_text("{not json")
    code, out = _check("notebooks")
    assert code == 2 and out.startswith(f"reprokit: error: {lock.relative_to(repo)}")
    assert "Traceback" not in out
    lock.unlink()
    notebook.write_text("not a notebook")
    code, out = _check("notebooks/fig.ipynb")
    assert code == 2 and "notebooks/fig.ipynb: not a notebook" in out


# ------------------------------------------------------------------- real git + pre-commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _hook_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPROKIT_DEVICE")
    }
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
    }  # fmt: skip


def _run(args: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=root, env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pre_commit_hook_refuses_a_stale_lock_until_re_recorded(
    repo: Path, tmp_path: Path, mlflow_template_db: Path
) -> None:
    pytest.importorskip("pre_commit")
    shutil.copy(mlflow_template_db, repo / "mlflow.db")
    (repo / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.reprokit/\n")
    shutil.copy(ROOT / "examples" / "pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    notebook = _notebook(repo / "notebooks" / "fig.ipynb", CELLS)
    env = _hook_env(tmp_path)
    record = [sys.executable, "-m", "reprokit", "record", "notebooks/fig.ipynb", "--device", "cpu"]
    assert _run(record, repo, env).returncode == 0
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "paper")

    _edit(notebook, 2, "x = seed + 2\nx")  # code changed, lock not re-recorded
    _git(repo, "add", "notebooks/fig.ipynb")
    refused = _run([sys.executable, "-m", "pre_commit", "run"], repo, env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "stale    notebooks/fig.ipynb: cell 3 (code) changed" in refused.stdout

    assert _run(record, repo, env).returncode == 0  # re-recorded: the hook lets it through
    executed = json.loads(notebook.read_text())  # and outputs or metadata edits do not count
    executed["metadata"]["reprokit_note"] = "edited"
    notebook.write_text(json.dumps(executed))
    _git(repo, "add", "notebooks")
    accepted = _run([sys.executable, "-m", "pre_commit", "run"], repo, env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "reprokit locks are current" in accepted.stdout and "Passed" in accepted.stdout


def test_hook_manifest_and_example_config_agree() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    config = yaml.safe_load((ROOT / "examples" / "pre-commit-config.yaml").read_text())
    (local,) = config["repos"][0]["hooks"]
    assert hook["id"] == local["id"] == "reprokit-check-locks"
    assert hook["entry"] == local["entry"] == "reprokit check"
    assert hook["files"] == local["files"]
    pattern = re.compile(hook["files"])
    wanted = ["a/fig.ipynb", "study.py", "notes.md", "a/fig.repro.json"]
    assert all(pattern.search(name) for name in wanted)
    assert not any(pattern.search(name) for name in ["data.csv", "fig.repro/w.npy", "x.json"])


def test_cli_orphan_locks_are_counted_apart_with_their_fix(repo: Path) -> None:
    folder = repo / "notebooks"
    _lock(_notebook(folder / "fig.ipynb", CELLS), repo)
    gone = _notebook(folder / "rng.ipynb", CELLS)
    _lock(gone, repo)
    gone.rename(folder / "random_gen.ipynb")  # renamed without its lock
    code, out = _check("notebooks")
    assert code == 1
    assert "need their lock re-recorded" not in out  # no notebook needs `record`
    assert "1 lock(s) without their notebook: delete the lock" in out
    assert "reprokit verify NEW --lock OLD --renamed" in out
    _edit(folder / "fig.ipynb", 2, "x = 3")
    code, out = _check("notebooks")
    # the orphan is no notebook: fig and random_gen are the two notebooks
    assert "1 of 2 notebook(s) need their lock re-recorded" in out


# ----------------------------------------------------------------------------- moved notebooks


def test_a_notebook_moved_with_its_lock_is_checked_with_a_warning(repo: Path) -> None:
    """Moved (``mv nb.ipynb nb.repro.json analysis/``) and not re-recorded, nothing said that
    the lock's paths (its notebook's, its data's) were for another folder."""
    _lock(_notebook(repo / "notebooks" / "fig.ipynb", CELLS), repo)
    (repo / "analysis").mkdir()
    for name in ("fig.ipynb", "fig.repro.json"):
        (repo / "notebooks" / name).rename(repo / "analysis" / name)
    warning = (
        "reprokit: warning: analysis/fig.ipynb: its lock fig.repro.json was recorded for "
        "notebooks/fig.ipynb, not analysis/fig.ipynb (moved without re-recording?)"
    )
    for given in (".", "analysis/fig.repro.json"):
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # the same line twice from one place: shown twice
            code, out = _check(given)
        assert code == 0 and "orphan" not in out, out
        (line,) = [line for line in out.splitlines() if "warning" in line]
        assert line.startswith(warning) and line.endswith("reprokit record analysis/fig.ipynb")


def test_a_project_copied_whole_or_without_its_marker_is_not_called_moved(
    repo: Path, tmp_path: Path
) -> None:
    from reprokit.recording.lock import moved_since_recorded, read_lock

    lock_path = _lock(_notebook(repo / "notebooks" / "fig.ipynb", CELLS), repo)
    lock = read_lock(lock_path)
    copy = Path(shutil.copytree(repo, tmp_path / "elsewhere" / "paper"))
    assert moved_since_recorded(lock, copy / "notebooks" / "fig.ipynb", copy) is None
    # a copy whose root was not found (no pyproject.toml): the notebook's folder is the root
    notebooks = copy / "notebooks"
    assert moved_since_recorded(lock, notebooks / "fig.ipynb", notebooks) is None
    assert moved_since_recorded(lock, copy / "a" / "fig.ipynb", copy) == "a/fig.ipynb"
    (copy / "pyproject.toml").unlink()
    (tmp_path / "elsewhere" / "pyproject.toml").write_text("")  # the root above: still found
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out = _check(str(copy))
    assert code == 0 and "warning" not in out, out
