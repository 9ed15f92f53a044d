"""A recording helper process: MLflow for ``reprokit run --jobs N``, off the kernels' time.

Several kernels at once take every core; MLflow's import (seconds of CPU) and writes in the
runner process would take CPU from them, and the GIL from the threads that drive them. So the
runner starts one helper per store when it starts (``python -m reprokit.recording.helper``,
at a lower scheduling priority, ``nice`` :data:`NICENESS`: it imports MLflow and writes runs
with the CPU the kernels leave idle) and hands it each run's journal as soon as its notebook
is done: the helper replays each (:mod:`reprokit.recording.replay`) and answers with the run
id, which the runner collects after the last kernel. The runner writes each journal first, so
a helper that dies loses nothing: the runner replays what is left itself
(:meth:`RecordingHelper.receive` raises :class:`OSError` and the caller falls back), or the
next command does.

Protocol: one journal path per line on the helper's stdin; one line per journal on its
stdout, ``reprokit<TAB>ok<TAB><run id>`` or ``reprokit<TAB>error<TAB><message>`` (other lines,
printed by MLflow, are skipped).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from reprokit.recording.journal import Journal
from reprokit.recording.target import TrackingTarget

NICENESS = 5
"""Not 10: a helper that low got so little CPU on a busy machine that the runner waited for it
long after the last kernel (19 s to report two interrupted notebooks while a test batch ran;
``bench_jobs``: 1.78x at 10, 1.86-1.91x at 5)."""
MARK = "reprokit"
ADOPT_WAIT_S = 120.0


class RecordingHelper:
    """The helper process of one store; started at once (MLflow imports meanwhile)."""

    def __init__(self, target: TrackingTarget) -> None:
        from reprokit.recording.handoff import URI_ENV

        self.target = target
        self._process = subprocess.Popen(
            [sys.executable, "-m", "reprokit.recording.helper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=target.project_root,
            env={**os.environ, URI_ENV: target.uri},
        )

        self._answers: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._sending = threading.Lock()
        threading.Thread(target=self._read, name="reprokit-helper", daemon=True).start()

    def _read(self) -> None:
        """Answers as they come (the helper never blocks on a full pipe)."""
        try:
            for line in self._process.stdout or ():
                mark, _, rest = line.rstrip("\n").partition("\t")
                if mark == MARK:
                    self._answers.put(rest)
        finally:
            self._answers.put(None)

    def send(self, journal: Path) -> None:
        """Queue ``journal`` (released by the caller) for the helper; answers come in order
        (:meth:`receive`). ``OSError`` when the helper is gone."""
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            raise OSError("the recording helper is not running")
        with self._sending:
            stdin.write(f"{journal}\n")
            stdin.flush()

    def receive(self) -> str:
        """The run id of the next journal sent, once the helper replayed it. Raises
        :class:`RuntimeError` with the helper's message when the replay failed, and
        :class:`OSError` when the helper is gone (the journal is then still there)."""
        answer = self._answers.get()
        if answer is None:
            self._answers.put(None)  # every later receive fails the same way
            raise OSError("the recording helper stopped")
        kind, _, value = answer.partition("\t")
        if kind == "ok":
            return value
        raise RuntimeError(value)

    def close(self, *, wait: bool = True) -> None:
        """No more journals: the helper ends once it answered those sent; with ``wait``, this
        waits for that (30 s at most, then it is killed)."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        if not wait:
            return
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _serve(uri: str) -> None:
    from reprokit.exceptions import RecordError
    from reprokit.recording.target import resolve_target
    from reprokit.recording.writer import MlflowRunWriter

    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    writer = MlflowRunWriter(resolve_target(start=Path.cwd(), tracking_uri=uri))
    failure: str | None = None
    try:
        writer.connect()
    except RecordError as exc:
        failure = str(exc)
    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        try:
            answer = f"error\t{failure}" if failure else f"ok\t{_replay(path, writer)}"
        except (RecordError, OSError) as exc:
            answer = f"error\t{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        print(f"{MARK}\t{answer}", flush=True)


def _replay(path: Path, writer: object) -> str:
    from reprokit.exceptions import RecordError
    from reprokit.recording.replay import journaled_run, replay_adopted
    from reprokit.recording.writer import MlflowRunWriter

    assert isinstance(writer, MlflowRunWriter)
    deadline = time.monotonic() + ADOPT_WAIT_S
    while (journal := Journal.adopt(path)) is None and path.exists():
        if time.monotonic() > deadline:
            raise RecordError(f"{path}: held by another process for {ADOPT_WAIT_S:g} s")
        time.sleep(0.02)
    if journal is None:  # replayed meanwhile by another process: find the run it made
        found = journaled_run(writer, path.name.removesuffix(".jsonl"))
        if found is None:
            raise RecordError(f"{path}: replayed elsewhere, and its run is not found")
        return found
    try:
        replay = replay_adopted(journal, writer)
    finally:
        journal.release()
    if replay.run_id is None or replay.status not in ("replayed", "empty"):
        raise RecordError(replay.detail or f"{path}: {replay.status}")
    return replay.run_id


if __name__ == "__main__":
    from reprokit.recording.handoff import URI_ENV

    _serve(os.environ.pop(URI_ENV, ""))
    # every journal sent was answered after MLflow committed it: nothing is left to write, and
    # the interpreter's teardown of MLflow and SQLAlchemy (about a second) is what the runner
    # would otherwise wait for after its last notebook
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
