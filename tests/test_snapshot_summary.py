"""The start cell's snapshot output is a summary: its size does not grow with the number of
data files; the file lists come back from the run's folder (verified against the summary's
digests), and the readers that need them (the lock, a data diff) still get them."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from reprokit._serde import to_json, to_json_fast
from reprokit.capturing.hashing import hash_paths
from reprokit.capturing.model import FileDigest, Snapshot
from reprokit.capturing.snapshot import capture
from reprokit.capturing.summary import environment_digest
from reprokit.compare.verify import compare_manifests
from reprokit.exceptions import ReprokitWarning
from reprokit.recording.lock import build_lock
from reprokit.report.display import snapshot_bundle
from reprokit.results import SNAPSHOT_MIME, read_notebook
from reprokit.results.model import SNAPSHOT_SUMMARY_MIME
from reprokit.results.notebook import restore_snapshot


def _snapshot(root: Path, files: int) -> Snapshot:
    data = root / f"data{files}"
    for index in range(files):
        (data / f"d{index % 7}").mkdir(parents=True, exist_ok=True)
        (data / f"d{index % 7}" / f"f{index}.txt").write_text(f"{index}\n")
    snapshot = capture(root=root)
    return replace(snapshot, data=hash_paths([data], relative_to=root, cache=None))


def _notebook(tmp_path: Path, snapshot: Snapshot, local_dir: Path | None) -> Path:
    """An executed notebook whose start cell carries ``snapshot`` as ``%repro start`` emits
    it, its run folder at ``local_dir`` holding the whole snapshot (as the session writes it)."""
    metadata = {"local_dir": str(local_dir) if local_dir else None}
    node = nbformat.v4.new_notebook()
    node.cells = [nbformat.v4.new_code_cell("%repro start --data data")]
    node.cells[0].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data=snapshot_bundle(snapshot, metadata),
            metadata={"reprokit": metadata},
        )
    ]
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "snapshot.json").write_text(to_json(snapshot))
    path = tmp_path / "executed.ipynb"
    nbformat.write(node, path)
    return path


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Snapshot]:
    root = tmp_path_factory.mktemp("data")
    return {files: _snapshot(root, files) for files in (10, 500)}


def test_the_snapshot_output_does_not_grow_with_the_number_of_data_files(
    snapshots: dict[int, Snapshot],
) -> None:
    sizes = {}
    for files, snapshot in snapshots.items():
        bundle = snapshot_bundle(snapshot, {"local_dir": "/runs/x"})
        sizes[files] = len(json.dumps(bundle))
        summary = bundle[SNAPSHOT_SUMMARY_MIME]
        assert summary["files"] == files and summary["data"][0]["files"] == files
        assert summary["bytes"] == snapshot.data.entries[0].size  # type: ignore[union-attr]
        assert summary["data"][0]["digest"] == snapshot.data.entries[0].tagged_digest  # type: ignore[union-attr]
        assert summary["environment_digest"] == environment_digest(snapshot)
        assert bundle[SNAPSHOT_MIME]["data"]["entries"][0]["files"] == []
    assert abs(sizes[500] - sizes[10]) < 200, sizes  # a few digits of counts and sizes
    whole = snapshot_bundle(snapshots[500], {"local_dir": None})  # no run folder: all of it
    assert len(whole[SNAPSHOT_MIME]["data"]["entries"][0]["files"]) == 500


def test_the_file_lists_come_back_from_the_run_folder_and_only_when_they_match(
    tmp_path: Path, snapshots: dict[int, Snapshot]
) -> None:
    snapshot = snapshots[500]
    found = read_notebook(_notebook(tmp_path, snapshot, tmp_path / "run"))
    assert found.summary is not None and found.summary.files == 500
    assert found.snapshot is not None and found.snapshot.data is not None
    assert found.snapshot.data.entries[0].files == ()  # the notebook alone: the summary
    assert restore_snapshot(found).snapshot == snapshot
    assert restore_snapshot(found).summary is None
    # a run folder whose file list does not give the folder's digest is not believed
    entry = snapshot.data.entries[0]  # type: ignore[union-attr]
    forged = (*entry.files[:-1], FileDigest(entry.files[-1].path, 1, "0" * 64))
    forged_data = replace(snapshot.data, entries=(replace(entry, files=forged),))  # type: ignore[arg-type]
    (tmp_path / "run" / "snapshot.json").write_text(to_json(replace(snapshot, data=forged_data)))
    assert restore_snapshot(found).summary is not None
    # another snapshot (other environment) is not believed either, a right one elsewhere is
    other = replace(snapshot, captured_at="2000-01-01T00:00:00+00:00")
    (tmp_path / "run" / "snapshot.json").write_text(to_json(other))
    (tmp_path / "copy.json").write_text(to_json(snapshot))
    assert restore_snapshot(found).summary is not None
    assert restore_snapshot(found, [tmp_path / "copy.json"]).snapshot == snapshot


def test_the_gpu_facts_a_run_took_again_as_it_ended_are_restored_with_the_file_lists(
    tmp_path: Path, snapshots: dict[int, Snapshot]
) -> None:
    from reprokit.capturing.model import AcceleratorInfo

    snapshot = snapshots[500]
    found = read_notebook(_notebook(tmp_path, snapshot, tmp_path / "run"))
    ended = replace(snapshot, accelerator=AcceleratorInfo(available=False, torch_version="2.11"))
    (tmp_path / "run" / "snapshot.json").write_text(to_json(ended))
    assert restore_snapshot(found).snapshot == ended  # file lists and torch, both
    # anything else changed, and it is another snapshot: not believed
    other = replace(ended, captured_at="2000-01-01T00:00:00+00:00")
    (tmp_path / "run" / "snapshot.json").write_text(to_json(other))
    assert restore_snapshot(found).summary is not None


def test_an_old_notebook_with_the_whole_snapshot_still_reads(
    tmp_path: Path, snapshots: dict[int, Snapshot]
) -> None:
    found = read_notebook(_notebook(tmp_path, snapshots[10], None))
    assert found.summary is None
    assert found.snapshot == snapshots[10]
    assert restore_snapshot(found) is found


def test_a_lock_gets_the_file_lists_and_warns_when_the_run_folder_is_gone(
    tmp_path: Path, snapshots: dict[int, Snapshot]
) -> None:
    snapshot = snapshots[10]
    (tmp_path / "pyproject.toml").write_text("")
    source = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), source)
    executed = _notebook(tmp_path, snapshot, tmp_path / "run")
    lock = build_lock(source, executed, project_root=tmp_path)
    # the lock's snapshot is the whole one (file lists back), without the interpreter's paths
    assert lock.snapshot is not None and lock.snapshot.data == snapshot.data
    assert lock.snapshot.python.executable is None and lock.data is not None
    assert len(lock.data.entries[0].files) == 10
    (tmp_path / "run" / "snapshot.json").unlink()
    with pytest.warns(ReprokitWarning, match="run folder holding the data manifest .* is gone"):
        lock = build_lock(source, executed, project_root=tmp_path)
    assert lock.data is not None and lock.data.entries[0].files == ()
    assert lock.data.entries[0].digest == snapshot.data.entries[0].digest  # type: ignore[union-attr]


def test_a_manifest_without_file_lists_names_no_files_in_a_data_diff(
    snapshots: dict[int, Snapshot],
) -> None:
    whole = snapshots[10].data
    assert whole is not None
    entry = whole.entries[0]
    changed = replace(entry, digest="f" * 64, files=entry.files[1:])
    summary = replace(whole, entries=(replace(changed, files=()),))
    (check,) = compare_manifests(whole, summary).entries
    assert check.status == "changed" and check.files == ()
    (check,) = compare_manifests(whole, replace(whole, entries=(changed,))).entries
    assert [f.change for f in check.files] == ["missing"]  # with file lists: named


def test_the_run_folder_json_is_written_fast_in_the_same_layout(
    snapshots: dict[int, Snapshot],
) -> None:
    """snapshot.json and data.json (100,000 files: 15 MB) are written by msgspec, in the same
    sorted, one-value-per-line layout as every other reprokit JSON file up to 1 MiB, on one
    line above; they read back the same."""
    snapshot = snapshots[500]
    assert to_json_fast(snapshot) == to_json(snapshot)
    assert to_json_fast(snapshot.data) == to_json(snapshot.data)
    files = snapshot.data.entries[0].files * 40  # type: ignore[union-attr]
    large = replace(snapshot.data.entries[0], files=files)  # type: ignore[union-attr]
    text = to_json_fast(large)
    assert len(text) > 1024 * 1024 and text.count("\n") == 1
    assert json.loads(text) == json.loads(to_json(large))
    with pytest.raises(TypeError):  # what neither encoder can write still fails loudly
        to_json_fast({"x": object()})


def test_a_folder_hashed_lazily_reaches_the_run_folder_json_with_its_file_list(
    tmp_path: Path,
) -> None:
    """msgspec (the run folder's JSON writer) reads fields from ``__dict__``, where a folder
    just hashed has no file list yet: the run folder's JSON is built from the hashing's lists
    (without making FileDigest objects), or snapshot.json would list no file and no lock get
    them. It is the same JSON as the plain entry's."""
    from reprokit._serde import from_json, to_json
    from reprokit.capturing.hashing import FolderEntry, hash_paths, manifest_json
    from reprokit.capturing.model import DataManifest

    (tmp_path / "data").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "data" / name).write_text(name)
    (tmp_path / "one.txt").write_text("1")
    entry, single = hash_paths([tmp_path / "data", tmp_path / "one.txt"]).entries
    assert isinstance(entry, FolderEntry)  # the lazy kind this test is about
    manifest = DataManifest(entries=(entry, single))
    text = manifest_json(manifest).decode("utf-8")
    assert "_lists" in entry.__dict__ and entry.file_count == 2  # its list was never made
    back = from_json(text, DataManifest)
    assert [f.path for f in back.entries[0].files] == ["a.csv", "b.csv"]
    assert text == to_json(DataManifest(entries=(entry.plain(), single)))


