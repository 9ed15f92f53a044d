"""A snapshot as a notebook carries it: the data folders' file lists left out, digests kept.

A folder of 100,000 data files makes a snapshot of about 15 MB, which would travel in the
``%repro start`` cell's output and be re-read and re-written with the notebook ever after.
The notebook gets instead the snapshot with each data folder's ``files`` emptied, beside a
:class:`SnapshotSummary`: file counts, bytes, the digest of each data path (a folder's
Merkle digest) and an environment digest. The full snapshot stays in the run's folder
(``snapshot.json``), in MLflow's artifacts and in the lock.

:func:`restores` tells whether a full snapshot read back from such a place is the one a
summary stands for: the same environment digest, the same data paths, and file lists whose
Merkle digests are the folders' digests (recomputed, so a file list cannot be swapped).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reprokit.capturing.model import DataEntry, DataManifest, Snapshot

__all__ = [
    "DataRootSummary",
    "SnapshotSummary",
    "environment_digest",
    "restores",
    "summarise",
    "without_file_lists",
]


@dataclass(frozen=True)
class DataRootSummary:
    """One declared data path, without its file list."""

    path: str
    kind: str  # "file" | "dir"
    files: int  # 1 for a file
    bytes: int
    digest: str  # ALGO:HEX; a folder's Merkle digest


@dataclass(frozen=True)
class SnapshotSummary:
    """What a notebook says about the snapshot whose data file lists it leaves out."""

    environment_digest: str  # blake3:HEX of the snapshot's canonical JSON, data left out
    files: int  # data files over all paths
    bytes: int
    data: tuple[DataRootSummary, ...] = ()


def summarise(snapshot: Snapshot) -> tuple[Snapshot, SnapshotSummary]:
    """``snapshot`` without its data folders' file lists, and the summary of what was left
    out."""
    entries = snapshot.data.entries if snapshot.data is not None else ()
    roots = tuple(
        DataRootSummary(e.path, e.kind, _file_count(e), e.size, e.tagged_digest) for e in entries
    )
    summary = SnapshotSummary(
        environment_digest=environment_digest(snapshot),
        files=sum(root.files for root in roots),
        bytes=sum(root.bytes for root in roots),
        data=roots,
    )
    if snapshot.data is None:
        return snapshot, summary
    return replace(snapshot, data=without_file_lists(snapshot.data)), summary


def environment_digest(snapshot: Snapshot) -> str:
    """``blake3:HEX`` of the snapshot's canonical JSON (sorted keys) without its data."""
    import blake3

    from reprokit._serde import to_json

    text = to_json(replace(snapshot, data=None), indent=None)
    return "blake3:" + blake3.blake3(text.encode("utf-8", "surrogatepass")).hexdigest()


def restores(full: Snapshot, summary: SnapshotSummary) -> bool:
    """Whether ``full`` is the snapshot ``summary`` summarises (see the module docstring)."""
    entries = full.data.entries if full.data is not None else ()
    if len(entries) != len(summary.data):
        return False
    if any(not _same_root(e, root) for e, root in zip(entries, summary.data, strict=True)):
        return False
    return environment_digest(full) == summary.environment_digest


def _same_root(entry: DataEntry, root: DataRootSummary) -> bool:
    if (entry.path, entry.kind, entry.tagged_digest) != (root.path, root.kind, root.digest):
        return False
    if entry.kind != "dir":
        return True
    if len(entry.files) != root.files or sum(f.size for f in entry.files) != root.bytes:
        return False
    return _merkle_digest(entry) == entry.digest


def _merkle_digest(entry: DataEntry) -> str:
    """The folder digest of ``entry``'s file list (:mod:`reprokit.capturing.hashing`)."""
    import hashlib

    from reprokit.capturing.hashing import merkle_input

    files = entry.files
    data = merkle_input([f.path for f in files], [f.size for f in files], [f.digest for f in files])
    if entry.algorithm == "blake3":
        import blake3

        return str(blake3.blake3(data).hexdigest())
    return hashlib.new(entry.algorithm, data).hexdigest()


def _file_count(entry: DataEntry) -> int:
    return entry.file_count if entry.kind == "dir" else 1


def without_file_lists(manifest: DataManifest) -> DataManifest:
    """``manifest`` with every folder's file list left out."""
    return replace(manifest, entries=tuple(replace(e, files=()) for e in manifest.entries))
