"""The skip cache of verified notebooks (``reprokit.compare.verified``), without kernels.

Real locks, real data checks, real files under ``.reprokit/verified/``: a REPRODUCED verdict is
found again only while every part of its key is unchanged; an entry edited by hand, a corrupt
file or a racing writer never makes a verdict appear where the inputs changed.
"""

from __future__ import annotations

import json
import multiprocessing
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lock_helpers import Project, executed, make_project, record

from reprokit.compare import verified
from reprokit.compare.verified import (
    VerifiedKey,
    environment_digest,
    forget_verified,
    lookup_verified,
    remember_verified,
    verified_key,
)
from reprokit.compare.verify import Verdict, check_data, verify_results
from reprokit.comparison import Tolerance
from reprokit.exceptions import ReprokitWarning
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.results import encode_result, read_notebook

ENV = "env-digest"


def _reproduced(tmp_path: Path) -> tuple[Project, Verdict]:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 0.5)])
    data = check_data(lock, project.root, cache=None)
    verdict = verify_results(
        lock, read_notebook(executed(project, [encode_result("acc", 0.5)])), data=data
    )
    assert verdict.reproduced and verdict.data_ok and data.entries
    return project, verdict


def _key(
    project: Project,
    *,
    environment: str = ENV,
    execution: ExecutionOptions | None = None,
    parameters: dict[str, Any] | None = None,
    device: str = "cpu",
    kernel: str = "python3",
    comparison: ComparisonOptions | None = None,
) -> VerifiedKey | None:
    from reprokit.recording.lock import read_lock

    data = check_data(read_lock(project.lock_path), project.root, cache=None)
    options = execution or ExecutionOptions()
    return verified_key(
        project.notebook,
        project.lock_path,
        data,
        environment,
        (options, parameters or {}, kernel, device),
        comparison or ComparisonOptions(),
    )


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Project, VerifiedKey]:
    project, verdict = _reproduced(tmp_path)
    key = _key(project)
    assert key is not None
    remember_verified(key, verdict)
    return project, key


def test_a_reproduced_verdict_is_found_again_with_when_it_was_reached(
    stored: tuple[Project, VerifiedKey],
) -> None:
    project, key = stored
    assert key.entry.parent == project.root / ".reprokit" / "verified"
    again = _key(project)
    assert again is not None and again.digest == key.digest
    found = lookup_verified(again)
    assert found is not None and found.reproduced and found.cached_at is not None
    entry = json.loads(key.entry.read_text())
    assert entry["verified_at"] == found.cached_at and entry["verdict"]["cached_at"] is None
    assert set(entry["parts"]) == {
        "reprokit",
        "notebook",
        "lock",
        "data",
        "environment",
        "execution",
        "comparison",
    }


def _edit_notebook(project: Project) -> None:
    text = project.notebook.read_text().replace("print('loss', 0.25)", "print('loss', 0.5)")
    project.notebook.write_text(text)


def _edit_lock(project: Project) -> None:
    data = json.loads(project.lock_path.read_text())
    data["parameters"]["values"]["epochs"] = 3
    project.lock_path.write_text(json.dumps(data))


def _edit_data(project: Project) -> None:
    (project.data / "b.csv").write_text("x,y\n3,5\n")


def _add_sidecar_file(project: Project) -> None:
    sidecar = project.lock_path.with_name("fig3.repro")
    sidecar.mkdir(exist_ok=True)
    (sidecar / "w.npy").write_bytes(b"\x93NUMPY")


@pytest.mark.parametrize("change", [_edit_notebook, _edit_lock, _edit_data, _add_sidecar_file])
def test_a_changed_input_is_not_found(stored: tuple[Project, VerifiedKey], change: Any) -> None:
    project, key = stored
    change(project)
    again = _key(project)
    assert again is None or (again.digest != key.digest and lookup_verified(again) is None)


def test_outputs_and_metadata_of_the_notebook_do_not_count(
    stored: tuple[Project, VerifiedKey],
) -> None:
    """Running the notebook in Jupyter (outputs, execution counts) changes no source cell."""
    import nbformat

    project, key = stored
    node = nbformat.read(project.notebook, as_version=4)
    node.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    node.cells[1].execution_count = 7
    nbformat.write(node, project.notebook)
    again = _key(project)
    assert again is not None and again.digest == key.digest


