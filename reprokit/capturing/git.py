"""The git state of the folder a notebook runs in.

Four ``git`` processes are started at once and read later (:func:`start_git` returns a
:class:`GitProbe`), so they run while the other collectors work:

- ``git status --porcelain=v2 --branch -z --untracked-files=all``: commit, branch, dirty
  flag and untracked names in one call;
- ``git rev-parse --show-toplevel``: the repository root;
- ``git config -z --get-regexp ^remote\\..*\\.url$``: the remote (``origin``, else the first),
  whose credentials :func:`~reprokit.capturing.redact.redact_url` strips;
- ``git diff HEAD --binary`` with every option that user configuration could change pinned
  (prefixes, rename detection, diff algorithm, external/textconv drivers), so the same
  change gives the same ``blake3:`` digest on every machine.

``dirty`` means tracked files differ from ``HEAD`` (staged or not); untracked files do not
make a tree dirty but are listed (at most :data:`UNTRACKED_LIMIT` names; past that
``untracked_omitted`` counts the rest), except what reprokit itself writes (its default store
``mlflow.db`` with its ``.lock`` and SQLite's files beside it, ``mlartifacts/``,
``.reprokit/``, and every folder holding an :data:`~reprokit.notebook.files.OUTPUT_MARKER`: a
configured artifact location, a runner ``--output-dir``).  Git runs with
``GIT_OPTIONAL_LOCKS=0`` (a capture never takes the index lock from a concurrent ``git``
command), ``LC_ALL=C`` (stable messages), ``GIT_TERMINAL_PROMPT=0`` and no stdin (never a
prompt), under a time limit.
Outside a repository, without ``git``, in a repository without commits, or when git fails,
the result is ``GitInfo(available=False, reason=...)``, never an exception.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reprokit.capturing.model import GitInfo
from reprokit.capturing.redact import redact_url
from reprokit.notebook.files import OUTPUT_MARKER

GIT_TIMEOUT_S = 10.0
UNTRACKED_LIMIT = 1000

_DIFF_ARGS = (
    "-c",
    "core.quotePath=true",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.relative=false",
    "diff",
    "HEAD",
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--unified=3",
    "--inter-hunk-context=0",
    "--ignore-submodules=none",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--",
)
_STATUS_ARGS = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
_TOPLEVEL_ARGS = ("rev-parse", "--show-toplevel")
_REMOTES_ARGS = ("config", "-z", "--get-regexp", r"^remote\..*\.url$")
# what reprokit writes into a project (recording.target's default store and artifact folder)
_OWN_FOLDERS = frozenset({".reprokit", "mlartifacts"})
_OWN_FILES = frozenset(
    {OUTPUT_MARKER, "mlflow.db", "mlflow.db.lock"}
    | {f"mlflow.db-{sqlite}" for sqlite in ("journal", "wal", "shm")}
)


def collect_git(root: str | os.PathLike[str]) -> GitInfo:
    """Git facts of the repository containing ``root`` (waits for git)."""
    return start_git(root).result()


def start_git(root: str | os.PathLike[str]) -> GitProbe:
    """Start the git processes for ``root`` now; :meth:`GitProbe.result` collects them."""
    return GitProbe(Path(root))


def git_diff(root: str | os.PathLike[str]) -> str | None:
    """The text of ``git diff HEAD --binary`` (tracked changes only: never the contents of
    untracked files); ``""`` for a clean tree, ``None`` when there is no usable repository."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(
            ["git", *_DIFF_ARGS],
            cwd=root,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


@dataclass
class _Output:
    returncode: int
    stdout: bytes
    stderr: bytes


class GitProbe:
    """Git processes started for one root; :meth:`result` waits and parses (once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._deadline = time.monotonic() + GIT_TIMEOUT_S
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._error: str | None = None
        self._result: GitInfo | None = None
        if shutil.which("git") is None:
            self._error = "git not installed (no `git` on PATH)"
            return
        env = git_env()
        try:
            for key, args in (
                ("status", _STATUS_ARGS),
                ("toplevel", _TOPLEVEL_ARGS),
                ("remotes", _REMOTES_ARGS),
                ("diff", _DIFF_ARGS),
            ):
                self._procs[key] = _popen(args, root, env)
        except OSError as exc:
            self.close()
            self._error = f"cannot run git in {root}: {exc.strerror or exc}"

    def result(self) -> GitInfo:
        """Wait for git (within :data:`GIT_TIMEOUT_S` in all) and build the :class:`GitInfo`."""
        if self._result is None:
            self._result = self._collect()
        return self._result

    def close(self) -> None:
        """Stop any git process still running (result() does this itself)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self._procs.clear()

    def _collect(self) -> GitInfo:
        if self._error is not None:
            return GitInfo(available=False, reason=self._error)
        try:
            outputs = {key: self._wait(proc) for key, proc in self._procs.items()}
        except subprocess.TimeoutExpired:
            return GitInfo(available=False, reason=f"git timed out after {GIT_TIMEOUT_S:g} s")
        finally:
            self.close()
        return _build(outputs)

    def _wait(self, proc: subprocess.Popen[bytes]) -> _Output:
        remaining = max(0.01, self._deadline - time.monotonic())
        stdout, stderr = proc.communicate(timeout=remaining)
        return _Output(proc.returncode, stdout, stderr)


