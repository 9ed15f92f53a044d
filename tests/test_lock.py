"""Lock files: round trip, stable bytes, sidecar arrays, and refusal of untrusted content."""

from __future__ import annotations

import json
import os
import subprocess
import tracemalloc
from dataclasses import replace
from pathlib import Path

import nbformat
import numpy as np
import pytest
from lock_helpers import (
    FolderWriter,
    Project,
    executed,
    make_project,
    record,
    scalar_results,
)

from reprokit.capturing.model import DataEntry, DataManifest
from reprokit.exceptions import InputError, LockError, ReprokitWarning, SchemaVersionError
from reprokit.recording.lock import (
    LOCK_SCHEMA_VERSION,
    Lock,
    build_lock,
    check_source,
    lock_path_for,
    read_lock,
    sidecar_for,
    write_lock,
)
from reprokit.results import RESULT_MIME, Result, decode_result, encode_result, read_notebook


def test_lock_path_sits_beside_the_notebook() -> None:
    assert lock_path_for("a/fig3.ipynb") == Path("a/fig3.repro.json")
    assert lock_path_for("a/fig3.py") == Path("a/fig3.repro.json")
    assert sidecar_for("a/fig3.repro.json") == Path("a/fig3.repro")


def test_lock_round_trips_with_everything_recorded(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results(rtol=1e-3), run_id="abc123")
    assert lock.schema_version == LOCK_SCHEMA_VERSION
    assert lock.notebook.path == "notebooks/fig3.ipynb"
    assert [c.cell_type for c in lock.notebook.cells] == ["markdown", "code", "code", "code"]
    assert lock.parameters.values == {"epochs": 2} and lock.parameters.device == "cpu"
    assert set(lock.results) == {"acc", "config", "epochs"}
    assert lock.results["acc"].rtol == 1e-3
    assert lock.snapshot is not None and lock.run_id == "abc123"
    assert lock.data is not None and lock.data.entries[0].path == "data"
    assert [o.index for o in lock.outputs] == [1, 2, 3]
    assert read_lock(project.lock_path) == lock


def test_lock_json_is_sorted_with_one_value_per_line(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    text = project.lock_path.read_text()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert '\n  "acc": {' in text.replace(" ", "  ") or '"acc": {\n' in text


def test_a_lock_recorded_in_a_git_repository_holds_no_absolute_path(tmp_path: Path) -> None:
    """``snapshot.git.root`` was the author's folder (``/home/alice/paper``): a lock travels
    into bundles and published repositories, so it is null there, like the interpreter paths."""
    project = make_project(tmp_path)
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project.root, check=True)
    subprocess.run([*git, "add", "."], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=project.root, check=True)
    lock = record(project, scalar_results())
    assert lock.snapshot is not None and lock.snapshot.git.available
    assert lock.snapshot.git.commit and lock.snapshot.git.root is None
    text = project.lock_path.read_text()
    assert str(project.root) not in text and str(project.root.resolve()) not in text


