"""The plain-function API against a real SQLite MLflow store, in-process."""

from __future__ import annotations

import json
import math
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import mlflow_client, only_run, tracking_uri

from reprokit.api import session
from reprokit.exceptions import DigestMismatchError, PathError, ReprokitWarning, UsageError
from reprokit.results import ResultValueError

pytestmark = pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")


def artifact_names(uri: str, run_id: str, path: str = "reprokit") -> set[str]:
    return {Path(a.path).name for a in mlflow_client(uri).list_artifacts(run_id, path)}


def test_start_result_end_records_a_finished_run(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("a,b\n1,2\n")
    session.start(experiment="exp", run_name="first", seed=3, data=["data"])
    session.result("acc", 0.93, rtol=1e-3)
    session.result("table", {"k": [1, 2]})
    ended = session.end()
    assert ended.status == "FINISHED" and ended.errors == ()
    run = only_run(tracking_uri(project), "exp")
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.params["seed"] == "3" and run.data.params["deterministic"] == "false"
    assert run.data.metrics == {"acc": 0.93}
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["reprokit.seed"] == "3"
    assert "reprokit" in tags["mlflow.note.content"] and "| seed | 3" in tags["mlflow.note.content"]
    assert run.info.artifact_uri.startswith((project / "mlartifacts" / "exp").as_uri())
    names = artifact_names(tracking_uri(project), run.info.run_id)
    assert {"snapshot.json", "requirements.txt", "results.json", "data.json"} <= names
    assert session.flush(timeout=60)
    (folder,) = (project / ".reprokit" / "runs").iterdir()
    written = json.loads((folder / "snapshot.json").read_text())["data"]["entries"]
    assert [f["path"] for f in written[0]["files"]] == ["x.csv"]


def test_gpu_facts_are_taken_again_as_the_run_ends(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook imports torch and starts CUDA after ``%repro start``: its run still names
    the torch, CUDA and cuDNN that ran it."""
    from reprokit.capturing import accelerator
    from reprokit.capturing.model import AcceleratorInfo, GpuDevice

    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("a\n1\n")
    session.start(experiment="exp", data=["data"])
    later = AcceleratorInfo(
        available=True,
        source="torch+nvml",
        torch_version="2.11.0",
        cuda_runtime="13.0",
        cudnn_version="9.19.0",
        driver_version="580.159.04",
        devices=(GpuDevice(index=0, name="NVIDIA H200"),),
    )
    monkeypatch.setattr(accelerator, "collect_accelerator", lambda: later)
    assert session.end().errors == ()
    tags = only_run(tracking_uri(project), "exp").data.tags
    assert (tags["reprokit.torch"], tags["reprokit.cuda"]) == ("2.11.0", "13.0")
    assert (tags["reprokit.cudnn"], tags["reprokit.gpu"]) == ("9.19.0", "NVIDIA H200")
    assert session.flush(timeout=60)
    (folder,) = (project / ".reprokit" / "runs").iterdir()
    written = json.loads((folder / "snapshot.json").read_text())
    assert written["accelerator"]["torch_version"] == "2.11.0"
    assert [f["path"] for f in written["data"]["entries"][0]["files"]] == ["x.csv"]


def test_data_declared_after_the_start_writes_every_input_to_data_json(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("a,b\n1,2\n")
    (project / "f.txt").write_text("hello")
    session.start(experiment="exp", data=["data"])
    session.data("f.txt")
    session.end()
    assert session.flush(timeout=60)  # the run folder's files are written in the background
    (folder,) = (project / ".reprokit" / "runs").iterdir()
    entries = json.loads((folder / "data.json").read_text())["entries"]
    assert [e["path"] for e in entries] == ["data", "f.txt"]
    assert [f["path"] for f in entries[0]["files"]] == ["x.csv"]


def test_dirty_git_work_tree_is_tagged_and_its_diff_uploaded(project: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    (project / "train.py").write_text("print(1)\n")
    git("init", "-q", "-b", "main")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "init")
    canary = "ghp_" + "CANARYdiff1234567890abcdefghij"
    (project / "train.py").write_text(f"print(2)\nTOKEN = {canary!r}\n")
    session.start(experiment="exp")
    session.end()
    run = only_run(tracking_uri(project), "exp")
    assert run.data.tags["mlflow.source.git.branch"] == "main"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert run.data.tags["reprokit.dirty"] == "true"
    assert "git.diff" in artifact_names(tracking_uri(project), run.info.run_id)
    # the uploaded diff is redacted: a credential in an uncommitted edit never leaves
    uploaded = mlflow_client(tracking_uri(project)).download_artifacts(
        run.info.run_id, "reprokit/git.diff", str(project / "dl")
    )
    text = Path(uploaded).read_text()
    assert "+print(2)" in text
    assert "CANARYdiff" not in text


def test_recording_does_not_disturb_the_seeded_random_stream(project: Path) -> None:
    import random

    random.seed(0)
    expected = [random.random() for _ in range(3)]
    session.start(experiment="exp", seed=0)
    assert session.flush(timeout=60)  # the run exists in MLflow: its name has been chosen
    assert [random.random() for _ in range(3)] == expected
    session.end()


def test_secret_looking_params_are_redacted(project: Path) -> None:
    canary = "ghp_" + "CANARYparam1234567890abcdefghij"
    session.start(experiment="exp", params={"api_token": "plain", "note": canary, "lr": 0.1})
    session.end()
    params = only_run(tracking_uri(project), "exp").data.params
    assert params["lr"] == "0.1"
    assert params["api_token"] == "<redacted>"
    assert canary not in params["note"]


def test_data_inputs_carry_the_full_digest(project: Path) -> None:
    (project / "d.bin").write_bytes(b"\x00" * 1000)
    session.start(experiment="exp", data=["d.bin"])
    ended = session.end()
    run = only_run(tracking_uri(project), "exp")
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    source, profile = json.loads(dataset.source), json.loads(dataset.profile)
    full = source["digest"]
    assert full.startswith("blake3:") and len(full) == len("blake3:") + 64
    assert profile["digest"] == full and profile["size"] == 1000
    assert full.split(":")[1].startswith(dataset.digest) and len(dataset.digest) > 8
    assert source["uri"] == (project / "d.bin").as_uri()
    assert ended.data == ("d.bin",)


def test_result_before_start_starts_a_run_and_says_so(project: Path) -> None:
    with pytest.warns(ReprokitWarning, match=r"before reprokit.start\(\)"):
        session.result("x", 1)
    assert session.status().active
    session.end()
    run = only_run(tracking_uri(project), project.name)
    assert run.data.metrics == {"x": 1.0}


def test_a_name_declared_twice_keeps_the_later_value(project: Path) -> None:
    session.start(experiment="exp")
    session.result("acc", 0.5)
    with pytest.warns(ReprokitWarning, match="'acc' was declared before"):
        session.result("acc", 0.75)
    assert session.results()["acc"].value == 0.75
    session.end()
    run = only_run(tracking_uri(project), "exp")
    assert run.data.metrics["acc"] == 0.75
    history = mlflow_client(tracking_uri(project)).get_metric_history(run.info.run_id, "acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0.5, 0.75]


def test_names_mlflow_would_change_keep_a_metric_each(project: Path) -> None:
    names = ["\u03b1", "\u03b2", "a\tb", "a_b", "x" * 251, "x" * 252]
    session.start(experiment="exp")
    for number, name in enumerate(names):
        session.result(name, float(number))
    session.end()
    metrics = only_run(tracking_uri(project), "exp").data.metrics
    assert sorted(metrics.values()) == [float(n) for n in range(len(names))]
    assert metrics["a_b"] == 3.0  # a name MLflow takes keeps its key


def test_unrecordable_value_is_a_clear_error_and_the_run_goes_on(project: Path) -> None:
    session.start(experiment="exp")
    with pytest.raises(ResultValueError, match=r"'model'.*object"):
        session.result("model", object())
    session.result("ok", 1.0)
    assert session.end().status == "FINISHED"  # no cell failed: only a Python call raised


def test_nan_and_inf_are_stored_faithfully(project: Path) -> None:
    session.start(experiment="exp")
    session.result("nan", math.nan)
    session.result("inf", math.inf)
    session.result("vec", [1.0, -math.inf])
    ended = session.end()
    run = only_run(tracking_uri(project), "exp")
    assert math.isnan(run.data.metrics["nan"])
    saved = json.loads(Path(ended.local_dir or "", "results.json").read_text())
    assert saved["nan"]["value"] == {"$float": "NaN"}
    assert saved["inf"]["value"] == {"$float": "Infinity"}
    assert saved["vec"]["value"] == [1.0, {"$float": "-Infinity"}]


def test_an_int_beyond_the_float_range_is_recorded_without_a_metric(project: Path) -> None:
    session.start(experiment="exp")
    session.result("big", 10**400)
    session.result("acc", 0.5)
    ended = session.end()
    assert ended.status == "FINISHED" and ended.errors == ()
    assert only_run(tracking_uri(project), "exp").data.metrics == {"acc": 0.5}
    saved = json.loads(Path(ended.local_dir or "", "results.json").read_text())
    assert saved["big"]["value"] == 10**400


def test_many_results_are_batched_into_one_run(project: Path) -> None:
    session.start(experiment="exp")
    for i in range(1500):
        session.result(f"m{i}", float(i))
    session.end()
    run = only_run(tracking_uri(project), "exp")
    assert len(run.data.metrics) == 1500 and run.data.metrics["m1499"] == 1499.0


def test_large_array_is_uploaded_beside_the_results(project: Path) -> None:
    session.start(experiment="exp")
    session.result("weights", np.ones((300, 300)), atol=1e-6)
    declared = session.results()["weights"]
    assert declared.array is not None and declared.array.file is not None
    session.end()
    run = only_run(tracking_uri(project), "exp")
    arrays = artifact_names(tracking_uri(project), run.info.run_id, "reprokit/arrays")
    assert Path(declared.array.file).name in arrays


def test_starting_again_ends_the_previous_run(project: Path) -> None:
    session.start(experiment="exp", run_name="a")
    session.start(experiment="exp", run_name="b")
    session.end()
    client = mlflow_client(tracking_uri(project))
    experiment = client.get_experiment_by_name("exp")
    runs = {r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])}
    logs = [p.read_text() for p in (project / ".reprokit").rglob("*.writer.log")]
    assert runs == {"a": "FINISHED", "b": "FINISHED"}, logs  # a writer's log says why not


def test_end_status_can_be_given_and_is_validated(project: Path) -> None:
    session.start(experiment="exp")
    with pytest.raises(UsageError):
        session.end(status="DONE")
    assert session.end(status="killed").status == "KILLED"
    assert only_run(tracking_uri(project), "exp").info.status == "KILLED"


def test_end_without_a_run_warns(project: Path) -> None:
    with pytest.warns(ReprokitWarning, match="no reprokit run is active"):
        assert not session.end().active


def test_seed_before_start_is_recorded_by_the_next_run(project: Path) -> None:
    record = session.seed(7)
    assert record.seed == 7
    session.start(experiment="exp")
    assert session.status().seed == 7
    session.seed(8)
    session.end()
    run = only_run(tracking_uri(project), "exp")
    assert run.data.params["seed"] == "7"  # params cannot change: the first seed stays
    assert run.data.tags["reprokit.seed"] == "8"  # the tag says the latest


def test_data_with_matching_expectation_is_added(project: Path) -> None:
    from reprokit.capturing.hashing import hash_path

    (project / "f.txt").write_text("hello")
    digest = hash_path(project / "f.txt", algorithm="sha256").tagged_digest
    session.start(experiment="exp")
    manifest = session.data("f.txt", expect=digest)
    assert manifest.entries[0].algorithm == "sha256"
    session.end()
    run = only_run(tracking_uri(project), "exp")
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["f.txt"]


def test_data_mismatch_raises_naming_the_path_and_adds_nothing(project: Path) -> None:
    (project / "f.txt").write_text("hello")
    session.start(experiment="exp")
    with pytest.raises(DigestMismatchError, match=r"f\.txt"):
        session.data("f.txt", expect="sha256:" + "0" * 64)
    assert session.status().data == ()


def test_data_paths_may_be_bytes_and_other_types_are_refused(project: Path) -> None:
    (project / "f.txt").write_text("hello")
    (project / "g.txt").write_text("world")
    session.start(experiment="exp", data=[b"g.txt"])
    manifest = session.data(b"f.txt")  # decoded as the file system does: os.fsdecode
    assert [e.path for e in manifest.entries] == ["f.txt"]
    assert session.status().data == ("g.txt", "f.txt")
    with pytest.raises(UsageError, match=r"^a data path must be a str, bytes or os\.PathLike"):
        session.data(3)  # type: ignore[arg-type]
    assert session.end().status == "FINISHED"


def test_data_argument_errors(project: Path) -> None:
    session.start(experiment="exp")
    with pytest.raises(UsageError):
        session.data()
    with pytest.raises(UsageError, match="one per path"):
        session.data("a", "b", expect="sha256:00")
    with pytest.raises(PathError):
        session.data("missing.txt")


def test_start_with_missing_data_raises_and_records_nothing(project: Path) -> None:
    with pytest.raises(PathError, match="nope"):
        session.start(experiment="exp", data=["nope"])
    assert not session.status().active
    assert mlflow_client(tracking_uri(project)).get_experiment_by_name("exp") is None


def test_unwritable_store_warns_and_the_notebook_goes_on(project: Path) -> None:
    (project / "afile").write_text("")
    uri = f"sqlite:///{project}/afile/mlflow.db"
    with pytest.warns(ReprokitWarning, match=r"MLflow at sqlite:///.*afile/mlflow.db"):
        session.start(experiment="exp", tracking_uri=uri)
        session.result("x", 1.0)
        ended = session.end()
    assert ended.status == "FINISHED" and ended.errors
    assert Path(ended.local_dir or "", "results.json").is_file()  # the local copy is kept


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_warns_with_the_uri_and_no_credentials(project: Path) -> None:
    uri = f"http://alice:s3cret@127.0.0.1:{_free_port()}/"
    with pytest.warns(ReprokitWarning) as caught:
        session.start(experiment="exp", tracking_uri=uri)
        session.result("x", 1.0)
        ended = session.end()
    text = " ".join(str(w.message) for w in caught)
    assert "127.0.0.1" in text and "s3cret" not in text and "alice" not in text
    assert ended.tracking_uri is not None and "s3cret" not in ended.tracking_uri
    assert session.results()["x"].value == 1.0


def _ended_and_flushed(uri: str) -> tuple[bool, str]:
    """End a run recorded for ``uri`` and flush it: flush's answer, and every warning given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session.start(experiment="exp", tracking_uri=uri)
        session.result("x", 1.0)
        session.end()
        flushed = session.flush(120)
    return flushed, "\n".join(str(w.message) for w in caught if w.category is ReprokitWarning)


def test_flush_is_false_and_says_why_when_the_run_did_not_reach_mlflow(project: Path) -> None:
    """``flush`` returned True although the server was down (or the writer had died)."""
    uri = f"http://alice:s3cret@127.0.0.1:{_free_port()}/"
    flushed, text = _ended_and_flushed(uri)
    assert not flushed
    (line,) = [t for t in text.splitlines() if "did not reach MLflow" in t]
    assert f"at http://127.0.0.1:{uri.rsplit(':', 1)[1]}" in line and "s3cret" not in line
    assert "is kept: `reprokit sync` records it" in line
    journal = line.split("its journal ")[1].split(" is kept")[0]
    assert Path(journal).is_file()
    assert not session.status().recording and line in session.status().errors
    assert not session.flush(1)  # said once: the status holds it


def test_a_file_store_is_refused_at_the_start_and_by_flush(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MLFLOW_TRACKING_URI=./mlruns``: MLflow refuses it; nothing said but in a log."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    flushed, text = _ended_and_flushed("./mlruns")
    assert not flushed
    assert "the tracking URI ./mlruns is a file store, which MLflow" in text
    assert "did not reach MLflow at ./mlruns: " in text and "MLFLOW_ALLOW_FILE_STORE" in text


def test_params_from_argument_and_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROKIT_PARAMS", json.dumps({"lr": 0.1, "epochs": 3}))
    session.start(experiment="exp", params={"epochs": 5})
    session.end()
    params = only_run(tracking_uri(project), "exp").data.params
    assert (params["lr"], params["epochs"], params["device"]) == ("0.1", "5", "auto")


def test_bad_params_environment_is_a_usage_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROKIT_PARAMS", "[1, 2]")
    with pytest.raises(UsageError, match="REPROKIT_PARAMS"):
        session.start(experiment="exp")


def test_status_describes_the_active_run(project: Path) -> None:
    assert not session.status().active
    session.start(experiment="exp", seed=1)
    session.result("a", 1)
    state = session.status()
    assert state.active and state.status == "RUNNING"
    assert (state.experiment, state.seed, state.results) == ("exp", 1, ("a",))
    assert state.tracking_uri == tracking_uri(project)
    assert state.local_dir is not None and Path(state.local_dir).is_relative_to(project)


def test_run_folder_is_git_ignored(project: Path) -> None:
    session.start(experiment="exp")
    session.end()
    assert (project / ".reprokit" / ".gitignore").read_text() == "*\n"


def test_output_dir_environment_moves_the_run_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REPROKIT_OUTPUT_DIR", str(tmp_path / "out"))
    session.start(experiment="exp")
    assert Path(session.status().local_dir or "").parent == tmp_path / "out"


def test_env_returns_a_fresh_snapshot_with_the_run_inputs(project: Path) -> None:
    (project / "f").write_text("x")
    session.start(experiment="exp", seed=2, data=["f"])
    snapshot = session.env()
    assert snapshot.seeds is not None and snapshot.seeds.seed == 2
    assert snapshot.data is not None and [e.path for e in snapshot.data.entries] == ["f"]


@pytest.mark.parametrize(("requested", "expected"), [("cpu", "cpu"), ("CPU", "cpu")])
def test_device_honours_the_runner_request(
    monkeypatch: pytest.MonkeyPatch, requested: str, expected: str
) -> None:
    monkeypatch.setenv("REPROKIT_DEVICE", requested)
    assert session.device() == expected


def test_device_refuses_cuda_when_none_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    monkeypatch.setenv("REPROKIT_DEVICE", "cuda")
    with pytest.raises(UsageError, match="no CUDA device"):
        session.device()
    monkeypatch.delenv("REPROKIT_DEVICE")
    assert session.device() == "cpu"


def test_device_rejects_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROKIT_DEVICE", "tpu")
    with pytest.raises(UsageError, match="expected cpu, cuda"):
        session.device()


@pytest.mark.gpu
def test_device_uses_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPROKIT_DEVICE", raising=False)
    assert session.device() == "cuda"
    monkeypatch.setenv("REPROKIT_DEVICE", "cuda:0")
    assert session.device() == "cuda:0"


def test_a_script_that_raises_records_a_failed_run(project: Path) -> None:
    import subprocess
    import sys

    script = project / "train.py"
    script.write_text(
        "import reprokit\nreprokit.start(experiment='exp')\nreprokit.result('loss', 0.5)\n1 / 0\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
    run = only_run(tracking_uri(project), "exp")
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"loss": 0.5}


def test_events_a_full_disk_refused_are_held_and_recorded_once_it_has_room(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that filled up mid-session: the journal lost every later event (and was
    released, cut mid-line, for a replay to take as the whole run: 7 of 50 results, KILLED),
    and the end line said FINISHED. The events are now held in the process, the journal
    stays whole and locked, the end says the run is not recorded, and ``flush()`` records
    all of it once the disk takes them again."""
    from reprokit.exceptions import RecordError
    from reprokit.recording.journal import Journal
    from reprokit.recording.worker import BackgroundRecorder

    full = {"on": False}
    append = Journal.append

    def refusing(self: Journal, event: str, /, durable: bool = True, **fields: object) -> None:
        if full["on"]:
            raise OSError(28, "No space left on device")
        append(self, event, durable, **fields)

    def store_full(self: BackgroundRecorder, op: object) -> None:
        raise RecordError("MLflow: database or disk is full")

    monkeypatch.setattr(Journal, "append", refusing)
    session.start(experiment="full")
    assert session.flush(60)  # the run is open in MLflow
    full["on"] = True
    monkeypatch.setattr(BackgroundRecorder, "_log", store_full)
    monkeypatch.setattr(BackgroundRecorder, "_close", store_full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(50):
            session.result(f"r{k}", float(k))
        ended = session.end()
        assert not session.flush(5)
    text = "\n".join(str(w.message) for w in caught)
    assert not ended.recording
    assert "its events are held in this process" in text
    assert "lacks the last" in text and "`reprokit.flush()` writes them" in text
    full["on"] = False  # room again: the background writer replays the whole journal
    assert session.flush(120)
    run = only_run(tracking_uri(project), "full")
    assert run.info.status == "FINISHED" and len(run.data.metrics) == 50
