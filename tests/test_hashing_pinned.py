"""Folder digests are pinned: locks written by earlier versions must still match.

The literals below were computed by the code before the cached path stopped building file
objects eagerly and started stat'ing relative to each folder; any change to the Merkle input,
the walk order or the file reads shows here. Also pins that a folder's file list is made
only when read, and that such an entry behaves as the plain ``DataEntry``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from reprokit.capturing.hashcache import HashCache
from reprokit.capturing.hashing import hash_path
from reprokit.capturing.model import DataEntry, FileDigest

PINNED = {
    "blake3": "87ddd42648c7fc38d13839f95291163cc1850ea35c1bf7e2e18afcdcfe4eed4e",
    "sha256": "dc836e4bd0318029e857986c762f0ff934166f13999797913f7544e05874a4a1",
    "md5": "bcdfac9d26b42cc3406ac68ec33cccd6",
}


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)  # over 1 MiB: mapped
    (root / "sub" / "deeper" / "c").write_bytes(b"")
    (root / "zé.txt").write_bytes(b"\xff" * 3)
    return root


@pytest.mark.parametrize("algorithm", sorted(PINNED))
def test_folder_digest_is_what_earlier_versions_wrote(algorithm: str, tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    with HashCache(tmp_path / "cache.sqlite3", racy_margin_ns=0) as cache:
        first = hash_path(root, algorithm=algorithm, cache=cache)
        again = hash_path(root, algorithm=algorithm, cache=cache)  # served from the cache
        assert cache.stats.hits == 4
    assert first.digest == again.digest == PINNED[algorithm]
    assert hash_path(root, algorithm=algorithm, cache=None).digest == PINNED[algorithm]


def test_file_list_is_made_when_read_and_the_entry_is_a_plain_data_entry(tmp_path: Path) -> None:
    entry = hash_path(_tree(tmp_path / "data"), cache=None)
    assert "files" not in vars(entry)  # nothing built for a caller that reads the digest only
    plain = DataEntry(
        entry.path, "dir", entry.size, "blake3", entry.digest, entry.files, entry.skipped
    )
    assert [f.path for f in entry.files] == ["a.txt", "sub/b.bin", "sub/deeper/c", "zé.txt"]
    assert entry.files[0] == FileDigest("a.txt", 6, entry.files[0].digest)
    assert entry == plain and plain == entry and hash(entry) == hash(plain)
    assert repr(entry) == repr(plain)
    restored = pickle.loads(pickle.dumps(entry))
    assert type(restored) is DataEntry and restored == plain