@pytest.mark.parametrize("files", [30, 12_000])  # laid out below 1 MiB, one line above
def test_the_run_folder_json_of_a_just_hashed_folder_is_the_plain_snapshots_json(
    tmp_path: Path, snapshots: dict[int, Snapshot], files: int
) -> None:
    """data.json and snapshot.json encode a just-hashed folder's file list straight from the
    hashing's lists, the manifest once for both: the bytes are those of the plain snapshot's
    JSON as ``to_json_fast`` writes it, whatever the size."""
    from reprokit.capturing.hashing import FolderEntry, manifest_compact, manifest_json
    from reprokit.capturing.model import DataManifest
    from reprokit.recording.recorded_run import _snapshot_json

    data = tmp_path / "data"
    for index in range(files):
        (data / f"d{index % 3}").mkdir(parents=True, exist_ok=True)
        (data / f"d{index % 3}" / f"f{index}.txt").write_text(f"{index}\n")
    (tmp_path / "one.txt").write_text("1")
    manifest = hash_paths([data, tmp_path / "one.txt"], relative_to=tmp_path, cache=None)
    folder, single = manifest.entries
    assert isinstance(folder, FolderEntry)
    compact = manifest_compact(manifest)
    snapshot = replace(snapshots[10], data=manifest)
    written = (manifest_json(manifest), _snapshot_json(snapshot, compact))
    assert "_lists" in folder.__dict__  # no FileDigest was made
    plain = DataManifest(entries=(folder.plain(), single))
    expected = (to_json_fast(plain), to_json_fast(replace(snapshot, data=plain)))
    assert written == tuple(text.encode("utf-8") for text in expected)
    assert (len(written[0]) > 1024 * 1024) == (files > 10_000)


def test_a_data_file_name_that_is_not_utf8_still_reaches_the_run_folder_json(
    tmp_path: Path, snapshots: dict[int, Snapshot]
) -> None:
    """A file name with bytes that are not UTF-8 (a lone surrogate in Python) is more than
    msgspec writes: the standard library's JSON, escaped, is written instead of nothing."""
    from reprokit._serde import from_json
    from reprokit.capturing.hashing import manifest_compact, manifest_json
    from reprokit.capturing.model import DataManifest
    from reprokit.recording.recorded_run import _snapshot_json

    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.txt").write_text("1")
    with open(os.path.join(os.fsencode(data), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"2")
    manifest = hash_paths([data], relative_to=tmp_path, cache=None)
    assert manifest_compact(manifest) is None
    text = manifest_json(manifest)
    back = from_json(text, DataManifest)
    assert [f.path for f in back.entries[0].files] == ["caf\udce9.txt", "ok.txt"]
    assert back == DataManifest(entries=(manifest.entries[0].plain(),))
    snapshot = json.loads(_snapshot_json(replace(snapshots[10], data=manifest), None))
    listed = snapshot["data"]["entries"][0]["files"]
    assert [f["path"] for f in listed] == ["caf\udce9.txt", "ok.txt"]
