"""Data hashed by the runner while the kernel starts (``capturing/prehashed.py``,
``runner/datahash.py``): taken by the kernel only when nothing changed and only for exactly
what it asks, and the notebooks that qualify."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from reprokit.capturing import prehashed
from reprokit.capturing.hashing import hash_paths
from reprokit.capturing.prehashed import PREHASHED_ENV, DataRequest, FolderWatch, Prehash
from reprokit.runner.datahash import start_cell_request

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux")


def _tree(root: Path) -> Path:
    data = root / "data"
    for folder in ("a", "a/b", "c"):
        (data / folder).mkdir(parents=True, exist_ok=True)
        for n in range(3):
            (data / folder / f"f{n}.txt").write_text(f"{folder} {n}\n")
    (data / "top.bin").write_bytes(b"\0" * 5000)
    hash_paths([data])  # known to the hash cache: only such a tree is hashed ahead
    return data


def _plain(manifest: Any) -> list[Any]:
    return [(e.path, e.kind, e.size, e.digest, e.files, e.skipped) for e in manifest.entries]


CHANGES: dict[str, Callable[[Path], None]] = {
    "a file written": lambda d: (d / "a" / "b" / "f1.txt").write_text("changed\n"),
    "a file appended to": lambda d: (d / "top.bin").open("ab").write(b"x"),
    "a file added deep down": lambda d: (d / "a" / "b" / "new.txt").write_text("new"),
    "a file removed": lambda d: (d / "c" / "f0.txt").unlink(),
    "a file renamed": lambda d: (d / "c" / "f0.txt").rename(d / "c" / "g0.txt"),
    "a folder added": lambda d: (d / "c" / "new").mkdir(),
    "a time set": lambda d: os.utime(d / "a" / "f2.txt", (1, 1)),
    "a mode changed": lambda d: (d / "a" / "f2.txt").chmod(0o600),
}


@linux_only
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_watch_sees_any_change_under_the_data_but_not_its_hashing(
    change: str, tmp_path: Path
) -> None:
    data = _tree(tmp_path)
    watch = FolderWatch.over([str(data), str(data / "top.bin")])
    assert watch is not None
    hash_paths([data], cache=None)  # reading every file is no change
    assert not watch.changed()
    CHANGES[change](data)
    assert watch.changed()
    watch.close()
    assert watch.changed()  # a closed watch vouches for nothing


@linux_only
def test_a_tree_with_a_symbolic_link_is_not_watched(tmp_path: Path) -> None:
    data = _tree(tmp_path)
    (data / "a" / "link").symlink_to(tmp_path / "elsewhere")
    assert FolderWatch.over([str(data)]) is None
    assert FolderWatch.over([str(tmp_path / "missing")]) is None


def _request(tmp_path: Path, *paths: str) -> DataRequest:
    return DataRequest(paths or ("data",), str(tmp_path), str(tmp_path))


def _taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prehash: Prehash, paths: list[Any]
) -> Any:
    """What a kernel started in ``tmp_path`` gets for ``paths``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PREHASHED_ENV, str(prehash.path))
    return prehashed.take_prehashed(paths, "blake3", tmp_path)


@linux_only
def test_the_kernel_takes_the_manifest_once_and_it_is_the_one_it_would_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tree(tmp_path)
    prehash = Prehash.start(_request(tmp_path, "data", "data/top.bin"))
    assert prehash.publish()
    taken = _taken(tmp_path, monkeypatch, prehash, ["data", "data/top.bin"])
    assert taken is not None
    assert _plain(taken) == _plain(hash_paths(["data", "data/top.bin"], relative_to=tmp_path))
    assert not prehash.path.exists() and PREHASHED_ENV not in os.environ  # read once
    monkeypatch.setenv(PREHASHED_ENV, str(prehash.path))
    assert prehashed.take_prehashed(["data", "data/top.bin"], "blake3", tmp_path) is None
    prehash.close()
    assert not prehash.folder.exists()
    assert data.is_dir()


