"""A data file changed through a shared ``mmap`` keeps its inode, size, mtime and ctime: the hash
cache cannot see the change (the OS gives no signal), and ``--rehash`` is the way around it."""

from __future__ import annotations

import mmap
import time
from pathlib import Path

import pytest
from run_helpers import write_notebook

from reprokit.api.record import record
from reprokit.api.verify import verify
from reprokit.capturing.hashcache import DEFAULT_RACY_MARGIN_NS
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.report.describe import describe_verdict

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]
CPU = ExecutionOptions(device="cpu")


def _fingerprint(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@pytest.mark.slow
def test_a_file_changed_through_mmap_is_missed_by_the_cache_and_found_with_rehash(
    project: Path,
) -> None:
    data = project / "data" / "table.bin"
    data.parent.mkdir()
    data.write_bytes(b"x" * 4096)
    nb = write_notebook(
        project / "nb.ipynb",
        ["import reprokit\nreprokit.start(seed=0, data=['data'])\nreprokit.result('n', 1)"],
    )
    with open(data, "r+b") as handle, mmap.mmap(handle.fileno(), 4096) as mapped:
        mapped[0:1] = b"a"  # the page is now mapped writable: later writes update no timestamp
        # wait until the file's mtime and ctime are old enough for the cache to trust its entry
        time.sleep(DEFAULT_RACY_MARGIN_NS / 1e9 + 0.5)
        [recorded] = record([nb], execution=CPU)
        assert recorded.lock_path is not None, recorded
        before = _fingerprint(data)
        mapped[0:1] = b"b"
        if _fingerprint(data) != before:  # the page was written back meanwhile: no test here
            pytest.skip("the filesystem updated the file's timestamps")

        cached = verify([nb], execution=CPU)
        assert cached[0].status == "reproduced", cached[0]  # the documented limit
        rehashed = verify([nb], execution=CPU, comparison=ComparisonOptions(rehash=True))
        assert rehashed[0].status == "data_changed", rehashed[0]
        assert [entry.path for entry in rehashed[0].data.drifted] == ["data"]


def test_verify_names_rehash_when_results_differ_but_the_cached_data_did_not() -> None:
    from reprokit.compare.verify import DataCheck, DataEntryCheck, Verdict

    entry = DataEntryCheck("data", "dir", "blake3", "ok", "0" * 64, "0" * 64)
    data = DataCheck((entry,))
    differs = Verdict("nb.ipynb", False, {"differs": 1}, (), data=data, command="reprokit verify")
    assert "--rehash re-reads every file" in describe_verdict(differs)
    rehashed = Verdict("nb.ipynb", False, {}, (), data=data, command="reprokit verify --rehash")
    assert "--rehash re-reads" not in describe_verdict(rehashed)
    reproduced = Verdict("nb.ipynb", True, {}, (), data=data, command="reprokit verify")
    assert "--rehash re-reads" not in describe_verdict(reproduced)
