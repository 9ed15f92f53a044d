"""``reprokit diff`` and ``reprokit record --from-run`` against a real SQLite MLflow store.

One project is recorded once (a kernel) and verified once with another parameter (a second
kernel, a second MLflow run); every test reads those back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import mlflow_client, tracking_uri
from run_helpers import demo_project, reprokit_cli, write_notebook

from reprokit.api.diff import Diff, diff
from reprokit.api.record import record, record_from_run
from reprokit.api.verify import verify
from reprokit.compare.envdiff import EnvChange
from reprokit.exceptions import UsageError
from reprokit.options import ComparisonOptions
from reprokit.recording.lock import read_lock

pytestmark = pytest.mark.filterwarnings("ignore:PYTHONHASHSEED", "ignore:.*source changed")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> dict[str, str]:
    project = demo_project(tmp_path_factory.mktemp("diff"), mlflow_template_db)
    write_notebook(
        project / "analysis.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0 --data data/",
            "import numpy as np\nimport reprokit\n"
            "values = np.loadtxt('data/values.csv')\n"
            "reprokit.result('total', float(values.sum() * scale), rtol=1e-9)\n"
            "reprokit.result('weights', np.linspace(0, 1, 20_000) * scale, rtol=1e-9)\n"
            "reprokit.result('count', len(values))",
            "print('done')",
        ],
        parameters="scale = 1.0",
    )
    with pytest.MonkeyPatch.context() as patch:  # a module fixture: undone at its end
        patch.setenv("REPROKIT_CACHE_DIR", str(project.parent / "hash-cache"))
        patch.chdir(project)
        (outcome,) = record([project / "analysis.ipynb"], parameters={"scale": 2.0})
        assert outcome.lock_path is not None, outcome.run
        (checked,) = verify([project / "analysis.ipynb"], parameters={"scale": 3.0})
        assert checked.status == "not_reproduced"
    assert outcome.run.run_id and checked.run and checked.run.run_id
    return {
        "project": str(project),
        "lock": outcome.lock_path,
        "reference": outcome.run.run_id,
        "verification": checked.run.run_id,
        "executed": checked.run.output_path,
    }


@pytest.fixture
def in_project(recorded: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(recorded["project"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Path(recorded["project"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # in_project has removed MLFLOW_TRACKING_URI: the project's own store is used
    return reprokit_cli(*args, cwd=cwd, timeout=120)


def test_lock_against_its_own_reference_run_is_the_same(
    recorded: dict[str, str], in_project: Path
) -> None:
    found = diff(recorded["lock"], recorded["reference"])
    assert (found.a.kind, found.b.kind) == ("lock", "run")
    assert {c.name: c.status for c in found.verdict.checks} == {
        "count": "reproduced",
        "total": "reproduced",
        "weights": "reproduced",  # by reference in both: the run's array file was downloaded
    }
    assert found.verdict.env_diff is not None and found.verdict.env_diff.is_empty
    assert found.verdict.data is not None and found.verdict.data.ok
    assert not found.differs


def test_the_runners_mlflow_runs_profile_the_data_folder_with_its_files(
    recorded: dict[str, str], in_project: Path
) -> None:
    """The notebook's output carries a summary without file lists; the run's dataset input
    still counts the folder's files (from the kernel's run folder)."""
    from mlflow.tracking import MlflowClient

    files = sum(1 for path in (in_project / "data").rglob("*") if path.is_file())
    client = MlflowClient(tracking_uri(in_project))
    for run_id in (recorded["reference"], recorded["verification"]):
        (dataset_input,) = client.get_run(run_id).inputs.dataset_inputs
        assert json.loads(dataset_input.dataset.profile)["files"] == files > 0


def test_two_runs_name_the_results_that_differ_and_exit_one(
    recorded: dict[str, str], in_project: Path
) -> None:
    done = _cli(
        "diff", recorded["reference"], recorded["verification"], "--json", "d.json", cwd=in_project
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"A: MLflow run {recorded['reference']} (run)" in done.stdout
    assert "DIFFERS: 2 of 3 result(s) differ" in done.stdout
    assert "Downloading artifacts" not in done.stderr  # MLflow's progress bars are silenced
    document = json.loads((in_project / "d.json").read_text())
    statuses = {c["name"]: c["status"] for c in document["verdict"]["checks"]}
    assert statuses == {"count": "reproduced", "total": "differs", "weights": "differs"}
    # a tolerance given on the command line applies to every result
    assert not diff(
        recorded["reference"], recorded["verification"], comparison=ComparisonOptions(rtol=1.0)
    ).differs


def test_lock_against_an_executed_notebook(recorded: dict[str, str], in_project: Path) -> None:
    found = diff(recorded["lock"], recorded["executed"])
    assert found.b.kind == "notebook"
    assert {c.name for c in found.verdict.checks if c.status == "differs"} == {"total", "weights"}


def test_lock_against_the_current_environment_rehashes_its_data(
    recorded: dict[str, str], in_project: Path, tmp_path: Path
) -> None:
    found = diff(recorded["lock"])
    assert found.b.kind == "environment" and not found.results_compared
    assert found.verdict.checks == ()
    assert found.verdict.data is not None and found.verdict.data.ok
    env = found.verdict.env_diff
    assert env is not None
    # numpy was imported by the notebook, so it is imported for the comparison too: its BLAS
    # thread pool is not reported as gone (this test process may have loaded more pools);
    # seeds are what the notebook sets, not a change
    assert all(change.change != "removed" for change in env.in_category("blas"))
    assert not env.in_category("seeds")
    copy = Path(shutil.copytree(in_project, tmp_path / "copy"))
    (copy / "data" / "values.csv").write_text("1\n2\n4\n")
    done = _cli("diff", "analysis.ipynb", cwd=copy)
    assert done.returncode == 1
    assert "data: 1 path(s), 1 changed" in done.stdout
    assert "changed: values.csv" in done.stdout


def test_a_notebook_importing_torch_after_its_start_is_locked_with_torch(
    tmp_path: Path, mlflow_template_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``%repro end``: the runner's settling call takes the GPU/CUDA facts again before it
    stops the kernel; the lock restores them with the data file lists; diffing it against
    this environment does not report torch as gone (its snapshot's imports are the start's)."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")

    project = demo_project(tmp_path, mlflow_template_db)
    write_notebook(
        project / "late.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0 --data data/",
            "import torch\nimport reprokit\nreprokit.result('t', float(torch.ones(3).sum()))",
        ],
    )
    monkeypatch.chdir(project)
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))
    (outcome,) = record([project / "late.ipynb"])
    assert outcome.lock_path is not None, outcome.run
    lock = read_lock(outcome.lock_path)
    assert lock.snapshot.accelerator.torch_version == importlib.metadata.version("torch")
    assert lock.snapshot.accelerator.flags is not None
    assert lock.snapshot.data is not None and lock.snapshot.data.entries[0].files
    runner_tags = mlflow_client(tracking_uri(project)).get_run(outcome.run.run_id).data.tags
    assert runner_tags["reprokit.torch"] == lock.snapshot.accelerator.torch_version
    (checked,) = verify([project / "late.ipynb"])
    env = checked.verdict.env_diff if checked.verdict else None
    assert env is not None and not env.in_category("accelerator") + env.in_category("numerics")
    done = _cli("diff", outcome.lock_path, cwd=project)  # a process that has no torch yet
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAME" in done.stdout and "torch" not in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nothing.repro.json",), "not a lock, a notebook, an MLflow run id or 'current'"),
        (("current",), "the first side of a diff is the reference"),
        (("data",), "a folder"),
        (("0123456789abcdef0123456789abcdef",), "not found"),
    ],
)
def test_bad_sides_are_usage_errors(
    recorded: dict[str, str], in_project: Path, args: tuple[str, ...], message: str
) -> None:
    if args[0].startswith("0123"):
        args = (recorded["lock"], *args)
    done = _cli("diff", *args, cwd=in_project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_record_from_run_rebuilds_the_lock(
    recorded: dict[str, str], in_project: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(in_project, tmp_path / "copy"))
    original = (copy / "analysis.repro.json").read_text()
    shutil.rmtree(copy / "analysis.repro")
    (copy / "analysis.repro.json").unlink()
    done = _cli("record", "--from-run", recorded["reference"], "analysis.ipynb", cwd=copy)
    assert done.returncode == 0, done.stdout + done.stderr
    rebuilt = json.loads((copy / "analysis.repro.json").read_text())
    expected = json.loads(original)
    for document in (rebuilt, expected):
        document.pop("created_at")
    assert rebuilt == expected  # parameters, results, fingerprints, data, run id: all the same
    lock = read_lock(copy / "analysis.repro.json")
    assert lock.parameters.values == {"scale": 2.0}  # exact JSON value, not MLflow's text
    assert (copy / lock.results["weights"].array.file).is_file()  # type: ignore[union-attr]


def test_record_from_run_refuses_a_notebook_whose_source_changed(
    recorded: dict[str, str], in_project: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(in_project, tmp_path / "copy"))
    write_notebook(copy / "analysis.ipynb", ["print('another notebook')"], parameters="scale = 1.0")
    with pytest.raises(
        UsageError, match=r"source differs from the notebook MLflow run .* \(cells 2, 3, 4\)"
    ):
        record_from_run(recorded["reference"], notebook=copy / "analysis.ipynb")
    done = _cli("record", "--from-run", "f" * 32, cwd=copy)
    assert done.returncode == 2 and "MLflow run ffff" in done.stderr and "not found" in done.stderr


def _bad_input_project(tmp_path: Path) -> Path:
    """A project holding every kind of unreadable side: JSON that is not a notebook, a
    notebook whose cells are not a list, FIFOs named as a lock, a notebook, a notebook's lock."""
    import os

    project = tmp_path / "bad"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    (project / "list.ipynb").write_text("[]")
    (project / "badcells.ipynb").write_text(
        '{"cells": "x", "nbformat": 4, "nbformat_minor": 5, "metadata": {}}'
    )
    write_notebook(project / "nb.ipynb", ["print(1)"])
    for fifo in ("pipe.repro.json", "fifo.ipynb", "nb.repro.json"):
        os.mkfifo(project / fifo)
    return project


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize(
    ("side", "message"),
    [
        ("list.ipynb", "list.ipynb: not a valid notebook"),
        ("badcells.ipynb", "badcells.ipynb: not a valid notebook"),
        ("pipe.repro.json", "pipe.repro.json: not a regular file"),
        ("fifo.ipynb", "fifo.ipynb: not a regular file"),
        ("nb.ipynb", "nb.repro.json: not a regular file"),  # its lock, not "no lock beside it"
    ],
)
def test_unreadable_sides_are_one_line_and_exit_two(
    tmp_path: Path, side: str, message: str
) -> None:
    """``diff`` reads notebooks and locks with the checked loaders of run/record/verify: a
    traceback and exit 1 were printed for a malformed notebook, and a FIFO hung for ever."""
    project = _bad_input_project(tmp_path)
    done = reprokit_cli("diff", side, cwd=project, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"reprokit: error: {message}")
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback


