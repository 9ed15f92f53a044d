"""The persistent hash cache: used when valid, never stale, never racy, never fatal."""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from reprokit.capturing.hashcache import (
    DEFAULT_RACY_MARGIN_NS,
    KEY,
    HashCache,
    default_cache,
    default_cache_path,
    pack_entry,
)
from reprokit.capturing.hashing import hash_file, hash_path
from reprokit.exceptions import ReprokitWarning

BOGUS = "ee" * 32  # a digest no real content here has: served only from the cache


def _tree(root: Path, count: int = 5) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        (root / f"f{i}.txt").write_bytes(f"file {i}".encode())
    (root / "sub" / "g.bin").write_bytes(os.urandom(100))
    return root


def _plant(cache: HashCache, path: Path, *, after_change_ns: int, size_delta: int = 0) -> None:
    """Store a bogus entry for ``path``'s current stat, hashed ``after_change_ns`` after
    its last change (mtime/ctime), with its size altered by ``size_delta``."""
    st = os.stat(path)
    entry = bytearray(pack_entry(st, max(st.st_mtime_ns, st.st_ctime_ns) + after_change_ns, BOGUS))
    if size_delta:
        entry[16:24] = (st.st_size + size_delta).to_bytes(8, "little", signed=True)
    cache.store_files("blake3", [(os.fsencode(path.resolve()), bytes(entry))])


def test_a_trusted_entry_is_served_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"real content")
    with HashCache(tmp_path / "c.sqlite3") as cache:
        _plant(cache, path, after_change_ns=DEFAULT_RACY_MARGIN_NS + 10**9)
        assert hash_path(path, cache=cache).digest == BOGUS  # no byte was read
        assert cache.stats.hits == 1
        assert hash_path(path, cache=None).digest != BOGUS


def test_an_entry_hashed_within_the_racy_margin_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"real content")
    with HashCache(tmp_path / "c.sqlite3") as cache:
        # Same dev/ino/size/mtime/ctime, but hashed 1 ms after the last change: the file
        # could have been written again in the same timestamp tick, so it is re-read.
        _plant(cache, path, after_change_ns=1_000_000)
        assert hash_path(path, cache=cache).digest == hash_file(path)
        assert (cache.stats.racy, cache.stats.hits) == (1, 0)


@pytest.mark.parametrize("size_delta", [0, 5])
def test_a_stale_entry_is_not_served(tmp_path: Path, size_delta: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"real content")
    with HashCache(tmp_path / "c.sqlite3") as cache:
        _plant(cache, path, after_change_ns=10**12, size_delta=size_delta)
        if not size_delta:  # change the mtime instead
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
        assert hash_path(path, cache=cache).digest == hash_file(path)
        assert (cache.stats.stale, cache.stats.hits) == (1, 0)


def test_content_rewritten_with_the_same_size_and_mtime_right_after_hashing_is_seen(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "data")
    target = root / "f1.txt"
    with HashCache(tmp_path / "c.sqlite3") as cache:
        first = hash_path(root, cache=cache)
        st = os.stat(target)
        target.write_bytes(b"FILE 1")  # same size
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
        second = hash_path(root, cache=cache)
        assert second.digest != first.digest
        assert dict((f.path, f.digest) for f in second.files)["f1.txt"] == hash_file(target)
        assert second == hash_path(root, cache=None)


def test_a_freshly_written_tree_is_racy_until_it_is_old_enough(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    # a minute's margin, not the default 2 s: a loaded machine may take that long between
    # writing the tree and hashing it a second time
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=60 * 10**9) as cache:
        hash_path(root, cache=cache)
        hash_path(root, cache=cache)
        assert (cache.stats.hits, cache.stats.racy) == (0, 6)


