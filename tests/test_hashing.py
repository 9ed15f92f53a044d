"""File and folder digests: checksum-tool compatibility, the Merkle encoding, bad input."""

from __future__ import annotations

import array
import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from reprokit.capturing import _hashworker, _pool
from reprokit.capturing._filehash import SMALL_FILE
from reprokit.capturing.hashcache import stat_key
from reprokit.capturing.hashing import (
    SUPPORTED_ALGORITHMS,
    check_expected,
    hash_file,
    hash_path,
    hash_paths,
    manifest_of,
    parse_expected,
)
from reprokit.capturing.model import DataEntry, DataManifest
from reprokit.exceptions import DigestMismatchError, PathError, ReprokitWarning, UsageError


def _plain(algorithm: str, data: bytes) -> str:
    if algorithm == "blake3":
        return str(blake3.blake3(data).hexdigest())
    return hashlib.new(algorithm, data).hexdigest()


def _merkle(root: Path, algorithm: str) -> str:
    """The folder digest, recomputed from the encoding the module docstring defines."""
    files = sorted(
        (os.fsencode(p.relative_to(root).as_posix()), p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    )
    text = b"".join(
        rel + b"\0" + str(len(data)).encode() + b"\0" + _plain(algorithm, data).encode() + b"\n"
        for rel, data in files
    )
    return _plain(algorithm, text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "a.b").write_bytes(b"sorts before a/ in byte order")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (root / "sub" / "deeper" / "c").write_bytes(b"")
    (root / "ünïcødé ✓.txt").write_bytes(b"unicode name")
    (root / "new\nline").write_bytes(b"a name with a newline")
    for name in ("sub.txt", "sub0", "sub-", "s"):  # interleave with sub/... in byte order
        (root / name).write_bytes(name.encode())
    (root / "sub" / "deeper.txt").write_bytes(b"beside deeper/")
    return root


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, 8191, SMALL_FILE - 1, SMALL_FILE + 12345])
def test_file_digest_is_the_plain_digest_of_its_bytes(
    tmp_path: Path, algorithm: str, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, algorithm=algorithm) == _plain(algorithm, data)
    entry = hash_path(path, algorithm=algorithm, cache=None)
    assert (entry.kind, entry.size, entry.digest, entry.files) == (
        "file",
        size,
        _plain(algorithm, data),
        (),
    )


@pytest.mark.parametrize(
    ("algorithm", "tool"), [("blake3", "b3sum"), ("sha256", "sha256sum"), ("md5", "md5sum")]
)
def test_file_digest_equals_the_command_line_checksum_tool(
    tmp_path: Path, algorithm: str, tool: str
) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(SMALL_FILE * 3 + 7))
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True).stdout
    assert hash_file(path, algorithm=algorithm) == out.split()[0]


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
def test_folder_digest_follows_the_documented_merkle_encoding(tree: Path, algorithm: str) -> None:
    entry = hash_path(tree, algorithm=algorithm, cache=None)
    assert entry.kind == "dir"
    assert entry.digest == _merkle(tree, algorithm)
    names = [f.path for f in entry.files]
    assert names == sorted(names, key=os.fsencode)
    assert names[:2] == ["a.b", "a.txt"]
    assert "new\nline" in names and "sub/deeper/c" in names and "ünïcødé ✓.txt" in names
    assert entry.size == sum(f.size for f in entry.files)
    by_name = {f.path: f for f in entry.files}
    assert by_name["a.txt"].digest == _plain(algorithm, b"alpha\n")


def test_folder_digest_matches_the_shell_recipe_in_the_docstring(tree: Path) -> None:
    shutil.rmtree(tree / "empty_dir")
    (tree / "new\nline").unlink()  # the shell recipe reads names line by line
    recipe = (
        "find -L . -type f -printf '%P\\n' | LC_ALL=C sort | while IFS= read -r f; do "
        'printf \'%s\\0%s\\0%s\\n\' "$f" "$(stat -L -c %s "$f")" '
        '"$(sha256sum < "$f" | cut -c1-64)"; done | sha256sum'
    )
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and GNU coreutils")
    out = subprocess.run(
        ["bash", "-c", recipe], cwd=tree, capture_output=True, text=True, check=True
    )
    assert hash_path(tree, algorithm="sha256", cache=None).digest == out.stdout.split()[0]


def test_empty_folder_hashes_the_empty_string(tmp_path: Path) -> None:
    entry = hash_path(tmp_path, cache=None)
    assert (entry.size, entry.files, entry.digest) == (0, (), _plain("blake3", b""))