def _build(outputs: dict[str, _Output]) -> GitInfo:
    status = outputs["status"]
    if status.returncode != 0:
        return GitInfo(available=False, reason=_failure_reason(status.stderr))
    commit, branch, dirty, found = _parse_status(status.stdout)
    untracked = _without_own_outputs(found)
    if commit is None:
        return GitInfo(available=False, reason="repository has no commits yet")
    toplevel = outputs["toplevel"].stdout.decode("utf-8", errors="replace").strip()
    diff = outputs["diff"].stdout if outputs["diff"].returncode == 0 else b""
    return GitInfo(
        available=True,
        root=toplevel or None,
        commit=commit,
        branch=branch,
        dirty=dirty,
        diff_digest=_digest(diff) if diff else None,
        untracked=tuple(untracked[:UNTRACKED_LIMIT]),
        untracked_omitted=max(0, len(untracked) - UNTRACKED_LIMIT),
        remote_url=_remote_url(outputs["remotes"].stdout),
    )


def _failure_reason(stderr: bytes) -> str:
    message = stderr.decode("utf-8", errors="replace").strip()
    if "not a git repository" in message:
        return "not a git repository"
    first = message.splitlines()[0] if message else "no message"
    return f"git status failed: {first.removeprefix('fatal: ')}"


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, list[str]]:
    """(commit, branch, dirty, untracked) from ``status --porcelain=v2 --branch -z``."""
    commit: str | None = None
    branch: str | None = None
    dirty = False
    untracked: list[str] = []
    records = iter(out.decode("utf-8", errors="surrogateescape").split("\0"))
    for record in records:
        kind, _, rest = record.partition(" ")
        if record.startswith("# branch.oid "):
            commit = None if rest.endswith("(initial)") else rest.split()[-1]
        elif record.startswith("# branch.head "):
            head = rest.split(" ", 1)[1]
            branch = None if head == "(detached)" else head
        elif kind in ("1", "2", "u"):
            dirty = True
            if kind == "2":
                next(records, None)  # a rename/copy record is followed by its original path
        elif kind == "?":
            untracked.append(rest.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    untracked.sort()
    return commit, branch, dirty, untracked


def _without_own_outputs(names: list[str]) -> list[str]:
    """``names`` (root-relative, ``/``-separated) less reprokit's own store and outputs: they
    say nothing about the code, and their paths name runs and the author's layout."""
    marked = {name.rpartition("/")[0] for name in names if name.rpartition("/")[2] == OUTPUT_MARKER}
    marked.discard("")  # a marker at the repository's top would hide every name
    # a store of another name (MLFLOW_TRACKING_URI=sqlite:///tracking/runs.db): reprokit's
    # own file lock beside it gives it away, with SQLite's files
    stores = {name[: -len(".lock")] for name in names if name.endswith(".db.lock")}
    stores |= {f"{store}{side}" for store in stores for side in _SQLITE_SIDES}
    return [name for name in names if name not in stores and not _is_own_output(name, marked)]


_SQLITE_SIDES = (".lock", "-journal", "-wal", "-shm")


def _is_own_output(name: str, marked: set[str]) -> bool:
    parts = name.split("/")
    if parts[-1] in _OWN_FILES or not _OWN_FOLDERS.isdisjoint(parts[:-1]):
        return True
    if name.endswith(ACTIVE_MARK) and name[: -len(ACTIVE_MARK)] in marked:
        return True  # an output folder's "in use" mark, beside it (``out.active``)
    return any("/".join(parts[:k]) in marked for k in range(1, len(parts)))


ACTIVE_MARK = ".active"  # recording.retention's ACTIVE_SUFFIX (a lower layer cannot import it)


def _remote_url(out: bytes) -> str | None:
    """``origin``'s URL, else the first remote's, with credentials stripped."""
    remotes: dict[str, str] = {}
    for entry in out.decode("utf-8", errors="replace").split("\0"):
        key, _, url = entry.partition("\n")
        if key.startswith("remote.") and key.endswith(".url") and url:
            remotes.setdefault(key[len("remote.") : -len(".url")], url)
    chosen = remotes.get("origin") or next(iter(remotes.values()), None)
    return None if chosen is None else redact_url(chosen)


def _digest(data: bytes) -> str:
    import blake3

    return f"blake3:{blake3.blake3(data).hexdigest()}"


def git_env() -> dict[str, str]:
    """Our environment, plus what keeps git quiet, lock-free and prompt-free."""
    env = dict(os.environ)
    env.update(GIT_OPTIONAL_LOCKS="0", LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    return env


def _popen(args: tuple[str, ...], root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