@pytest.mark.parametrize(
    "changed",
    [
        {"environment": "another-env"},
        {"device": "cuda"},
        {"parameters": {"epochs": 5}},
        {"execution": ExecutionOptions(timeout=5)},
        {"kernel": "other"},
        {"comparison": ComparisonOptions(rtol=1e-3)},
        {"comparison": ComparisonOptions(atol=0.0)},
        {"comparison": ComparisonOptions(outputs=True)},
        {"comparison": ComparisonOptions(device_tolerance={"*": Tolerance(rtol=0.1)})},
    ],
    ids=lambda changed: next(iter(changed)) + ":" + repr(next(iter(changed.values())))[:30],
)
def test_environment_execution_and_comparison_options_are_in_the_key(
    stored: tuple[Project, VerifiedKey], changed: dict[str, Any]
) -> None:
    """A verdict reached under looser tolerances never satisfies a stricter verify, nor one in
    another environment, on another device or with other parameters."""
    project, key = stored
    again = _key(project, **changed)
    assert again is not None and again.digest != key.digest
    assert lookup_verified(again) is None


def test_options_that_do_not_change_a_verdict_keep_the_key(
    stored: tuple[Project, VerifiedKey],
) -> None:
    project, key = stored
    for comparison in (ComparisonOptions(rehash=True), ComparisonOptions(force=True)):
        again = _key(project, comparison=comparison)
        assert again is not None and again.digest == key.digest
    again = _key(project, execution=ExecutionOptions(jobs=4))
    assert again is not None and again.digest == key.digest and again.entry == key.entry


def test_with_an_output_dir_the_cache_lives_there_not_in_the_project(
    stored: tuple[Project, VerifiedKey], tmp_path: Path
) -> None:
    """A reviewer's ``verify --output-dir OUT`` writes nothing into the checkout."""
    project, key = stored
    out = tmp_path / "review-out"
    again = _key(project, execution=ExecutionOptions(output_dir=out))
    assert again is not None and again.digest == key.digest
    assert again.entry.parent == out.resolve() / ".verified"