def test_names_that_are_not_utf8_are_hashed_by_their_raw_bytes(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.bin")
    with open(raw, "wb") as handle:
        handle.write(b"latin-1 name")
    entry = hash_path(tmp_path, cache=None)
    assert entry.files[0].path == os.fsdecode(b"caf\xe9.bin")
    line = b"caf\xe9.bin\x0012\x00" + _plain("blake3", b"latin-1 name").encode() + b"\n"
    assert entry.digest == _plain("blake3", line)


def test_entry_path_is_normalised_or_relative(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    assert hash_path("./data/", cache=None).path == "data"
    assert hash_path(tree / "sub", cache=None, relative_to=tree).path == "sub"
    assert hash_path(tree / "a.txt", cache=None, relative_to=tree.parent).path == "data/a.txt"


def test_hash_paths_keeps_the_order_given(tree: Path) -> None:
    manifest = hash_paths([tree / "sub", tree / "a.txt"], cache=None, relative_to=tree)
    assert isinstance(manifest, DataManifest)
    assert [e.path for e in manifest.entries] == ["sub", "a.txt"]
    assert all(isinstance(e, DataEntry) for e in manifest.entries)


def test_symbolic_links_are_followed_to_files_and_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"x" * 10)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link_file").symlink_to(outside / "x")
    (root / "link_dir").symlink_to(outside)
    entry = hash_path(root, cache=None)
    assert [(f.path, f.size) for f in entry.files] == [("link_dir/x", 10), ("link_file", 10)]


def test_worker_processes_give_the_same_digests(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        (tree / "sub" / f"n{i}").write_bytes(os.urandom(i * 97))
    (tree / "sub" / "large").write_bytes(os.urandom(5000))
    monkeypatch.setattr(_pool, "DEFER_FROM", 4096)  # the large file comes back to the parent
    serial = hash_path(tree, cache=None, jobs=1)
    assert hash_path(tree, cache=None, jobs=2) == serial
    assert hash_path(tree, cache=None, jobs=3) == serial


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_each_start_method_hashes_every_share(tree: Path, method: str) -> None:
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    batch = _pool.hash_files(prefix, rels, "sha256", keys=True, jobs=2, method=method)
    assert batch.workers == 2 and not batch.errors
    expected = [_plain("sha256", (tree / os.fsdecode(r)).read_bytes()) for r in rels]
    assert batch.hexdigests() == expected
    assert batch.keys == [stat_key(os.stat(tree / os.fsdecode(r))) for r in rels]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_make_the_folder_digests_input_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Blocks of consecutive files, claimed by the processes one at a time (3 here, blocks of 4
    files): their lines joined are the documented input, and a file that could
    not be hashed here (deferred to the caller) leaves the caller to make it."""
    from reprokit.capturing.hashing import merkle_input

    for i in range(700):
        (tmp_path / f"d{i // 100}").mkdir(exist_ok=True)
        (tmp_path / f"d{i // 100}" / f"f{i:04d}").write_bytes(os.urandom(i % 300))
    rels = sorted(os.fsencode(p.relative_to(tmp_path)) for p in tmp_path.rglob("f*"))
    prefix = os.fsencode(tmp_path) + b"/"
    batch = _pool.hash_files(prefix, rels, "blake3", jobs=3, method=method, lines=True)
    assert batch.workers == 3 and _pool.block_size(len(rels), 3) == 4
    hexes = batch.hexdigests()
    expected = merkle_input([os.fsdecode(r) for r in rels], batch.sizes, hexes)  # type: ignore[arg-type]
    assert batch.lines is not None and b"".join(batch.lines) == expected
    assert hexes == [_plain("blake3", (tmp_path / os.fsdecode(r)).read_bytes()) for r in rels]
    (tmp_path / "d3" / "f0301").write_bytes(os.urandom(3 << 19))  # over SMALL_FILE
    monkeypatch.setattr(_pool, "DEFER_FROM", 1 << 20)  # so it comes back to the parent
    deferred = _pool.hash_files(prefix, rels, "blake3", jobs=3, method=method, lines=True)
    assert deferred.lines is None and deferred.hexdigests()[302] == hexes[302]
    assert deferred.hexdigests()[301] == _plain("blake3", (tmp_path / "d3" / "f0301").read_bytes())
    assert hash_path(tmp_path, cache=None, jobs=3).digest == _merkle(tmp_path, "blake3")
    few = _pool.hash_files(prefix, rels[:3], "blake3", jobs=5, method=method, lines=True)
    assert few.workers == 3 and few.lines is not None  # no worker started with nothing to do


def test_blocks_claimed_by_a_worker_whose_reply_is_lost_are_hashed_here(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker claims blocks from the shared counter, then its reply is lost (it died, or
    sent garbage): the blocks nobody returned are hashed by the caller, each once."""
    for i in range(300):
        (tree / "sub" / f"n{i:03d}").write_bytes(os.urandom(i))
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = [_plain("blake3", (tree / os.fsdecode(r)).read_bytes()) for r in rels]
    # the worker's reply to each block it hashes is garbage
    monkeypatch.setattr(_hashworker, "send", lambda out, value: out.write(b"\x04\0\0\0junk"))
    here: list[int] = []
    claimed = _pool.hash_blocks
    monkeypatch.setattr(
        _pool, "hash_blocks", lambda *a, **k: here.append(len(got := claimed(*a, **k))) or got
    )
    batch = _pool.hash_files(prefix, rels, "blake3", keys=True, jobs=2, method="fork")
    assert batch.hexdigests() == expected and None not in batch.keys and not batch.errors
    assert here and here[0] < len(rels) // _pool.block_size(len(rels), 2) + 1  # a share
    monkeypatch.undo()
    claims = _pool.hash_files(prefix, rels, "blake3", jobs=2, method="fork", lines=True)
    assert claims.hexdigests() == expected and claims.lines is not None

    from reprokit.capturing._hashworker import pack_share

    blocks = [[b"a", b"b", b"c"]]
    share = ([b"x" * 32, None, b"z" * 32], [1, 2, 3], [], [(1, "gone")], [], 0, None)
    packed = pack_share(share, "blake3")
    assert _pool._blocks_of([(0, packed)], blocks, "blake3") == [(0, share)]
    refused = [
        (packed[0], packed[1][:16], *packed[2:]),  # a size short
        (*packed[:3], [(3, "gone")], *packed[4:]),  # an error out of the block
        (*packed[:3], [(1, b"gone")], *packed[4:]),
        (*packed[:6], [b"", b""]),  # two blocks of lines for one
        packed[:6],
    ]
    for bad in refused:
        assert _pool._blocks_of([(0, bad)], blocks, "blake3") is None, bad
    assert _pool._blocks_of([(1, packed)], blocks, "blake3") is None


def test_joined_records_read_as_a_sequence_of_them() -> None:
    """A worker's digests or fingerprints stay joined in one ``bytes`` (:class:`Joined`), read
    like the list of records it stands for, and are joined again without being split."""
    from reprokit.capturing._hashworker import Joined, count_known, joined, unpack_share

    records = [b"aa", b"bb", b"cc", b"dd"]
    rows = Joined(b"".join(records), 2)
    assert len(rows) == 4 and list(rows) == records and rows == records and rows != records[:3]
    assert rows[0] == b"aa" and rows[-1] == b"dd" and rows[1:3] == [b"bb", b"cc"]
    assert rows[::2] == [b"aa", b"cc"] and rows[5:9] == [] and not Joined(b"", 2)
    assert isinstance(rows[1:3], Joined) and joined(rows[1:3]) == b"bbcc"
    assert joined([b"x", b"y"]) == b"xy" and count_known(rows) == 4
    assert count_known([b"x", None]) == 1 and b"cc" in rows and None not in rows
    with pytest.raises(IndexError):
        rows[4]
    digests, sizes = bytes(range(64)), array.array("q", [5, 6]).tobytes()
    share = unpack_share((digests, sizes, bytes(80), [], [], 7, None), 2, "blake3")
    assert share is not None and isinstance(share[0], Joined) and isinstance(share[2], Joined)
    assert share[0] == [digests[:32], digests[32:]] and share[1] == [5, 6]
    batch = _pool.Batch.of(share)
    assert batch.hexdigests() == [digests[:32].hex(), digests[32:].hex()]
    assert _pool.Batch(Joined(b"", 32), []).hexdigests() == []


def _no_temporary_file(prefix: str = "") -> Any:
    raise OSError(28, "No space left on device")


def test_a_worker_without_a_pipe_leaves_its_share_here(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No temporary file and no pipe (out of descriptors): the workers cannot start, and
    this process hashes and ``stat``s everything, with the same outcome."""
    import errno
    import types

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()
    folders = [(b"sub", [b"b.bin", b"deeper.txt"]), (b"", [b"a.txt", b"s"])] * 3
    stamps = _pool.stamp_folders(prefix, folders, jobs=1)

    def no_pipe() -> tuple[int, int]:
        raise OSError(errno.EMFILE, "Too many open files")

    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__, pipe=no_pipe)
    monkeypatch.setattr(_pool, "os", proxy)
    monkeypatch.setattr(_pool.tempfile, "TemporaryFile", _no_temporary_file)
    monkeypatch.setattr(_pool, "STAT_PARALLEL_MIN_FILES", 1)
    batch = _pool.hash_files(prefix, rels, "blake3", jobs=2, method="fork")
    assert batch.hexdigests() == expected
    assert _pool.stamp_folders(prefix, folders, jobs=2, method="fork") == stamps


def test_a_ctrl_c_while_replies_are_read_never_signals_a_reaped_worker(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reaped before its replies are read is off the list: the clean-up after a
    Ctrl-C there does not send its pid (free again, maybe another process's) a SIGKILL."""
    import types

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    signalled: list[int] = []
    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__, kill=lambda pid, sig: signalled.append(pid))
    monkeypatch.setattr(_pool, "os", proxy)

    def interrupted(fd: int) -> Callable[[int], bytes]:
        raise KeyboardInterrupt

    monkeypatch.setattr(_pool, "_file_reader", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _pool.hash_files(prefix, rels, "blake3", jobs=2, method="fork")
    assert not signalled


def test_a_worker_whose_reply_through_a_pipe_is_garbage_is_read_to_its_end(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies through a pipe (no temporary file) that turn out to be garbage are still read
    to their end: the worker, writing more than a pipe holds, is not left waiting for ever
    (nor the caller, waiting for it), and its blocks are hashed here."""
    import threading

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()
    monkeypatch.setattr(_pool.tempfile, "TemporaryFile", _no_temporary_file)
    junk = b"\x04\0\0\0junk" + bytes(1 << 17)  # a record marshal refuses, then 128 KiB
    monkeypatch.setattr(_hashworker, "send", lambda out, value: out.write(junk))
    done: list[_pool.Batch] = []
    hashing = threading.Thread(
        target=lambda: done.append(_pool.hash_files(prefix, rels, "blake3", jobs=2, method="fork")),
        daemon=True,
    )
    hashing.start()
    hashing.join(60)
    assert done and done[0].hexdigests() == expected


def _open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_ctrl_c_as_a_replies_file_closes_is_a_clean_interrupt(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C landing as a worker's replies' file is closed is a KeyboardInterrupt (not
    an error about a closed file), and the clean-up closes everything."""
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"

    class Closing:
        def __init__(self, real: Any) -> None:
            self.real = real

        def fileno(self) -> int:
            return int(self.real.fileno())

        def close(self) -> None:
            self.real.close()
            raise KeyboardInterrupt

    made = _pool._Replies.__init__

    def replies(self: Any, *args: Any) -> None:
        made(self, *args)
        self._file = Closing(self._file) if self._file is not None else None

    monkeypatch.setattr(_pool._Replies, "__init__", replies)
    before = _open_fds()
    with pytest.raises(KeyboardInterrupt):
        _pool.hash_files(prefix, rels, "blake3", jobs=3, method="fork")
    assert set(_open_fds().items()) <= set(before.items())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_ctrl_c_as_a_stat_worker_is_forked_leaves_nothing_behind(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers that ``stat`` a cached tree start with a Ctrl-C held back until they are
    listed: one landing right after a fork stops that worker too (no zombie, no pipe)."""
    import types

    folders = [(b"sub", [b"b.bin", b"deeper.txt"]), (b"", [b"a.txt", b"s"])] * 3
    prefix = os.fsencode(tree) + b"/"
    real_fork, forked = os.fork, []

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
            os.kill(os.getpid(), signal.SIGINT)  # lands right after the fork, in the caller
        return pid

    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__, fork=fork)
    monkeypatch.setattr(_pool, "os", proxy)
    monkeypatch.setattr(_pool, "STAT_PARALLEL_MIN_FILES", 1)
    before = _open_fds()
    with pytest.raises(KeyboardInterrupt):
        _pool.stamp_folders(prefix, folders, jobs=3, method="fork")
    assert set(_open_fds().items()) <= set(before.items())
    assert forked
    for pid in forked:  # reaped: none left, not even a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_hashing_needs_no_feed_file_nor_locks(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the feed file cannot be written (a full disk) or locked (ENOLCK), nor the
    workers' replies, the blocks are still all hashed, once each at least, with the same
    digests."""
    import errno

    from reprokit.capturing import _hashworker

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()

    def no_locks(fd: int, how: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_hashworker.fcntl, "lockf", no_locks)
    assert _pool.hash_files(prefix, rels, "blake3", jobs=3, method="fork").hexdigests() == expected
    monkeypatch.undo()
    unwritable = tmp_path / "read-only"  # a feed file that cannot be written: as on a full disk
    unwritable.write_bytes(b"")
    monkeypatch.setattr(_pool.tempfile, "TemporaryFile", lambda prefix: unwritable.open("rb"))
    here: list[int] = []  # the blocks this process hashed: a share, not all of them
    claimed = _pool.hash_blocks
    monkeypatch.setattr(
        _pool, "hash_blocks", lambda *a, **k: here.append(len(got := claimed(*a, **k))) or got
    )
    monkeypatch.setattr(_pool, "_spawn_broken", False)
    for method in ("fork", "spawn"):  # the workers' replies cannot be written either
        batch = _pool.hash_files(prefix, rels, "blake3", jobs=3, method=method)
        assert batch.hexdigests() == expected and batch.workers == 3
        assert 0 < here.pop() < len(rels)
    assert not _pool._spawn_broken  # a full disk is no reason to stop spawning workers


def test_a_feed_write_that_fails_once_seals_the_feed(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary folder full for a moment: the block that could not be written, and every
    one after it, is hashed by the caller, even when later writes would succeed (a worker must
    never read a block's files where another block's are)."""
    import errno
    import types

    for i in range(60):
        (tree / "sub" / f"n{i:03d}").write_bytes(os.urandom(i))
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1, lines=True)
    writes = [0]

    def pwrite(fd: int, data: bytes, at: int) -> int:
        if at >= _hashworker.FEED_HEADER.size:  # a block, not the header
            writes[0] += 1
            if writes[0] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return os.pwrite(fd, data, at)

    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__, pwrite=pwrite)
    monkeypatch.setattr(_pool, "os", proxy)
    monkeypatch.setattr(_pool, "start_method", lambda: "fork")
    monkeypatch.setattr(_pool, "PARALLEL_MIN_FILES", {"fork": 4, "spawn": 4})
    monkeypatch.setattr(_pool, "STREAM_BLOCK", 4)
    told = _pool.task(prefix, "blake3", lines=True)
    with _pool.Ahead(2, told) as ahead:
        walked: list[bytes] = []
        for at in range(0, len(rels), 5):
            walked.extend(rels[at : at + 5])
            ahead.seen(walked)
        batch = _pool.hash_files(prefix, walked, "blake3", jobs=2, lines=True, ahead=ahead)
    assert writes[0] == 3  # no block written after the failure
    assert batch.hexdigests() == expected.hexdigests()
    assert b"".join(batch.lines or []) == b"".join(expected.lines or [])


def test_a_feed_that_takes_no_block_at_all_leaves_the_workers_their_shares(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary folder with room for the header only: no worker is started during the
    walk, and the hashing after it gives each process its share of blocks (in memory for a
    fork, in the job for a spawned interpreter) rather than leaving all to the caller. And
    no more processes than the descriptors allow."""
    import errno
    import resource
    import types

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()

    def pwrite(fd: int, data: bytes, at: int) -> int:
        if at >= _hashworker.FEED_HEADER.size:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.pwrite(fd, data, at)

    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__, pwrite=pwrite)
    monkeypatch.setattr(_pool, "os", proxy)
    monkeypatch.setattr(_pool, "PARALLEL_MIN_FILES", {"fork": 2, "spawn": 2})
    monkeypatch.setattr(_pool, "STREAM_BLOCK", 1)
    here: list[int] = []
    claimed = _pool.hash_blocks
    monkeypatch.setattr(
        _pool, "hash_blocks", lambda *a, **k: here.append(len(got := claimed(*a, **k))) or got
    )
    for method in ("fork", "spawn"):
        monkeypatch.setattr(_pool, "start_method", lambda m=method: m)
        with _pool.Ahead(2, _pool.task(prefix, "blake3")) as ahead:
            walked = list(rels)
            ahead.seen(walked)
            assert ahead._crew is None
            batch = _pool.hash_files(prefix, walked, "blake3", jobs=2, ahead=ahead)
        assert batch.hexdigests() == expected and here
        if method == "spawn":  # the job holds every block: fixed shares (a fork claims them)
            assert 0 < here.pop() < len(rels)
    used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    monkeypatch.setattr(resource, "getrlimit", lambda what: (used + 16 + 4 * 3 + 2, 1 << 20))
    assert _pool.fd_room() == 3


def _wait_ignoring(pid: int, sig: signal.Signals) -> None:
    """Until the process ``pid`` ignores ``sig`` (its handler set), read from ``/proc``."""
    status = Path(f"/proc/{pid}/status")
    if not Path("/proc/self/status").exists():  # no /proc: give it time
        time.sleep(2)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = status.read_text().splitlines()
        ignored = [int(line.split()[1], 16) for line in lines if line.startswith("SigIgn:")]
        if ignored and ignored[0] >> (sig - 1) & 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not come to ignore {sig.name}")


def test_spawned_workers_run_under_safe_path_and_ignore_a_terminals_interrupt(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PYTHONSAFEPATH`` (no script folder on ``sys.path``) does not stop a spawned worker
    from importing its sibling; a Ctrl-C in the terminal reaches the worker too, which leaves
    it to the caller (no traceback of its own). And the feed file has no name to leave
    behind."""
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    monkeypatch.setattr(_pool, "_spawn_broken", False)
    batch = _pool.hash_files(prefix, rels, "blake3", jobs=2, method="spawn")
    assert batch.workers == 2 and not _pool._spawn_broken
    assert batch.hexdigests() == _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()
    worker = _pool._start_spawned()
    _wait_ignoring(worker.pid, signal.SIGINT)  # its interpreter up, and its handler set
    worker.send_signal(signal.SIGINT)
    job = ("stat", prefix, [(b"", [])])
    _pool._feed(worker, job)
    assert _pool._finish(worker) == [b""] and worker.returncode == 0
    feed = _pool.Feed()
    assert feed.fd is not None
    if os.path.isdir("/proc/self/fd"):
        assert os.readlink(f"/proc/self/fd/{feed.fd}").endswith("(deleted)")
    feed.close()


def test_a_ctrl_c_while_a_large_file_is_hashed_stops_it_and_leaves_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files are hashed with SIGINT held back a few ms at a time; a large one lets it
    through at once (a 10 GB file must not keep Ctrl-C waiting), its descriptor closed."""
    (tmp_path / "big").write_bytes(b"x" * SMALL_FILE)
    for i in range(300):
        (tmp_path / f"small{i:03d}").write_bytes(b"%d" % i)
    finished: list[bool] = []
    digest_rest = _hashworker._digest_rest

    def interrupted(*args: Any) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the KeyboardInterrupt comes here
        finished.append(True)
        return digest_rest(*args)

    monkeypatch.setattr(_hashworker, "_digest_rest", interrupted)
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    with pytest.raises(KeyboardInterrupt):
        hash_path(tmp_path, cache=None, jobs=1)
    assert not finished
    if fds:
        assert set(os.listdir("/proc/self/fd")) <= fds
    monkeypatch.undo()
    assert hash_path(tmp_path, cache=None, jobs=1) == hash_path(tmp_path, cache=None)


def test_an_interrupt_while_a_worker_starts_waits_until_it_is_recorded() -> None:
    reached: list[bool] = []
    with pytest.raises(KeyboardInterrupt), _hashworker.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # delivered here if it were not held back
        reached.append(True)
    assert reached


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_hash_a_folder_while_it_is_walked(
    tree: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers start once the walk has met enough files and hash its blocks as it goes; the
    hashing then takes what they did and they are gone, feed file included. Started for
    something else than what is then hashed (part of the folder, other fingerprints), they
    are stopped and the files hashed as usual."""
    for i in range(40):
        (tree / "sub" / f"n{i:03d}").write_bytes(os.urandom(i))
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", keys=True, jobs=1, lines=True)
    monkeypatch.setattr(_pool, "start_method", lambda: method)
    monkeypatch.setattr(_pool, "_spawn_broken", False)
    monkeypatch.setattr(_pool, "PARALLEL_MIN_FILES", {"fork": 10, "spawn": 10})
    monkeypatch.setattr(_pool, "STREAM_BLOCK", 4)
    private = tree.parent / "private-tmp"  # the shared one gets other tests' files meanwhile
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    told = _pool.task(prefix, "blake3", keys=True, lines=True)
    with _pool.Ahead(3, told) as ahead:
        walked: list[bytes] = []
        for at in range(0, len(rels), 7):  # the walk meets 7 more files each time
            walked.extend(rels[at : at + 7])
            ahead.seen(walked)
            assert (ahead._crew is not None) == (len(walked) >= 10)
        handles = list(ahead._crew.handles)  # type: ignore[union-attr]
        assert len(handles) == 2 and None not in handles
        batch = _pool.hash_files(
            prefix, walked, "blake3", keys=True, jobs=3, lines=True, ahead=ahead
        )
    assert batch.hexdigests() == expected.hexdigests() and batch.keys == expected.keys
    assert b"".join(batch.lines or []) == b"".join(expected.lines or []) and batch.workers == 3
    assert os.listdir(private) == []  # the feed file removed
    with _pool.Ahead(2, told) as ahead:
        walked = list(rels)
        ahead.seen(walked)
        (worker,) = ahead._crew.handles  # type: ignore[union-attr]
        other = _pool.hash_files(prefix, walked[:-1], "blake3", keys=True, jobs=2, ahead=ahead)
        assert other.hexdigests() == expected.hexdigests()[:-1]
    pid = worker[0] if method == "fork" else worker.pid
    with pytest.raises(ChildProcessError):  # stopped, and reaped
        os.waitpid(pid, os.WNOHANG)


def test_a_feed_that_cannot_take_more_blocks_leaves_them_to_the_caller(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while the folder is walked: the workers claim no more than the feed
    holds, stop, and the caller hashes every block nobody returned."""
    import errno

    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    expected = _pool.hash_files(prefix, rels, "blake3", jobs=1).hexdigests()
    monkeypatch.setattr(_pool, "start_method", lambda: "spawn")
    monkeypatch.setattr(_pool, "_spawn_broken", False)
    monkeypatch.setattr(_pool, "PARALLEL_MIN_FILES", {"fork": 2, "spawn": 2})
    monkeypatch.setattr(_pool, "STREAM_BLOCK", 1)
    told = _pool.task(prefix, "blake3")
    with _pool.Ahead(2, told) as ahead:
        ahead.seen(rels[:2])
        write = os.pwrite
        monkeypatch.setattr(
            _pool.os,
            "pwrite",
            lambda fd, data, at: (
                (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
                if len(data) > 16
                else write(fd, data, at)
            ),
        )
        walked = list(rels)
        ahead.seen(walked)
        batch = _pool.hash_files(prefix, walked, "blake3", jobs=2, ahead=ahead)
    assert batch.hexdigests() == expected and not batch.errors


def test_workers_are_started_ahead_only_for_a_folder_the_cache_does_not_know(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-check of a cached folder has few files to hash, if any: starting interpreters
    during its walk would be work thrown away. And an interruption while they start leaves
    none running."""
    from reprokit.capturing.hashcache import HashCache

    started: list[object] = []
    monkeypatch.setattr(_pool, "start_method", lambda: "spawn")
    monkeypatch.setattr(_pool, "_spawn_broken", False)
    monkeypatch.setattr(_pool, "PARALLEL_MIN_FILES", {"fork": 1, "spawn": 1})
    no_worker = lambda feed=None, out=None: started.append(1)  # noqa: E731
    monkeypatch.setattr(_pool, "_start_spawned", no_worker)
    with HashCache(tmp_path / "cache.sqlite3", racy_margin_ns=0) as cache:
        assert not cache.knows_tree("blake3", os.fsencode(tree))
        first = hash_path(tree, cache=cache, jobs=2)
        assert started and cache.knows_tree("blake3", os.fsencode(tree))
        started.clear()
        assert hash_path(tree, cache=cache, jobs=2) == first and not started
    assert not _pool.Ahead(0, _pool.task(b"/", "blake3"))._wanted

    def interrupted(feed: object = None, out: object = None) -> object:
        if len(started) == 2:
            raise KeyboardInterrupt
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        started.append(subprocess.Popen(sleeper, stdin=subprocess.PIPE))
        return started[-1]

    monkeypatch.setattr(_pool, "_start_spawned", interrupted)
    started.clear()
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    with pytest.raises(KeyboardInterrupt), _pool.Ahead(4, _pool.task(b"/", "blake3")) as ahead:
        ahead.seen([b"a"] * 10)
    assert [p.wait(timeout=10) for p in started] == [-9, -9]  # both killed on the way out
    for p in started:  # their pipes are this test's to close
        p.stdin.close()
    if fds:  # the feed and the three replies' files closed
        assert set(os.listdir("/proc/self/fd")) <= fds


def test_missing_path_is_a_path_error(tmp_path: Path) -> None:
    with pytest.raises(PathError) as info:
        hash_path(tmp_path / "nope", cache=None)
    assert info.value.reason == "no such file or directory"
    assert info.value.path.endswith("/nope")
    with pytest.raises(PathError):
        hash_file(tmp_path / "nope")


def test_unknown_algorithm_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="sha1"):
        hash_path(tmp_path, algorithm="sha1", cache=None)


def test_symbolic_link_to_a_parent_folder_is_a_loop(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "back").symlink_to(tmp_path / "d")
    with pytest.raises(PathError, match="loop") as info:
        hash_path(tmp_path / "d", cache=None)
    assert info.value.path.endswith("d/e/back")


def test_self_referencing_symbolic_link_is_a_loop(tmp_path: Path) -> None:
    (tmp_path / "me").symlink_to(tmp_path / "me")
    with pytest.raises(PathError, match="loop") as info:
        hash_path(tmp_path / "me", cache=None)
    assert info.value.path.endswith("me")
    with pytest.raises(PathError, match="loop"):
        hash_path(tmp_path, cache=None)


def test_dangling_symbolic_link_in_a_folder_is_a_path_error(tmp_path: Path) -> None:
    (tmp_path / "gone").symlink_to(tmp_path / "missing")
    with pytest.raises(PathError, match="broken symbolic link") as info:
        hash_path(tmp_path, cache=None)
    assert info.value.path.endswith("/gone")


@pytest.fixture
def special_files(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "with_specials"
    root.mkdir()
    (root / "real.txt").write_bytes(b"data")
    os.mkfifo(root / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    yield root
    server.close()


def test_fifos_and_sockets_in_a_folder_are_skipped_with_a_warning(special_files: Path) -> None:
    with pytest.warns(ReprokitWarning, match="skipped") as seen:
        entry = hash_path(special_files, cache=None)  # would block if the FIFO were opened
    assert [w.filename for w in seen] == [__file__]  # it points at the caller
    with pytest.warns(ReprokitWarning, match="with_specials: skipped pipe") as seen:
        assert hash_paths([special_files], cache=None).entries == (entry,)
    assert [w.filename for w in seen] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listed in the entry, not said
        assert manifest_of([special_files], "blake3", None, None, None).entries == (entry,)
    assert [f.path for f in entry.files] == ["real.txt"]
    assert entry.skipped == (
        "pipe: FIFO (not a regular file)",
        "sock: socket (not a regular file)",
    )
    assert entry.digest == _merkle(special_files, "blake3")


@pytest.mark.parametrize(("name", "kind"), [("pipe", "FIFO"), ("sock", "socket")])
def test_a_fifo_or_socket_given_directly_is_a_path_error(
    special_files: Path, name: str, kind: str
) -> None:
    with pytest.raises(PathError, match=kind):
        hash_path(special_files / name, cache=None)
    with pytest.raises(PathError, match=kind):
        hash_file(special_files / name)


def _as_unprivileged(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a forked child that dropped root (uid/gid 65534); its exception."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        outcome: BaseException | None = None
        try:
            os.setgid(65534)
            os.setuid(65534)
            call()
        except BaseException as exc:
            outcome = exc
        with os.fdopen(write_fd, "wb") as out:
            pickle.dump(outcome, out)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as source:
        result: BaseException | None = pickle.load(source)
    os.waitpid(pid, 0)
    return result


@pytest.mark.parametrize("what", ["file", "folder"])
def test_unreadable_file_or_folder_is_a_path_error(what: str) -> None:
    # Root ignores permission bits, and these tests run as root: there the hashing runs
    # in a forked child that dropped to uid 65534.  That child cannot enter pytest's
    # tmp_path (mode 0700), hence a world-traversable folder of our own.
    root = Path(tempfile.mkdtemp(prefix="reprokit-perm-"))
    try:
        root.chmod(0o755)
        (root / "ok.txt").write_bytes(b"readable")
        target = root / "secret"
        if what == "file":
            target.write_bytes(b"hidden")
        else:
            target.mkdir()
            (target / "inner").write_bytes(b"hidden")
        target.chmod(0)
        if os.geteuid() == 0:
            error = _as_unprivileged(lambda: hash_path(root, cache=None, jobs=1))
        else:
            try:
                hash_path(root, cache=None)
                error = None
            except PathError as exc:
                error = exc
        assert isinstance(error, PathError), error
        assert error.reason == "permission denied"
        assert error.path.endswith("/secret")
    finally:
        (root / "secret").chmod(0o700)
        shutil.rmtree(root)


def test_parse_expected_accepts_algo_colon_hex() -> None:
    assert parse_expected("SHA256:" + "AB" * 32) == ("sha256", "ab" * 32)
    assert parse_expected("md5:" + "0" * 32) == ("md5", "0" * 32)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sha1:" + "a" * 40, "unknown hash algorithm"),
        ("sha256:" + "a" * 63, "64 hexadecimal"),
        ("md5:" + "g" * 32, "32 hexadecimal"),
        ("deadbeef", "ALGO:HEX"),
    ],
)
def test_parse_expected_rejects_malformed_specs(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_expected(spec)


def test_check_expected_passes_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"content")
    entry = hash_path(path, cache=None)
    check_expected(entry, entry.tagged_digest)
    wrong = "blake3:" + "0" * 64
    with pytest.raises(DigestMismatchError) as info:
        check_expected(entry, wrong)
    assert (info.value.expected, info.value.actual) == (wrong, entry.tagged_digest)
    assert info.value.exit_code == 1


def test_check_expected_rehashes_with_the_expected_algorithm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_bytes(b"content")
    monkeypatch.chdir(tmp_path)
    entry = hash_path("f", cache=None)
    check_expected(entry, "sha256:" + hashlib.sha256(b"content").hexdigest(), cache=None)
    with pytest.raises(DigestMismatchError):
        check_expected(entry, "md5:" + "1" * 32, cache=None)


def test_importing_hashing_stays_light() -> None:
    code = (
        "import sys, reprokit.capturing.hashing\n"
        "heavy = {'numpy', 'torch', 'pandas', 'multiprocessing', 'sqlite3', 'hashlib'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_warning_for_an_ordinary_folder(tree: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hash_path(tree, cache=None)


def test_a_spawned_worker_that_dies_at_start_up_leaves_its_share_to_this_process(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rels = sorted(os.fsencode(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    prefix = os.fsencode(tree) + b"/"
    monkeypatch.setattr(_pool, "_spawn_broken", False)  # restored after the test
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # exits before reading
    batch = _pool.hash_files(prefix, rels, "blake3", keys=True, jobs=2, method="spawn")
    assert not batch.errors and None not in batch.keys
    assert batch.hexdigests() == [
        _plain("blake3", (tree / os.fsdecode(r)).read_bytes()) for r in rels
    ]
    assert _pool._spawn_broken  # not tried again in this process


def test_no_sibling_of_the_hash_worker_shadows_a_standard_module() -> None:
    """A spawned worker runs ``capturing/_hashworker.py`` as a script, so its folder comes
    first on the worker's import path: a module there named like a standard one (``stat``,
    ``marshal``, ...) would be imported in its place."""
    import sys

    import reprokit.capturing

    folder = Path(reprokit.capturing.__file__).parent
    siblings = {path.stem for path in folder.glob("*.py")} | {p.name for p in folder.iterdir()}
    assert not siblings & set(sys.stdlib_module_names)


def test_the_folder_input_writes_each_size_whether_sizes_repeat_or_not() -> None:
    """The sizes in a folder digest's input are each file's, in decimal, whether most files
    share a size (each distinct size formatted once) or only the first few do."""
    from reprokit.capturing.hashing import merkle_input

    count = 300
    names = [f"f{i:03d}" for i in range(count)]
    digests = [f"{i:064x}" for i in range(count)]
    shared, some, none = [1024] * count, [7] * 100 + list(range(200)), list(range(count))
    for sizes in (shared, some, none, [1] * 299 + [True]):  # True: as str() writes it
        rows = zip(names, sizes, digests, strict=True)
        expected = "".join(f"{n}\0{s}\0{d}\n" for n, s, d in rows)
        assert merkle_input(names, sizes, digests) == expected.encode()
    assert merkle_input([], [], []) == b""
