"""Fault injection, file side: an output folder that is read-only or full, writers killed in
the middle of writing a lock or the hash cache, and notebooks that are not notebooks."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from fault_helpers import WAIT_S, kill_quietly, run_cli
from run_helpers import write_notebook

from reprokit.capturing.hashcache import HashCache
from reprokit.capturing.hashing import hash_path
from reprokit.cli import main

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]

LOCK_TEXT = '{"kept": "the lock from before"}\n'


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """A folder nobody can write into. Permissions do not stop root, so as root a read-only
    tmpfs is mounted there; without that privilege the test is skipped, never passed."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False, timeout=60)


def _project_files(project: Path) -> tuple[Path, Path]:
    nb = write_notebook(project / "fig.ipynb", ["print('y' * 200_000)"])
    lock = project / "fig.repro.json"
    lock.write_text(LOCK_TEXT)
    return nb, lock


def test_a_read_only_output_folder_is_a_clear_error_before_any_kernel(project: Path) -> None:
    nb, lock = _project_files(project)
    before = nb.read_bytes()
    with _read_only(project / "ro"):
        out = CliRunner().invoke(main, ["record", str(nb), "--output-dir", str(project / "ro")])
    assert out.exit_code == 2, out.output
    assert f"{project / 'ro' / 'fig'}: cannot write the executed notebook here" in out.output
    assert "Read-only file system" in out.output or "Permission denied" in out.output
    assert "Traceback" not in out.output and "will run" not in out.output
    assert nb.read_bytes() == before and lock.read_text() == LOCK_TEXT


def _small_files() -> None:
    # the kernel raises "file too large" (EFBIG) for writes past 64 KiB, as a full disk does
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_while_writing_the_notebook_names_the_path(project: Path) -> None:
    nb, lock = _project_files(project)
    before = nb.read_bytes()
    done = run_cli(
        ["record", str(nb), "--device", "cpu", "--output-dir", "out"],
        project,
        preexec_fn=_small_files,
    )
    assert done.returncode == 2, done.stderr
    assert f"{project / 'out' / 'fig' / 'fig.ipynb'}" in done.stderr or "out/fig/fig.ipynb" in (
        done.stderr
    )
    assert "File too large" in done.stderr and "Traceback" not in done.stderr
    assert nb.read_bytes() == before and lock.read_text() == LOCK_TEXT


WRITER = """\
import sys
from reprokit._fsutil import atomic_write_text
target, big = sys.argv[1], int(sys.argv[2])
i = 0
while True:
    i += 1
    atomic_write_text(target, '{"version": %d, "pad": "%s"}' % (i, "x" * big))
    if i == 3:
        print("writing", flush=True)
"""


def test_a_writer_killed_mid_write_never_leaves_a_half_written_lock(tmp_path: Path) -> None:
    target = tmp_path / "nb.repro.json"
    for attempt in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(2_000_000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            time.sleep(0.05 * attempt)  # a different point of the write loop each time
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=WAIT_S)
        finally:
            kill_quietly([writer.pid])
        lock = json.loads(target.read_text())  # always a whole lock: never a torn one
        assert lock["version"] >= 3 and len(lock["pad"]) == 2_000_000


HASHER = """\
import sys
from reprokit.capturing.hashcache import HashCache
from reprokit.capturing.hashing import hash_path
print("hashing", flush=True)
while True:
    with HashCache(sys.argv[2], racy_margin_ns=0) as cache:
        hash_path(sys.argv[1], cache=cache)
"""


def test_a_hasher_killed_mid_write_leaves_a_usable_cache(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(400):
        (data / f"f{i}.bin").write_bytes(os.urandom(64) + bytes([i % 256]))
    cache_file = tmp_path / "cache.sqlite3"
    hasher = subprocess.Popen(
        [sys.executable, "-c", HASHER, str(data), str(cache_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hasher.stdout is not None and hasher.stdout.readline() == "hashing\n"
        time.sleep(0.5)
        hasher.send_signal(signal.SIGKILL)
        hasher.wait(timeout=WAIT_S)
    finally:
        kill_quietly([hasher.pid])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a usable cache: not even a "rebuilt" warning
        with HashCache(cache_file, racy_margin_ns=0) as cache:
            assert hash_path(data, cache=cache).digest == hash_path(data, cache=None).digest


def _nbformat3(path: Path) -> Path:
    node = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "code", "input": "x = 1", "language": "python", "outputs": []}
                ],
                "metadata": {},
            }
        ],
    }
    path.write_text(json.dumps(node))
    return path


BAD_NOTEBOOKS = {
    "empty.ipynb": (b"", "not JSON"),
    "binary.ipynb": (bytes(range(256)) * 4, "cannot read the notebook"),
    "invalid.ipynb": (b'{"cells": [', "not JSON"),
    "no_cells.ipynb": (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not a valid"),
    "a_list.ipynb": (b"[1, 2, 3]", "not a valid notebook"),
}


@pytest.mark.parametrize("name", sorted(BAD_NOTEBOOKS))
def test_a_file_that_is_not_a_notebook_exits_two_naming_it(project: Path, name: str) -> None:
    content, message = BAD_NOTEBOOKS[name]
    (project / name).write_bytes(content)
    out = CliRunner().invoke(main, ["run", name, "--no-record"])
    assert out.exit_code == 2, out.output
    assert f"{name}: " in out.output and message in out.output
    assert "Traceback" not in out.output


def test_odd_but_valid_notebooks_run(project: Path) -> None:
    """No cells at all, and an nbformat 3 notebook (upgraded in memory, never rewritten)."""
    empty = project / "zero_cells.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), empty)
    old = _nbformat3(project / "old.ipynb")
    before = old.read_bytes()
    out = CliRunner().invoke(main, ["run", str(empty), str(old), "--no-record", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert old.read_bytes() == before


def test_parameters_for_a_notebook_without_a_parameters_cell_exit_two(project: Path) -> None:
    nb = write_notebook(project / "plain.ipynb", ["x = 1"])
    for option in (["-p", "alpha=1"], ["--secret-param", "alpha=1"]):
        out = CliRunner().invoke(main, ["run", str(nb), "--no-record", *option])
        assert out.exit_code == 2, out.output
        assert "no cell tagged 'parameters'" in out.output


@pytest.mark.slow
def test_a_200_mb_notebook_is_read_and_refused_cleanly(project: Path) -> None:
    """A huge notebook (200 MB of output) with a parameter it does not declare: the
    declared-parameter check reads it, names the problem and runs nothing."""
    node = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="z" * 200_000_000)]
    node.cells = [cell]
    big = project / "big.ipynb"
    nbformat.write(node, big)
    out = CliRunner().invoke(main, ["run", str(big), "--no-record", "-p", "n=1"])
    assert out.exit_code == 2, out.output
    assert "no cell tagged 'parameters'" in out.output
