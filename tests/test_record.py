"""The MLflow mapping (tags, metrics, datasets) and the background recorder, on a real store."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import mlflow_client

from reprokit.capturing.model import DataEntry
from reprokit.recording.mapping import dataset_spec, metric_key, metric_value, run_tags
from reprokit.recording.target import resolve_target
from reprokit.recording.worker import (
    BackgroundRecorder,
    Call,
    Close,
    LogBatch,
    LogDatasets,
    OpenRun,
    Upload,
    _merge,
)
from reprokit.report.render import run_note_markdown
from reprokit.results import encode_result


def test_metric_keys_keep_what_mlflow_allows() -> None:
    assert metric_key("val/acc top-1: 0.5_x-y") == "val/acc top-1: 0.5_x-y"  # unchanged
    assert metric_key("a" * 250) == "a" * 250
    changed = metric_key("val/acc top-1 (%)")
    assert re.fullmatch(r"val/acc top-1 ____-[0-9a-f]{8}", changed)
    assert metric_key("val/acc top-1 (%)") == changed  # stable


def test_metric_keys_of_different_names_never_collide() -> None:
    names = ["\u03b1", "\u03b2", "_", "a\tb", "a_b", "a b", "x" * 251, "x" * 252, "x" * 300]
    names += ["y" * 240 + "é", "y" * 240 + "è", metric_key("\u03b1"), metric_key("x" * 251)]
    keys = [metric_key(name) for name in names]
    assert len(set(keys)) == len(names), keys
    assert all(len(key) <= 250 and re.fullmatch(r"[A-Za-z0-9_\-. :/]+", key) for key in keys)
    assert metric_key("x" * 300)[:240] == "x" * 240


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1.0), (True, 1.0), (2.5, 2.5), (math.inf, math.inf)]
)
def test_numeric_scalars_become_metrics(value: object, expected: float) -> None:
    assert metric_value(encode_result("x", value)) == expected


def test_an_int_beyond_the_float_range_is_a_result_but_no_metric() -> None:
    assert metric_value(encode_result("x", 10**400)) is None  # MLflow metrics are float64
    assert metric_value(encode_result("x", -(10**400))) is None
    assert metric_value(encode_result("x", 2**1000)) == float(2**1000)  # within the range


def test_nan_becomes_a_nan_metric_and_strings_none() -> None:
    assert math.isnan(metric_value(encode_result("x", math.nan)) or 0.0)
    assert metric_value(encode_result("x", "text")) is None
    assert metric_value(encode_result("x", [1.0])) is None


def test_dataset_spec_fits_mlflow_and_keeps_the_full_digest(tmp_path: Path) -> None:
    entry = DataEntry(path="data", kind="dir", size=10, algorithm="sha256", digest="ab" * 32)
    spec = dataset_spec(entry, str(tmp_path))
    assert len(spec.digest) == 36 and ("ab" * 32).startswith(spec.digest)
    assert json.loads(spec.source) == {
        "uri": (tmp_path / "data").as_uri(),
        "digest": "sha256:" + "ab" * 32,
    }
    assert json.loads(spec.profile)["digest"] == "sha256:" + "ab" * 32


def test_a_notebook_that_starts_two_runs_declares_the_inputs_of_both(tmp_path: Path) -> None:
    """Each ``%repro start`` has its run folder and ``data.json``: the notebook's MLflow
    inputs are all of them, each path and digest once (it was the first folder's only)."""
    from reprokit._serde import to_json
    from reprokit.capturing.model import DataManifest
    from reprokit.recording.executed import declared_data

    a = DataEntry(path="data/a", kind="file", size=1, algorithm="blake3", digest="1" * 64)
    b = DataEntry(path="data/b", kind="file", size=1, algorithm="blake3", digest="2" * 64)
    for folder, entries in (("20260101T000000Z-aa", (a,)), ("20260101T000001Z-bb", (a, b))):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.json").write_text(to_json(DataManifest(entries=entries)))
    (tmp_path / "20260101T000002Z-cc").mkdir()  # a run folder whose data.json is damaged
    (tmp_path / "20260101T000002Z-cc" / "data.json").write_text("{")
    assert declared_data(tmp_path, None) == (a, b)


def test_run_tags_use_mlflow_standard_names_and_redact_the_remote(tmp_path: Path) -> None:
    from dataclasses import replace

    from reprokit.capturing.model import GitInfo
    from reprokit.capturing.snapshot import capture

    snapshot = capture(root=tmp_path)
    git = GitInfo(
        available=True,
        commit="c" * 40,
        branch="main",
        dirty=True,
        remote_url="https://ghp_" + "A" * 36 + "@github.com/x/y.git",
    )
    tags = run_tags(
        replace(snapshot, git=git),
        notebook="/nb/a.ipynb",
        in_notebook=True,
        device="cpu",
        local_dir=None,
        tracking_uri="sqlite:////x/mlflow.db",
        note=run_note_markdown(snapshot, notebook="/nb/a.ipynb"),
    )
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["mlflow.source.name"] == "/nb/a.ipynb"
    assert tags["mlflow.source.git.commit"] == "c" * 40
    assert tags["mlflow.source.git.branch"] == "main"
    assert "ghp_" not in tags["mlflow.source.git.repoURL"]
    assert tags["reprokit.dirty"] == "true" and tags["reprokit.device"] == "cpu"
    assert tags["mlflow.note.content"].startswith("**reprokit** run of `/nb/a.ipynb`")


def test_pending_batches_merge_and_only_the_last_upload_is_kept(tmp_path: Path) -> None:
    ops = [
        LogBatch(metrics=[("a", 1.0, 0, 0)], tags={"t": "1"}),
        Upload(tmp_path, "reprokit"),
        LogBatch(metrics=[("b", 2.0, 0, 0)], tags={"t": "2"}),
        LogBatch(params={"p": "x"}),
        Upload(tmp_path, "reprokit"),
        Close("FINISHED", 0),
    ]
    merged = _merge(ops)  # type: ignore[arg-type]
    assert [type(op).__name__ for op in merged] == ["LogBatch", "Upload", "Close"]
    batch = merged[0]
    assert isinstance(batch, LogBatch)
    assert [m[0] for m in batch.metrics] == ["a", "b"]
    assert (batch.tags, batch.params) == ({"t": "2"}, {"p": "x"})


def _target(tmp_path: Path, template: Path, uri: str | None = None) -> object:
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copy(template, tmp_path / "mlflow.db")
    return resolve_target(start=tmp_path, tracking_uri=uri, experiment="worker")


def test_recorder_runs_operations_in_order_on_a_real_store(
    tmp_path: Path, mlflow_template_db: Path
) -> None:
    target = _target(tmp_path, mlflow_template_db)
    folder = tmp_path / "out"
    folder.mkdir()
    recorder = BackgroundRecorder(target)  # type: ignore[arg-type]
    opened: list[str] = []
    recorder.submit(OpenRun("r", {"k": "v"}, {"p": "1"}, 0, lambda rid, uri: opened.append(rid)))
    recorder.submit(Call("write", lambda: (folder / "f.txt").write_text("x")))
    recorder.submit(LogBatch(metrics=[("m", 1.0, 0, 0)]))
    entry = DataEntry(path="d", kind="file", size=1, algorithm="blake3", digest="0" * 64)
    recorder.submit(LogDatasets([dataset_spec(entry, str(tmp_path))]))
    recorder.submit(Upload(folder, "reprokit"))
    recorder.submit(Close("FINISHED", 1))
    assert recorder.flush(60)
    recorder.stop()
    assert recorder.take_errors() == []
    run = mlflow_client(target.uri).get_run(opened[0])  # type: ignore[attr-defined]
    assert (run.info.status, run.data.metrics, run.data.params) == (
        "FINISHED",
        {"m": 1.0},
        {"p": "1"},
    )
    assert run.data.tags["k"] == "v"
    assert run.inputs.dataset_inputs[0].tags[0].value == "input"


def test_recorder_failure_is_a_message_and_later_mlflow_ops_are_skipped(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = resolve_target(start=tmp_path, tracking_uri=f"http://u:pw@127.0.0.1:{port}")
    recorder = BackgroundRecorder(target)
    written: list[int] = []
    recorder.submit(OpenRun(None, {}, {}, 0))
    recorder.submit(LogBatch(metrics=[("m", 1.0, 0, 0)]))
    recorder.submit(Call("local", lambda: written.append(1)))
    assert recorder.flush(60)
    errors = recorder.take_errors()
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "pw" not in errors[0]
    assert "nothing more is sent to MLflow" in errors[0]
    assert written == [1] and recorder.broken