def test_re_recording_an_unchanged_notebook_gives_identical_bytes(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    big = np.arange(20_000, dtype=np.float64)  # 160 kB: above the inline limit
    results = [*scalar_results(), encode_result("w", big, writer=FolderWriter(tmp_path / "r1"))]
    record(project, results)
    first = project.lock_path.read_text().splitlines()
    sidecar_first = {p.name: p.read_bytes() for p in sidecar_for(project.lock_path).iterdir()}
    again = [*scalar_results(), encode_result("w", big, writer=FolderWriter(tmp_path / "r2"))]
    record(project, again)
    second = project.lock_path.read_text().splitlines()
    assert _without_volatile(first) == _without_volatile(second)
    assert sidecar_first == {
        p.name: p.read_bytes() for p in sidecar_for(project.lock_path).iterdir()
    }


def _lock_over(project: Project, results: list[Result]) -> Lock:
    return build_lock(project.notebook, executed(project, results), project_root=project.root)


def test_a_large_sidecar_is_copied_in_chunks_and_kept_when_unchanged(tmp_path: Path) -> None:
    """The file of a by-reference array (16 MB here) is copied beside the lock a chunk at a
    time, never read whole (it was read twice: 2x its size in memory), and a lock written
    again over the same bytes leaves it as it is."""
    project = make_project(tmp_path)
    big = np.random.default_rng(0).standard_normal(2_000_000)
    lock = _lock_over(project, [encode_result("w", big, writer=FolderWriter(tmp_path / "run"))])
    tracemalloc.start()
    try:
        write_lock(lock, project.lock_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < big.nbytes // 4, peak
    (copied,) = sidecar_for(project.lock_path).iterdir()
    source = tmp_path / "run" / str(lock.results["w"].array.file)  # type: ignore[union-attr]
    assert copied.read_bytes() == source.read_bytes()
    before = copied.stat()
    write_lock(read_lock(project.lock_path), project.lock_path)  # the sidecar is its source now
    write_lock(lock, project.lock_path)  # from the run folder again, same bytes
    assert (copied.stat().st_ino, copied.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    kept = read_lock(project.lock_path).results["w"]
    np.testing.assert_array_equal(decode_result(kept, base=project.lock_path.parent), big)


def test_a_damaged_array_file_is_not_copied_into_the_lock(tmp_path: Path) -> None:
    """A run folder's array file cut short (a full disk, a killed writer) stops the lock's
    writing with the file named, instead of becoming the reference."""
    project = make_project(tmp_path)
    big = np.arange(50_000, dtype=np.float64)
    lock = _lock_over(project, [encode_result("w", big, writer=FolderWriter(tmp_path / "run"))])
    source = tmp_path / "run" / str(lock.results["w"].array.file)  # type: ignore[union-attr]
    source.write_bytes(source.read_bytes()[:-8])
    with pytest.raises(InputError, match="not the size"):
        write_lock(lock, project.lock_path)
    assert not project.lock_path.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_where_the_sidecar_goes_is_replaced_without_a_hang(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    big = np.arange(50_000, dtype=np.float64)
    for writer in (FolderWriter(tmp_path / "run"), None):  # by reference, then inline
        lock = _lock_over(project, [encode_result("w", big, writer=writer)])
        digest = lock.results["w"].array.digest  # type: ignore[union-attr]
        file = sidecar_for(project.lock_path) / f"w-{digest.split(':')[1][:16]}.npy"
        file.parent.mkdir(exist_ok=True)
        file.unlink(missing_ok=True)
        os.mkfifo(file)
        write_lock(lock, project.lock_path)
        assert file.is_file() and file.stat().st_size > big.nbytes


def _without_volatile(lines: list[str]) -> list[str]:
    """Drop the created_at line and the snapshot object (indent of one = top-level key)."""
    kept, skipping = [], False
    for line in lines:
        if line.startswith(' "snapshot": {'):
            skipping = True
        elif skipping and line.startswith(" }"):
            skipping = False
        elif not skipping and not line.startswith(' "created_at"'):
            kept.append(line)
    return kept


def test_large_arrays_go_to_the_sidecar_and_read_back(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    inline_big = np.linspace(0, 1, 10_000)  # no writer: inline in the notebook, 80 kB
    lock = record(project, [encode_result("w", inline_big)])
    array = lock.results["w"].array
    assert array is not None and array.inline is None and array.location is None
    assert array.file is not None and array.file.startswith("fig3.repro/")
    assert array.sample is not None  # a summary is possible without the file
    value = decode_result(lock.results["w"], base=project.lock_path.parent)
    np.testing.assert_array_equal(value, inline_big)


def test_small_arrays_stay_inline(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("w", np.ones(3))])
    assert lock.results["w"].array is not None and lock.results["w"].array.inline is not None
    assert not sidecar_for(project.lock_path).exists()


def test_a_lock_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    data["schema_version"] = LOCK_SCHEMA_VERSION + 1
    project.lock_path.write_text(json.dumps(data))
    newer = rf"newer reprokit \(schema {LOCK_SCHEMA_VERSION + 1} > {LOCK_SCHEMA_VERSION}\); upgrade"
    with pytest.raises(SchemaVersionError, match=newer):
        read_lock(project.lock_path)


def test_a_malformed_field_is_named(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    data["results"]["acc"]["kind"] = 3
    project.lock_path.write_text(json.dumps(data))
    with pytest.raises(LockError) as info:
        read_lock(project.lock_path)
    assert info.value.path == str(project.lock_path)
    assert info.value.field == "$.results.acc.kind"
    assert str(project.lock_path) in str(info.value)


@pytest.mark.parametrize("bad", ["../secret.txt", "data/../../x", "/etc/passwd"])
def test_data_paths_escaping_the_project_are_refused(tmp_path: Path, bad: str) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    data["data"]["entries"][0]["path"] = bad
    project.lock_path.write_text(json.dumps(data))
    with pytest.raises(LockError, match=r"outside the project root|escapes the project root") as e:
        read_lock(project.lock_path)
    assert e.value.field == "data.entries[0].path"


@pytest.mark.parametrize("bad", ["../../../../etc/passwd", "../b.csv", "/etc/passwd", ""])
def test_file_paths_of_a_data_folder_escaping_it_are_refused(tmp_path: Path, bad: str) -> None:
    """``data.entries[].files[].path`` was accepted whatever it held (docs/lock.md)."""
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    assert data["data"]["entries"][0]["kind"] == "dir"
    data["data"]["entries"][0]["files"][1]["path"] = bad
    project.lock_path.write_text(json.dumps(data))
    with pytest.raises(LockError, match=r"escapes its folder") as e:
        read_lock(project.lock_path)
    assert e.value.field == "data.entries[0].files[1].path"


def test_array_references_escaping_the_lock_folder_are_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    record(project, [encode_result("w", np.linspace(0, 1, 10_000))])
    data = json.loads(project.lock_path.read_text())
    data["results"]["w"]["array"]["file"] = "../../../etc/passwd"
    project.lock_path.write_text(json.dumps(data))
    with pytest.raises(LockError, match="escapes"):
        read_lock(project.lock_path)


def test_not_json_is_a_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "x.repro.json"
    path.write_text("{nope")
    with pytest.raises(LockError, match="not valid JSON"):
        read_lock(path)


def test_a_lock_left_with_merge_conflict_markers_says_so(tmp_path: Path) -> None:
    """A merge that left the lock half-resolved was reported as the parser's "Expecting
    property name ...": the conflict, and its line, is what the user has to fix."""
    path = tmp_path / "x.repro.json"
    path.write_text('{\n<<<<<<< HEAD\n "a": 1,\n=======\n "a": 2,\n>>>>>>> other\n}\n')
    with pytest.raises(LockError, match=r"merge-conflict markers \(line 2\); resolve"):
        read_lock(path)
    path.write_text('{"a": "=======",\n "b": <<<<<<< 1}')  # not at a line's start: no conflict
    with pytest.raises(LockError, match="not valid JSON: Expecting"):
        read_lock(path)


def test_data_outside_the_project_cannot_be_locked(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    outside = DataManifest(entries=(DataEntry(str(tmp_path / "elsewhere"), "file", 1, "b", "0"),))
    with pytest.raises(LockError, match="outside the project root"):
        build_lock(
            project.notebook,
            executed(project, scalar_results(), snapshot=False),
            project_root=project.root,
            data=outside,
        )


def test_changed_source_cells_are_named(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    nb = nbformat.read(project.notebook, as_version=4)
    nb.cells[2].source = "print('loss', 0.5)"
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="changed")]
    nb.cells.append(nbformat.v4.new_code_cell("extra"))
    nbformat.write(nb, project.notebook)
    with pytest.warns(UserWarning, match="cells 3, 5"):
        assert check_source(lock, project.notebook) == [2, 4]


def test_outputs_do_not_change_the_source_digest(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    nbformat.write(executed(project, scalar_results(0.5)), project.notebook)
    assert check_source(lock, project.notebook) == []


def test_a_lock_can_be_built_from_results_alone(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    found = read_notebook(executed(project, scalar_results()))
    lock = build_lock(project.notebook, found, project_root=project.root, device="cuda:1")
    assert lock.outputs == () and lock.parameters.device == "cuda"
    written = write_lock(replace(lock, run_id=None), project.lock_path)
    assert read_lock(project.lock_path) == written


def test_a_bad_result_in_the_executed_notebook_names_the_notebook_and_cell(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    nb = executed(project, scalar_results())
    nb.cells[3].outputs[0]["data"][RESULT_MIME]["rtol"] = "Infinity"  # as an old version wrote
    path = tmp_path / "out.ipynb"
    nbformat.write(nb, path)
    for given in (nb, path):  # the executed notebook's node, or its file in the run folder
        with pytest.raises(InputError, match=rf"^{project.notebook}: cell 4: invalid Result"):
            build_lock(project.notebook, given, project_root=project.root)


def test_a_jupytext_notebook_is_locked_from_its_text_form(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    script = project.notebook.with_suffix(".py")
    script.write_text("# %% [markdown]\n# Figure 3\n\n# %%\nimport numpy as np\n\n# %%\nx = 1\n")
    node = executed(project, scalar_results(), snapshot=False)
    lock = build_lock(script, node, project_root=project.root)
    assert lock.notebook.path == "notebooks/fig3.py"
    assert [c.cell_type for c in lock.notebook.cells] == ["markdown", "code", "code"]
    assert lock_path_for(script) == project.lock_path
    script.write_text(script.read_text().replace("x = 1", "x = 2"))
    with pytest.warns(UserWarning, match="cells 3"):
        assert check_source(lock, script) == [2]


def test_lock_errors_pickle_with_their_fields() -> None:
    import pickle

    error = SchemaVersionError("a.repro.json", 3, 1)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is SchemaVersionError and clone.found == 3 and clone.supported == 1
    assert clone.field == "schema_version" and str(clone) == str(error)
    assert isinstance(clone, LockError) and clone.exit_code == 2


def test_a_data_file_name_that_is_not_utf8_is_locked_by_its_folders_digest(
    tmp_path: Path,
) -> None:
    """A lock refuses lone surrogates (how Python holds a name whose bytes are not UTF-8):
    such a folder is locked with its digest, over the names' bytes, but no file list (with a
    warning), and verify says it changed without naming files it cannot know."""
    import os

    from reprokit.compare.verify import check_data
    from reprokit.exceptions import ReprokitWarning

    project = make_project(tmp_path)
    odd = os.path.join(os.fsencode(project.data), b"caf\xe9.csv")
    with open(odd, "wb") as handle:
        handle.write(b"x\n")
    with pytest.warns(ReprokitWarning, match="not UTF-8; the lock keeps the folder's digest"):
        lock = record(project, scalar_results())
    [entry] = lock.data.entries  # type: ignore[union-attr]
    assert entry.files == () and lock.snapshot.data.entries[0].files == ()  # type: ignore[union-attr]
    assert check_data(lock, project.root, cache=None).entries[0].status == "ok"
    with open(odd, "wb") as handle:
        handle.write(b"y\n")
    [check] = check_data(lock, project.root, cache=None).entries
    assert (check.status, check.files, check.reason) == ("changed", (), "content changed")


def test_a_folder_of_empty_files_locked_without_its_list_names_no_file(tmp_path: Path) -> None:
    """Its size (0) does not make it a folder without files: verify must not call every file
    of it "added" when one more empty file appears."""
    import os

    from reprokit.compare.verify import check_data

    project = make_project(tmp_path)
    for name in ("a.csv", "b.csv"):
        (project.data / name).write_bytes(b"")
    open(os.path.join(os.fsencode(project.data), b"caf\xe9.csv"), "wb").close()
    with pytest.warns(ReprokitWarning):
        lock = record(project, scalar_results())
    assert lock.data.entries[0].size == 0 and lock.data.entries[0].files == ()  # type: ignore[union-attr]
    (project.data / "c.csv").write_bytes(b"")
    [check] = check_data(lock, project.root, cache=None).entries
    assert (check.status, check.files, check.reason) == ("changed", (), "content changed")
    for name in ("a.csv", "b.csv", "c.csv"):
        (project.data / name).unlink()
    os.unlink(os.path.join(os.fsencode(project.data), b"caf\xe9.csv"))
    empty = record(project, scalar_results())  # a folder with no files at all
    (project.data / "d.csv").write_bytes(b"1\n")
    [check] = check_data(empty, project.root, cache=None).entries
    assert [(f.path, f.change) for f in check.files] == [("d.csv", "added")]


def test_a_lock_its_reader_would_refuse_is_not_written(tmp_path: Path) -> None:
    """Text that is not UTF-8 outside the data file lists (a variable of the environment, say)
    makes a lock that ``read_lock`` refuses: ``record`` says so, naming the field, and leaves no
    such file behind."""
    project = make_project(tmp_path)
    lock = build_lock(
        project.notebook, executed(project, scalar_results()), project_root=project.root
    )
    assert lock.snapshot is not None
    odd = replace(lock.snapshot, environment={"XLA_FLAGS": "--dump=/tmp/caf\udce9"})
    with pytest.raises(LockError, match=r"snapshot\.environment\.XLA_FLAGS.*lone surrogate"):
        write_lock(replace(lock, snapshot=odd), project.lock_path)
    assert not project.lock_path.exists()


def test_a_lock_larger_than_its_reader_allows_is_refused_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``record`` refused nothing, and wrote a lock ``verify`` refuses for its size: the writer
    now refuses it with the reader's limit, naming the file, both sizes and the largest
    results, and leaves the lock already there (and its sidecar) as they were."""
    from reprokit.recording import lock as lock_module
    from reprokit.recording import lock_checks

    limit = 2**20  # the reader's and the writer's limit, smaller to keep the test quick
    monkeypatch.setattr(lock_module, "MAX_LOCK_BYTES", limit)
    monkeypatch.setattr(lock_checks, "MAX_LOCK_BYTES", limit)
    project = make_project(tmp_path)
    array = encode_result("w", np.arange(50_000, dtype=np.float64))  # goes to the sidecar
    fits = _lock_over(project, [encode_result("long", "ab" * 2**18), array])
    write_lock(fits, project.lock_path)
    assert read_lock(project.lock_path).results["long"].value == "ab" * 2**18
    before = project.lock_path.read_bytes()
    sidecar = {p.name: p.read_bytes() for p in sidecar_for(project.lock_path).iterdir()}
    other = encode_result("w", np.arange(60_000, dtype=np.float64))  # another sidecar file
    big = _lock_over(project, [encode_result("long", "ab" * 2**20), other, encode_result("a", 1)])
    with pytest.raises(LockError) as caught:
        write_lock(big, project.lock_path)
    message = str(caught.value)
    assert message.startswith(f"{project.lock_path}: the lock would be ")
    assert f"more than the {limit}" in message and "largest results: 'long' (" in message
    assert caught.value.exit_code == 2
    assert project.lock_path.read_bytes() == before
    assert {p.name: p.read_bytes() for p in sidecar_for(project.lock_path).iterdir()} == sidecar


def test_data_declared_through_a_link_inside_the_project_keeps_the_link(tmp_path: Path) -> None:
    """The lock kept ``data/real`` for a run that declared ``data/link`` (a link to it), so an
    unchanged notebook never verified ("data drifted: not declared by this run") and its
    bundle lacked the path the notebook reads. A link leading outside stays refused."""
    from reprokit.capturing.model import DataEntry, DataManifest
    from reprokit.exceptions import LockError
    from reprokit.recording.lock import _relative_manifest

    root = tmp_path / "proj"
    (root / "data" / "real").mkdir(parents=True)
    (root / "data" / "link").symlink_to("real")
    (root / "data" / "out").symlink_to(tmp_path)

    def entry(path: str) -> DataEntry:
        return DataEntry(path=path, kind="directory", size=0, digest="0" * 64, algorithm="blake3")

    kept = _relative_manifest(DataManifest(entries=(entry("data/link"),)), root)
    assert [e.path for e in kept.entries] == ["data/link"]
    absolute = _relative_manifest(DataManifest(entries=(entry(str(root / "data/link")),)), root)
    assert [e.path for e in absolute.entries] == ["data/link"]
    with pytest.raises(LockError, match="outside the project root"):
        _relative_manifest(DataManifest(entries=(entry("data/out"),)), root)