def _git(root: Path, *args: str) -> None:
    config = ("-c", "user.name=t", "-c", "user.email=t@example.org")
    subprocess.run(["git", *config, *args], cwd=root, check=True, capture_output=True)


def test_the_commit_that_adds_the_lock_is_not_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded, then committed with its lock as the docs say: ``diff LOCK`` said the code
    changed (the lock holds the commit before its own) and exited 1 in every project. The
    commit is a note while the notebook's source is the lock's; an edit counts, committed or
    not."""
    import nbformat
    from lock_helpers import make_project, scalar_results
    from lock_helpers import record as write_lock_of

    project = make_project(tmp_path)
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))
    _git(project.root, "init", "-q")
    _git(project.root, "add", ".")
    _git(project.root, "commit", "-qm", "notebook")
    write_lock_of(project, scalar_results())
    _git(project.root, "add", ".")
    _git(project.root, "commit", "-qm", "its lock")

    found = diff(project.lock_path)
    env = found.verdict.env_diff
    assert env is not None and not env.in_category("git"), env
    assert [note.key for note in env.notes] == ["commit"]
    assert not found.differs
    done = _cli("diff", str(project.lock_path), cwd=project.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAME" in done.stdout and "not counted" in done.stdout
    assert "the code changed" not in done.stdout

    node = nbformat.read(project.notebook, as_version=4)
    node.cells[1].source = "import numpy as np  # edited"
    nbformat.write(node, project.notebook)
    edited = diff(project.lock_path)  # uncommitted
    assert {c.key for c in _git_changes(edited)} == {"commit", "dirty"}
    assert edited.verdict.source_changes == (1,) and edited.differs
    _git(project.root, "commit", "-qam", "edit")
    committed = diff(project.lock_path)
    (commit,) = _git_changes(committed)
    assert commit.key == "commit" and commit.hint.startswith("the code changed")
    assert committed.differs


def _git_changes(found: Diff) -> tuple[EnvChange, ...]:
    assert found.verdict.env_diff is not None
    return found.verdict.env_diff.in_category("git")