def test_an_unchanged_tree_is_served_from_the_cache(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    # A margin of 0 trusts any entry whose file changed before hashing began, so the
    # freshly written files here need no waiting.
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        first = hash_path(root, cache=cache)
        assert (cache.stats.misses, cache.stats.written) == (6, 6)
        second = hash_path(root, cache=cache)
        assert second == first
        assert (cache.stats.hits, cache.stats.written) == (6, 6)  # nothing rewritten
        sub = hash_path(root / "sub", cache=cache)  # a sub-folder reuses the entries
        assert cache.stats.hits == 7
        assert sub.files[0].digest == first.files[-1].digest


def test_switching_a_new_cache_to_wal_waits_out_a_lock_sqlite_reports_at_once(
    tmp_path: Path,
) -> None:
    """Four processes opening a new cache at once: SQLite answered one of them "database is
    locked" to ``PRAGMA journal_mode = WAL`` without waiting (CI, 1 process in 720 here), and
    it hashed without the cache. Here another connection holds the file for 0.3 s while this
    one's own busy timeout is 0.02 s: the switch is tried again until it goes through."""
    import threading
    import time

    from reprokit.capturing._cachedb import prepare

    path = tmp_path / "c.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    releaser.start()
    conn = sqlite3.connect(path, timeout=0.02, isolation_level=None)
    try:
        started = time.monotonic()
        prepare(conn, timeout_s=10.0)
        assert time.monotonic() - started >= 0.2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        releaser.join()
        conn.close()
        holder.close()


def test_a_new_cache_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """A folder's row is tens of KB: a new cache file gets 16 KiB pages (fewer overflow pages
    to write); a cache made with SQLite's default 4 KiB pages is used as it is."""
    from reprokit.capturing._cachedb import PAGE_SIZE

    root = _tree(tmp_path / "data")
    for name in ("new", "old"):
        path = tmp_path / f"{name}.sqlite3"
        with HashCache(path, racy_margin_ns=0) as cache:
            first = hash_path(root, cache=cache)
        if name == "old":  # what an earlier reprokit made
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode = DELETE")
                conn.execute("PRAGMA page_size = 4096")
                conn.execute("VACUUM")
        with HashCache(path, racy_margin_ns=0) as cache:
            assert hash_path(root, cache=cache) == first and cache.stats.hits == 6
        with sqlite3.connect(path) as conn:
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        assert size == (PAGE_SIZE if name == "new" else 4096)


def test_added_changed_and_deleted_files_are_picked_up(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        hash_path(root, cache=cache)
        (root / "f0.txt").unlink()
        (root / "f1.txt").write_bytes(b"longer content than before")
        (root / "sub" / "new").write_bytes(b"new")
        after = hash_path(root, cache=cache)
        assert after == hash_path(root, cache=None)
        for gone in ("sub/g.bin", "sub/new"):
            (root / gone).unlink()
        (root / "sub").rmdir()
        assert hash_path(root, cache=cache) == hash_path(root, cache=None)


def test_algorithms_have_separate_entries(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        for _ in range(2):
            for algorithm in ("blake3", "sha256", "md5"):
                entry = hash_path(root, algorithm=algorithm, cache=cache)
                assert entry == hash_path(root, algorithm=algorithm, cache=None)
        assert cache.stats.hits == 18


def test_default_location_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPROKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "reprokit" / "hashes.sqlite3"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "reprokit" / "hashes.sqlite3"
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_path() == tmp_path / "mine" / "hashes.sqlite3"
    (tmp_path / "f").write_bytes(b"x")
    hash_path(tmp_path / "f")  # cache="default"
    assert (tmp_path / "mine" / "hashes.sqlite3").is_file()
    assert default_cache().path == tmp_path / "mine" / "hashes.sqlite3"


def _assert_recovers(tmp_path: Path, cache_file: Path, match: str) -> None:
    root = _tree(tmp_path / "data")
    with pytest.warns(ReprokitWarning, match=match), HashCache(cache_file) as cache:
        assert hash_path(root, cache=cache) == hash_path(root, cache=None)
        assert cache.stats.written == 6  # rebuilt and in use again
    with sqlite3.connect(cache_file) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_garbage_cache_file_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    cache_file.write_bytes(os.urandom(8192))
    _assert_recovers(tmp_path, cache_file, "rebuilt")
    assert (tmp_path / "c.sqlite3.corrupt").is_file()


def test_a_truncated_cache_file_is_rebuilt(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    big = _tree(tmp_path / "big", count=3000)
    with HashCache(cache_file) as cache:
        hash_path(big, cache=cache)
    with sqlite3.connect(cache_file) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = cache_file.read_bytes()
    cache_file.write_bytes(data[: len(data) // 3])
    _assert_recovers(tmp_path, cache_file, "rebuilt")


def test_a_database_of_another_schema_is_replaced(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    with sqlite3.connect(cache_file) as conn:
        conn.execute("CREATE TABLE something_else (x)")
    _assert_recovers(tmp_path, cache_file, "not a reprokit hash cache")


def test_our_identity_with_a_table_missing_is_rebuilt(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    with HashCache(cache_file) as cache:
        hash_path(_tree(tmp_path / "first"), cache=cache)
    with sqlite3.connect(cache_file) as conn:
        conn.execute("DROP TABLE folder_digest")
    _assert_recovers(tmp_path, cache_file, "rebuilt")


def test_a_locked_cache_degrades_to_no_caching(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    with HashCache(cache_file) as creator:
        assert creator.usable()
    holder = sqlite3.connect(cache_file, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        root = _tree(tmp_path / "data")
        warned = pytest.warns(ReprokitWarning, match="locked")
        with warned, HashCache(cache_file, timeout_s=0.1) as cache:
            assert hash_path(root, cache=cache) == hash_path(root, cache=None)
            assert cache.last_problem == "locked by another process"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_uncreatable_cache_location_degrades_to_no_caching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a_file").write_bytes(b"")
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "a_file" / "below"))  # fails as root
    (tmp_path / "f").write_bytes(b"x")
    with pytest.warns(ReprokitWarning, match="hashing without the cache"):
        entry = hash_path(tmp_path / "f")
    assert entry.digest == hash_file(tmp_path / "f")


def test_concurrent_processes_share_one_cache(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", count=300)
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "from reprokit.capturing.hashing import hash_path\n"
        "from reprokit.capturing.hashcache import HashCache\n"
        "for _ in range(5):\n"
        "    entry = hash_path(sys.argv[1], cache=HashCache(sys.argv[2], racy_margin_ns=0))\n"
        "print(entry.digest)\n"
    )
    args = [sys.executable, "-c", code, str(root), str(tmp_path / "c.sqlite3")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert set(outs) == {hash_path(root, cache=None).digest}


def test_no_warning_when_all_is_well(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with HashCache(tmp_path / "c.sqlite3") as cache:
            hash_path(root, cache=cache)
            hash_path(root / "f0.txt", cache=cache)


def test_a_cache_of_schema_1_is_upgraded_in_place_without_a_warning(tmp_path: Path) -> None:
    cache_file = tmp_path / "c.sqlite3"
    root = _tree(tmp_path / "data")
    with sqlite3.connect(cache_file) as conn:  # what reprokit wrote before schema 2
        conn.execute(
            "CREATE TABLE folder_digest (algorithm TEXT NOT NULL, path BLOB NOT NULL, "
            "names BLOB NOT NULL, stamps BLOB NOT NULL, PRIMARY KEY (algorithm, path))"
        )
        conn.execute("INSERT INTO folder_digest VALUES ('blake3', ?, x'00', x'00')", [b"/x"])
        conn.execute("PRAGMA application_id = 1380993859")
        conn.execute("PRAGMA user_version = 1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with HashCache(cache_file, racy_margin_ns=0) as cache:
            assert hash_path(root, cache=cache) == hash_path(root, cache=None)
            hash_path(root, cache=cache)
            assert (cache.stats.written, cache.stats.hits) == (6, 6)
    assert not (tmp_path / "c.sqlite3.corrupt").exists()
    with sqlite3.connect(cache_file) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_folder_partly_rehashed_is_served_whole_next_time(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", count=50)
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        hash_path(root, cache=cache)
        (root / "f7.txt").write_bytes(b"changed, and longer")
        (root / "f8.txt").unlink()
        (root / "f99.txt").write_bytes(b"new")
        changed = hash_path(root, cache=cache)
        assert (cache.stats.stale, cache.stats.misses) == (1, 51 + 1)  # first run: 51 misses
        assert changed == hash_path(root, cache=None)
        hits = cache.stats.hits
        assert hash_path(root, cache=cache) == changed
        assert cache.stats.hits - hits == 51  # every file of both folders, from the cache


def test_only_the_racy_files_of_a_folder_are_hashed_again(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", count=3)
    with HashCache(tmp_path / "c.sqlite3") as cache:
        hash_path(root, cache=cache)  # every entry racy (just written): one time per folder
        with sqlite3.connect(cache.path) as conn:  # give each file a time of its own
            names, stamps = conn.execute(
                "SELECT names, stamps FROM folder_digest WHERE path = ?", [os.fsencode(root)]
            ).fetchone()
            times = b""
            for name, stamp in zip(names.split(b"\0"), KEY.iter_unpack(stamps), strict=True):
                later = 10**10 if name == b"f1.txt" else 1  # 10 s after its change, or 1 ns
                times += struct.pack("<q", max(stamp[3], stamp[4]) + later)
            conn.execute(
                "UPDATE folder_digest SET hashed = ? WHERE path = ?", [times, os.fsencode(root)]
            )
        hits, racy = cache.stats.hits, cache.stats.racy
        assert hash_path(root, cache=cache) == hash_path(root, cache=None)
        assert (cache.stats.hits - hits, cache.stats.racy - racy) == (1, 3)  # sub/g.bin too


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_folders_stat_over_workers_give_what_one_process_gives(
    tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached tree of many files is stat'ed over worker processes; each folder's joined
    fingerprints are the same, and a folder with a file gone (deleted after the walk) is None,
    so that it is looked at file by file."""
    from reprokit.capturing import _pool
    from reprokit.capturing._hashworker import stamp_share
    from reprokit.capturing._pool import stamp_folders

    monkeypatch.setattr(_pool, "STAT_PARALLEL_MIN_FILES", 0)  # workers for a small tree
    monkeypatch.setattr(_pool, "default_jobs", lambda: 3)

    root = _tree(tmp_path / "data")
    for name in ("a", "b", "c"):
        (root / name).mkdir()
        for i in range(4):
            (root / name / f"{i}.txt").write_bytes(b"%d" % i)
    prefix = os.fsencode(root) + b"/"
    folders = [(b"", [b"f0.txt", b"f1.txt"]), (b"sub", [b"g.bin"])]
    folders += [(name, [b"0.txt", b"1.txt", b"3.txt"]) for name in (b"a", b"b", b"c")]
    folders += [(b"c", [b"0.txt", b"gone.txt"])]
    alone = stamp_share(prefix, folders)
    here: list[int] = []  # the shares stat'ed in this process (a worker's, if it failed)
    monkeypatch.setattr(_pool, "stamp_share", lambda p, f: here.append(len(f)) or stamp_share(p, f))
    assert stamp_folders(prefix, folders, jobs=2, method=method) == alone
    assert stamp_folders(prefix, folders, jobs=3, method=method) == alone
    assert here == [3, 2]  # share 0 of each call: the others came back from their workers
    assert stamp_folders(prefix, folders, jobs=1, method=method) == alone  # here, alone
    assert [stamps is None for stamps in alone] == [False] * 5 + [True]
    assert alone[1] == pack_entry(os.stat(root / "sub" / "g.bin"), 0, BOGUS)[: len(alone[1])]


def test_a_tree_stat_over_workers_is_served_and_its_changes_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.capturing import _pool

    monkeypatch.setattr(_pool, "STAT_PARALLEL_MIN_FILES", 0)  # workers for any tree
    monkeypatch.setattr(_pool, "default_jobs", lambda: 2)
    root = _tree(tmp_path / "data")
    (root / "sub" / "h.bin").write_bytes(b"h")
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        first = hash_path(root, cache=cache)
        assert hash_path(root, cache=cache) == first and cache.stats.hits == 7
        (root / "sub" / "h.bin").write_bytes(b"changed")
        (root / "f2.txt").unlink()
        assert hash_path(root, cache=cache) == hash_path(root, cache=None)
        assert cache.stats.stale == 1


def test_stat_workers_of_a_cached_tree_start_during_its_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process with threads (a kernel: spawned workers), the interpreter that will
    ``stat`` half of a cached tree starts while the tree is walked, and is the one used: its
    start-up no longer follows the walk. Served the same, and nothing left running."""
    from reprokit.capturing import _pool
    from reprokit.capturing._hashworker import stamp_share

    monkeypatch.setattr(_pool, "STAT_PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(_pool, "default_jobs", lambda: 2)
    monkeypatch.setattr(_pool, "start_method", lambda: "spawn")
    root = _tree(tmp_path / "data")
    (root / "sub" / "h.bin").write_bytes(b"h")
    events: list[str] = []
    spawn, walk = _pool._start_spawned, hashing_walk_tree()
    monkeypatch.setattr(_pool, "_start_spawned", lambda *a: events.append("spawn") or spawn(*a))
    monkeypatch.setattr(
        "reprokit.capturing.hashing.walk_tree",
        lambda *a: (events.append("walk"), walk(*a), events.append("walked"))[1],
    )
    here: list[int] = []
    monkeypatch.setattr(_pool, "stamp_share", lambda p, f: here.append(len(f)) or stamp_share(p, f))
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        first = hash_path(root, cache=cache)
        events.clear(), here.clear()
        assert hash_path(root, cache=cache) == first and cache.stats.hits == 7
    assert events == ["walk", "spawn", "walked"]  # one worker, started within the walk
    assert here == [1]  # this process stat'ed one folder, the worker the other
    assert not _pool._spawn_broken


def hashing_walk_tree() -> Any:
    from reprokit.capturing import hashing

    return hashing.walk_tree


def test_stat_workers_started_but_not_needed_are_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers started during a walk that are not taken (the cache knew fewer files than the
    tree has, or the folders were too few) are killed and reaped when the hash ends; with
    ``jobs=0``, or in a process without threads (a fork costs a millisecond), none start."""
    from reprokit.capturing import _pool

    monkeypatch.setattr(_pool, "default_jobs", lambda: 3)
    monkeypatch.setattr(_pool, "start_method", lambda: "spawn")
    rels = [b"f"] * _pool.STAT_PARALLEL_MIN_FILES
    with _pool.Stampers(None) as stampers:
        stampers.seen(rels[:-1])  # too few files yet (two folders read)
        assert stampers.take(5) == []
        stampers.seen(rels)  # three folders: two workers (this process stats one)
        stampers.seen(rels)  # no more than one per core but one
        taken = stampers.take(1)
        kept = list(stampers._handles)
        assert len(taken) == len(kept) == 1
    _pool._kill(taken[0])
    assert [handle.returncode for handle in taken + kept] == [-9, -9]
    assert stampers.take(1) == []
    with _pool.Stampers(None) as stampers:
        stampers.seen(rels)  # two folders read: one worker is all they can use
        assert len(stampers._handles) == 1
    assert not _pool.Stampers(0)._wanted
    monkeypatch.setattr(_pool, "start_method", lambda: "fork")
    assert not _pool.Stampers(None)._wanted


def test_a_ctrl_c_while_unused_stat_workers_are_stopped_stops_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C landing while the first of the workers not taken is killed waits for the
    others to be killed and reaped too (else they would wait for a job for ever), then is
    raised."""
    import signal

    from reprokit.capturing import _pool

    monkeypatch.setattr(_pool, "default_jobs", lambda: 4)
    monkeypatch.setattr(_pool, "start_method", lambda: "spawn")
    kill = subprocess.Popen.kill
    fired: list[int] = []

    def interrupted(self: subprocess.Popen[bytes]) -> None:
        kill(self)
        if not fired:
            fired.append(self.pid)
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, as close() kills

    monkeypatch.setattr(subprocess.Popen, "kill", interrupted)
    stampers = _pool.Stampers(None)
    for count in range(4):
        stampers.seen([b"f"] * (_pool.STAT_PARALLEL_MIN_FILES + count))
    handles = list(stampers._handles)
    assert len(handles) == 3
    with pytest.raises(KeyboardInterrupt):
        stampers.close()
    assert fired and [handle.returncode for handle in handles] == [-9, -9, -9]
    assert all(handle.stdin.closed and handle.stdout.closed for handle in handles)


def test_a_ctrl_c_as_a_cache_write_begins_leaves_no_transaction_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption as ``BEGIN IMMEDIATE`` returns (it can wait there for another
    process's lock) rolls the transaction back: the next write works, and no lock is left
    held for other processes."""
    from reprokit.capturing import _cachedb

    root = _tree(tmp_path / "data")
    armed = [False]

    class Interrupted(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            cursor = super().execute(sql, *args)
            if armed[0] and sql == "BEGIN IMMEDIATE":
                armed[0] = False
                raise KeyboardInterrupt
            return cursor

    connect = sqlite3.connect
    monkeypatch.setattr(
        _cachedb.sqlite3, "connect", lambda *a, **k: connect(*a, factory=Interrupted, **k)
    )
    with HashCache(tmp_path / "c.sqlite3", racy_margin_ns=0) as cache:
        assert cache.usable()  # the file made: the next BEGIN is the hash's write
        armed[0] = True
        with pytest.raises(KeyboardInterrupt):
            hash_path(root, cache=cache)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReprokitWarning)
            first = hash_path(root, cache=cache)
        assert cache.usable() and cache.stats.written
        with sqlite3.connect(tmp_path / "c.sqlite3", timeout=0) as other:  # not locked
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        assert hash_path(root, cache=cache) == first
