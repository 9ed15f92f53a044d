"""A journal line that cannot be read is never lost in silence: a torn last line (a kill) is
skipped, any other one is counted and reported by the replay, and a journal of which no line
can be read is kept and named, never removed as "empty"; nor is one whose start line was
damaged or deleted (its events cannot be replayed without it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_helpers import run_cli

from reprokit.api.status import disk_status
from reprokit.api.sync import sync
from reprokit.recording.journal import Journal, JournalState, journal_folder, read_journal
from reprokit.recording.target import resolve_target
from reprokit.report.describe import describe_replay
from reprokit.report.disk import describe_disk


def _dead_journal(root: Path) -> Path:
    target = resolve_target(start=root, experiment="dead")
    journal = Journal.create(root)
    state = JournalState(journal.path, "dead", target.display_uri, "dead-run", 1_700_000_000_000)
    state.params, state.metrics = {"k": "1"}, [("acc", 0.5, 1_700_000_000_001, 0)]
    journal.write(state)
    journal.release()
    return journal.path


def _corrupt_middle(path: Path) -> None:
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text(first + "{not json\n" + "".join(rest))


def test_a_torn_last_line_is_not_counted_a_corrupt_middle_line_is(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"event": "start", "experiment": "e"}\n{"event": "log", "par')
    assert read_journal(path).unreadable == 0
    path.write_text('{"event": "start", "experiment": "e"}\n{not json\n[1]\n{"event": "end"')
    state = read_journal(path)
    assert (state.events_read, state.unreadable, state.experiment) == (1, 2, "e")


def test_a_corrupt_middle_line_is_reported_by_the_replay(project: Path) -> None:
    path = _dead_journal(project)
    _corrupt_middle(path)
    (replay,) = sync(project)
    assert (replay.status, replay.skipped) == ("replayed", 1)
    line = describe_replay(replay, project)
    assert line.startswith(f"replayed  .reprokit/journal/{path.name}: run ")
    assert line.endswith(", 1 unreadable line(s) skipped")


def test_a_journal_of_nothing_readable_is_kept_and_named(project: Path) -> None:
    folder = journal_folder(project)
    folder.mkdir(parents=True)
    for name, text in (("a.jsonl", "{not json\n"), ("b.jsonl", "{not json")):
        (folder / name).write_text(text)
    replays = sync(project)
    assert [r.status for r in replays] == ["unreadable", "unreadable"]
    assert (folder / "a.jsonl").exists() and (folder / "b.jsonl").exists()
    done = run_cli(["sync"], project)
    assert done.returncode == 2 and "a.jsonl" in done.stderr, done.stderr


def test_sync_with_nothing_to_do_says_so(project: Path) -> None:
    done = run_cli(["sync"], project)
    assert (done.returncode, done.stdout) == (0, "nothing to replay\n"), done.stderr


def test_an_append_the_disk_cuts_short_leaves_no_cut_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up mid-line wrote part of an event (the journal was left cut at
    4096 bytes): the part is taken back, so the next event starts a line of its own."""
    import os

    from reprokit.recording import journal as module

    journal = Journal.create(tmp_path)
    journal.append("start", run_name="r")
    real_write = os.write

    def half(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(module.os, "write", half)
    with pytest.raises(OSError, match="No space left"):
        journal.append("log", metrics=[["acc", 0.5, 1, 0]])
    monkeypatch.setattr(module.os, "write", real_write)
    journal.append("log", metrics=[["b", 1.0, 2, 0]])
    lines = journal.path.read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["start", "log"]
    assert read_journal(journal.path).metrics == [("b", 1.0, 2, 0)]
    journal.release()


@pytest.mark.parametrize("damage", ["torn", "deleted"])
def test_a_journal_that_lost_its_start_is_kept_and_named(project: Path, damage: str) -> None:
    """Its start line damaged (or gone), a journal of results was removed as "empty"."""
    path = _dead_journal(project)
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text(("" if damage == "deleted" else first[:40] + "\n") + "".join(rest))
    kept = path.read_bytes()
    (replay,) = sync(project)
    assert replay.status == "startless" and path.read_bytes() == kept
    assert (replay.events, replay.skipped) == (1, damage == "torn")
    line = describe_replay(replay, project)
    assert line.startswith(f"startless .reprokit/journal/{path.name}: kept: no start event")
    assert "1 event(s) cannot be replayed" in line
    done = run_cli(["sync"], project)
    assert done.returncode == 2 and path.name in done.stderr, done.stdout + done.stderr
    assert path.read_bytes() == kept
    usage = disk_status(project)
    assert (usage.journals, usage.startless) == (0, (str(path),))
    lines = describe_disk(usage, project)
    assert any(text.startswith(f"startless .reprokit/journal/{path.name}") for text in lines)