@linux_only
@pytest.mark.parametrize(
    "asked",
    [["data/a"], ["data", "data/top.bin"], [Path("data")]],
    ids=["other paths", "more paths", "a path object"],
)
def test_a_manifest_for_another_request_is_not_taken(
    asked: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    prehash = Prehash.start(_request(tmp_path))
    assert prehash.publish()
    assert _taken(tmp_path, monkeypatch, prehash, asked) is None
    for other_cwd in (tmp_path / "data",):  # the same words from another folder
        monkeypatch.setenv(PREHASHED_ENV, str(prehash.path))
        monkeypatch.chdir(other_cwd)
        assert prehashed.take_prehashed(["data"], "blake3", tmp_path) is None
    prehash.close()


@linux_only
def test_a_change_after_the_runner_hashed_means_the_kernel_hashes_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tree(tmp_path)
    prehash = Prehash.start(_request(tmp_path))
    prehash._thread.join()
    (data / "a" / "f0.txt").write_text("edited while the kernel started\n")
    assert not prehash.publish()
    assert _taken(tmp_path, monkeypatch, prehash, ["data"]) is None
    prehash.close()


@linux_only
def test_a_warning_or_an_error_while_hashing_leaves_it_to_the_kernel(tmp_path: Path) -> None:
    data = _tree(tmp_path)
    os.mkfifo(data / "c" / "pipe")  # skipped with a warning the notebook should show
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        prehash = Prehash.start(_request(tmp_path))
        assert not prehash.publish()
        prehash.close()
    assert [str(w.message) for w in seen] == []  # the kernel's to say, not the runner's
    (data / "c" / "pipe").unlink()
    hash_paths([data])
    for unwatched in ("absent.csv", "linked"):
        (tmp_path / "linked").mkdir(exist_ok=True)
        if not (tmp_path / "linked" / "to").is_symlink():
            (tmp_path / "linked" / "to").symlink_to(data)
            hash_paths([tmp_path / "linked"])
        prehash = Prehash.start(_request(tmp_path, "data", unwatched))
        assert not prehash.publish() and prehash.watch is None  # nothing hashed ahead
        prehash.close()
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "f").write_text("never hashed")
    closed = Prehash.start(_request(tmp_path))  # the kernel failed at once: closed first
    closed.close()
    closed._thread.join()
    assert closed.watch is None or closed.watch.fd is None  # no inotify descriptor left open
    first = Prehash.start(_request(tmp_path, "fresh"))  # a first hash: the kernel's, all cores
    assert not first.publish()
    first.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"not marshal",
        b"",
        __import__("marshal").dumps([1, ["x"], []]),
        __import__("marshal").dumps([2, [["data"], "/", "/", "blake3"], []]),
        __import__("marshal").dumps(
            [1, [["data"], "CWD", "CWD", "blake3"], [["data", "dir", 1, "blake3", "ab", [], 7]]]
        ),
        __import__("marshal").dumps(
            [
                1,
                [["data"], "CWD", "CWD", "blake3"],
                [["data", "dir", 1, "blake3", "ab", [], [["a"], [1, 2], ["d"]]]],
            ]
        ),
    ],
    ids=["garbage", "empty", "bad request", "other format", "bad lists", "uneven lists"],
)
def test_a_bad_manifest_file_is_passed_over(
    payload: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = tmp_path / "m"
    place.write_bytes(payload.replace(b"CWD", str(tmp_path).encode()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PREHASHED_ENV, str(place))
    assert prehashed.take_prehashed(["data"], "blake3", tmp_path) is None


def test_a_link_or_no_file_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for where in ("link", "absent"):
        monkeypatch.setenv(PREHASHED_ENV, str(tmp_path / where))
        assert prehashed.take_prehashed(["data"], "blake3", tmp_path) is None
    assert (tmp_path / "target").exists()


def _nb(*sources: str, tags: dict[int, list[str]] | None = None) -> Any:
    node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    node.cells = [nbformat.v4.new_code_cell(s) for s in sources]  # type: ignore[no-untyped-call]
    for index, names in (tags or {}).items():
        node.cells[index].metadata["tags"] = names
    node.cells.insert(0, nbformat.v4.new_markdown_cell("# title"))  # type: ignore[no-untyped-call]
    return node


@pytest.mark.parametrize(
    ("cells", "paths"),
    [
        (["%load_ext reprokit", "%repro start --seed 0 --data data"], ("data",)),
        (["%load_ext reprokit\n# set up\n%repro start --data a b\nimport numpy"], ("a", "b")),
        (
            [
                "# parameters\nn = 10\nname: str = 'x'",
                "%reload_ext reprokit",
                "%repro start --data=a",
            ],
            ("a",),
        ),
        (["%load_ext reprokit", "%repro start --seed 0"], None),
        (["%load_ext reprokit", "%repro start --data $folder"], None),
        (["%load_ext reprokit", "%repro start --data {folder}"], None),
        (["!python make_data.py", "%repro start --data data"], None),
        (["import os\n%repro start --data data"], None),
        (["n = len('x')", "%repro start --data data"], None),
        (["%load_ext reprokit", "x = 1"], None),
        (["%repro start --bogus --data data"], None),
        (["x: print('ran') = 1", "%repro start --data data"], None),
        (["x: int = 1", "%repro start --data data"], ("data",)),
        (["x = {[]: 1}", "%repro start --data data"], None),
        (["x = " + "-" * 100_000 + "1", "%repro start --data data"], None),
        (["n = 0x" + "f" * 4000, "%repro start --data d$n"], None),
        (["n = 'a'", "%repro start --data $n # }"], None),
    ],
    ids=[
        "after load_ext",
        "in one cell",
        "after a parameters cell",
        "no data",
        "a variable",
        "an expression",
        "a shell command first",
        "an import first",
        "code first",
        "no start",
        "refused arguments",
        "code in an annotation",
        "a plain annotation",
        "a literal that raises TypeError",
        "too deep to parse",
        "an int too long to show",
        "a lone brace (IPython expands nothing)",
    ],
)
def test_which_notebooks_have_their_data_hashed_ahead(
    cells: list[str], paths: tuple[str, ...] | None, tmp_path: Path
) -> None:
    found = start_cell_request(_nb(*cells), tmp_path, tmp_path / "root")
    if paths is None:
        assert found is None
        return
    assert found is not None
    assert found[1] == DataRequest(paths, str(tmp_path), str(tmp_path / "root"))
    assert "%repro start" in found[0]


@pytest.mark.parametrize(
    ("tags", "paths"),
    [
        ([["parameters"], ["parameters"]], ("again",)),
        ([["parameters"], ["injected-parameters"]], None),
    ],
    ids=["papermill injects after the first parameters cell only", "a cell it will replace"],
)
def test_papermills_parameters_land_where_papermill_puts_them(
    tags: list[list[str]], paths: tuple[str, ...] | None, tmp_path: Path
) -> None:
    node = _nb("folder = 'in'", "folder = 'again'", "%repro start --data $folder")
    node.cells[1].metadata["tags"], node.cells[2].metadata["tags"] = tags
    found = start_cell_request(node, tmp_path, tmp_path, {"folder": "out"})
    # injected after the first parameters cell: the second, plain code to papermill, runs after
    assert (found[1].paths if found is not None else None) == paths


@pytest.mark.parametrize(
    ("cells", "given", "paths"),
    [
        (
            ["seed = 0", "%load_ext reprokit\n%repro start --seed $seed --data data/"],
            {},
            ("data/",),
        ),
        (["folder = 'in'", "%repro start --data $folder"], {}, ("in",)),
        (["folder = 'in'", "%repro start --data $folder"], {"folder": "out"}, ("in",)),
        (["%repro start --data $folder"], {"folder": "out"}, ("out",)),
        (
            ["folder = 'in'", "%repro start --data $folder", "# tagged after"],
            {"folder": "x"},
            ("in",),
        ),
        (["%repro start --data $folder"], {}, None),
        (["folder = 'a b'", "%repro start --data $folder"], {}, None),
        (["folder = 'a'", "%repro start --data $folder.name"], {}, None),
        (["folder = 'a'", "%repro start --data '$folder'"], {}, None),
        (["folder = ['a']", "%repro start --data $folder"], {}, None),
        (["n = 1", "%repro start --seed $$n --data d"], {}, None),
    ],
    ids=[
        "the quickstart's line",
        "a path from a literal",
        "a parameter injected at the top, then a literal",
        "a parameter injected at the top",
        "parameters injected after the start cell",
        "an unknown name",
        "a value of two words",
        "an attribute",
        "quoted",
        "a list",
        "an escaped dollar",
    ],
)
def test_dollar_names_are_expanded_as_ipython_will_or_not_at_all(
    cells: list[str], given: dict[str, Any], paths: tuple[str, ...] | None, tmp_path: Path
) -> None:
    node = _nb(*cells)
    if len(cells) == 3:  # the last cell is papermill's parameters cell, after the start
        node.cells[-1].metadata["tags"] = ["parameters"]
    found = start_cell_request(node, tmp_path, tmp_path, given)
    assert (found[1].paths if found is not None else None) == paths


@pytest.mark.slow
@linux_only
@pytest.mark.parametrize("edited", [False, True], ids=["unchanged", "edited meanwhile"])
def test_a_run_records_the_data_as_it_is_when_the_start_cell_begins(
    edited: bool, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real kernels: the manifest made while the kernel started is the one recorded (and the
    kernel took it); a file edited after the runner hashed it, before the start cell began,
    is recorded as edited (the kernel hashed itself)."""
    from reprokit.api.run import run
    from reprokit.options import ExecutionOptions

    data = _tree(project)
    nb = project / "nb.ipynb"
    nbformat.write(_nb("%load_ext reprokit", "%repro start --seed 0 --data data", "x = 1"), nb)
    seen: dict[str, bool] = {}
    publish, close = Prehash.publish, Prehash.close

    def publishing(self: Prehash) -> bool:
        if edited:
            self._thread.join()
            (data / "a" / "f1.txt").write_text("edited after the runner hashed it\n")
        seen["published"] = publish(self)
        return seen["published"]

    def closing(self: Prehash) -> None:
        seen["left"] = self.path.exists()  # the kernel removes what it takes
        close(self)

    monkeypatch.setattr(Prehash, "publish", publishing)
    monkeypatch.setattr(Prehash, "close", closing)
    [outcome] = run([nb], execution=ExecutionOptions(device="cpu"), record=False)
    assert outcome.ok, outcome
    assert seen == {"published": not edited, "left": False}
    run_folder = next(Path(outcome.output_path).parent.glob("2*"))
    recorded = json.loads((run_folder / "data.json").read_text())["entries"][0]
    assert recorded["digest"] == hash_paths(["data"], relative_to=project).entries[0].digest


def _swap_parent(tmp_path: Path) -> None:
    (tmp_path / "cur").rename(tmp_path / "old")
    (tmp_path / "next").rename(tmp_path / "cur")


def _retarget_link(tmp_path: Path) -> None:
    (tmp_path / "tmp-link").symlink_to("next")
    (tmp_path / "tmp-link").rename(tmp_path / "cur")  # ln -sfn next cur


@linux_only
@pytest.mark.parametrize("swap", [_swap_parent, _retarget_link], ids=["renamed", "relinked"])
def test_a_folder_above_the_data_swapped_means_the_kernel_hashes_itself(
    swap: Callable[[Path], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "v1")
    _tree(tmp_path / "next")
    if swap is _swap_parent:
        (tmp_path / "v1").rename(tmp_path / "cur")
    else:
        (tmp_path / "cur").symlink_to("v1")
    hash_paths([tmp_path / "cur" / "data"])
    ((tmp_path / "next") / "data" / "a" / "f0.txt").write_text("the other release\n")
    prehash = Prehash.start(_request(tmp_path, "cur/data"))
    prehash._thread.join()
    swap(tmp_path)  # nothing under the watched folder changed: the path names another one
    assert not prehash.publish()
    prehash.close()


@linux_only
def test_a_manifest_is_not_taken_after_its_start_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.runner.datahash import data_ahead

    _tree(tmp_path)
    node = _nb("%repro start --seed -1 --data data", "edit()", "%repro start --data data")
    with data_ahead(node, tmp_path, {}) as (env, hook):
        assert hook is not None
        hook(node.cells[1])  # the start cell: published (and it fails before taking it)
        assert Path(env[PREHASHED_ENV]).exists()
        hook(node.cells[2])  # any later cell: too late
        assert not Path(env[PREHASHED_ENV]).exists()


def test_a_file_that_is_not_a_manifest_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PREHASHED_ENV, str(tmp_path / "results.csv"))
    assert prehashed.take_prehashed(["data"], "blake3", tmp_path) is None
    assert (tmp_path / "results.csv").read_text() == "a,b\n1,2\n"