def test_another_reprokit_version_is_not_trusted(
    stored: tuple[Project, VerifiedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, key = stored
    monkeypatch.setattr(verified, "__version__", "99.0")
    again = _key(project)
    assert again is not None and again.digest != key.digest


def test_secret_parameters_or_drifted_data_are_never_cached(
    stored: tuple[Project, VerifiedKey],
) -> None:
    project, _ = stored
    assert _key(project, execution=ExecutionOptions(secret_parameters={"token": "s"})) is None
    # nor a -p passed like a secret (an outside tester's report: an unsalted digest of it was
    # written, and a changed secret could have reused the verdict)
    assert _key(project, parameters={"api_token": "AAAAvalue1"}) is None
    assert _key(project, parameters={"config": {"db": "x", "password": "AAAAvalue1"}}) is None
    assert _key(project, parameters={"config": {"db": "x"}}) is not None
    _edit_data(project)
    assert _key(project) is None  # the data check failed: nothing to reuse, nothing to store


def test_an_entry_edited_to_claim_reproduced_for_a_changed_notebook_is_not_trusted(
    stored: tuple[Project, VerifiedKey],
) -> None:
    """The key is recomputed from the files, never read: an entry rewritten by hand with the
    new inputs' part digests but the old key, or with a key it made up, is not found."""
    project, key = stored
    _edit_notebook(project)
    changed = _key(project)
    assert changed is not None and changed.entry == key.entry
    entry = json.loads(key.entry.read_text())
    entry["parts"] = changed.parts  # claims the new notebook, keeps the old key
    key.entry.write_text(json.dumps(entry))
    assert lookup_verified(changed) is None
    entry["key"] = "0" * 40
    key.entry.write_text(json.dumps(entry))
    assert lookup_verified(changed) is None


def test_an_entry_whose_verdict_did_not_reproduce_is_ignored_with_a_warning(
    stored: tuple[Project, VerifiedKey],
) -> None:
    _, key = stored
    entry = json.loads(key.entry.read_text())
    entry["verdict"]["reproduced"] = False
    key.entry.write_text(json.dumps(entry))
    with pytest.warns(ReprokitWarning, match="ignored"):
        assert lookup_verified(key) is None
    entry["verdict"] = {"notebook": 3}
    key.entry.write_text(json.dumps(entry))
    with pytest.warns(ReprokitWarning, match="not a verdict reprokit wrote"):
        assert lookup_verified(key) is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe\x00", b"[]", b'{"cache_version": 99}', b"null"],
    ids=["empty", "truncated", "binary", "list", "future", "null"],
)
def test_a_corrupt_cache_file_is_ignored_with_a_warning_then_replaced(
    stored: tuple[Project, VerifiedKey], content: bytes
) -> None:
    project, key = stored
    key.entry.write_bytes(content)
    with pytest.warns(ReprokitWarning, match=r"skip cache .* ignored"):
        assert lookup_verified(key) is None
    _, verdict = _reproduced(project.root.parent / "again")
    remember_verified(key, verdict)
    assert lookup_verified(key) is not None


def test_a_folder_in_place_of_the_entry_is_ignored_and_not_written(
    stored: tuple[Project, VerifiedKey],
) -> None:
    _, key = stored
    key.entry.unlink()
    key.entry.mkdir()
    assert lookup_verified(key) is None
    with pytest.warns(ReprokitWarning, match="not written"):
        remember_verified(key, replace(_verdict_of(key), cached_at=None))


def test_a_symlinked_cache_folder_is_neither_read_nor_written(
    stored: tuple[Project, VerifiedKey], tmp_path: Path
) -> None:
    """A repository cannot point the cache at a folder of its choosing (or at its own entries)."""
    _, key = stored
    elsewhere = tmp_path / "elsewhere"
    key.entry.parent.rename(elsewhere)
    key.entry.parent.symlink_to(elsewhere, target_is_directory=True)
    with pytest.warns(ReprokitWarning, match="symbolic link"):
        assert lookup_verified(key) is None
    with pytest.warns(ReprokitWarning, match="not written"):
        remember_verified(key, _verdict_of(key))


def _verdict_of(key: VerifiedKey) -> Verdict:
    return Verdict(notebook="nb", reproduced=True, counts={}, checks=())


def test_forget_removes_the_entry(stored: tuple[Project, VerifiedKey]) -> None:
    _, key = stored
    forget_verified(key)
    assert not key.entry.exists() and lookup_verified(key) is None
    forget_verified(key)  # twice: nothing to remove is fine


def _hammer(entry: str, digest: str, rounds: int) -> None:
    key = VerifiedKey(Path(entry), digest, {})
    verdict = Verdict(notebook="nb", reproduced=True, counts={"reproduced": 1}, checks=())
    for _ in range(rounds):
        remember_verified(key, verdict)


def test_concurrent_writers_leave_a_whole_entry(tmp_path: Path) -> None:
    """Verifications racing on one notebook: every read sees one writer's whole entry."""
    entry = tmp_path / ".reprokit" / "verified" / "e.json"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_hammer, args=(str(entry), "k" * 40, 25)) for _ in range(4)]
    for writer in writers:
        writer.start()
    key = VerifiedKey(entry, "k" * 40, {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a half-written file would warn: fail instead
        while any(writer.is_alive() for writer in writers):
            lookup_verified(key)
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    assert lookup_verified(key) is not None
    assert [p.name for p in entry.parent.iterdir()] == ["e.json"]  # no temporary file left


def test_the_environment_digest_follows_the_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    first = environment_digest("python3")
    assert environment_digest("python3") == first
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    assert environment_digest("python3") != first
    assert environment_digest("no-such-kernel") != first


def test_the_environment_digest_follows_the_numerics_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OMP_NUM_THREADS can change a reduction's result: a verdict reached with 2 threads is
    # not one for 1 thread; a variable outside the allow-list (HOME) does not count
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    first = environment_digest("python3")
    monkeypatch.setenv("HOME", "/elsewhere")
    assert environment_digest("python3") == first
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert environment_digest("python3") != first
    monkeypatch.setenv("REPROKIT_ENV_ALLOW", "SCALE")
    monkeypatch.setenv("SCALE", "2")
    second = environment_digest("python3")
    monkeypatch.setenv("SCALE", "3")
    assert environment_digest("python3") != second


def test_the_native_kernel_is_read_in_process() -> None:
    """``python3``'s spec says ``python``: jupyter_client runs this interpreter, so its
    distributions are read here (milliseconds), not by starting another Python."""
    import sys

    assert verified._kernel_executable("python3") == sys.executable
