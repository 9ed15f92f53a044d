"""Helpers for the lock, verification and report tests: real notebooks built with nbformat.

An "executed" notebook here is the source notebook with the outputs the magics emit (the
same MIME bundles, from ``reprokit.report.display``), so no kernel is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import nbformat

from reprokit._fsutil import write_then_name
from reprokit.capturing.snapshot import capture
from reprokit.recording.lock import Lock, build_lock, lock_path_for, read_lock, write_lock
from reprokit.report.display import result_bundle, snapshot_bundle
from reprokit.results import Result, encode_result

SOURCES = ["import numpy as np", "print('loss', 0.25)", "reprokit.result('acc', acc)"]


class FolderWriter:
    """Stores by-reference arrays in a run folder, as ``RunFolder`` does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write_array(self, stem: str, suffix: str, payload: bytes) -> tuple[str, str, str]:
        relative = f"arrays/{stem}{suffix}"
        (self.folder / "arrays").mkdir(parents=True, exist_ok=True)
        (self.folder / relative).write_bytes(payload)
        return relative, str(self.folder), f"reprokit/{relative}"

    def write_array_with(
        self, suffix: str, fill: Callable[[BinaryIO], str]
    ) -> tuple[str, str, str]:
        (self.folder / "arrays").mkdir(parents=True, exist_ok=True)
        written = write_then_name(self.folder / "arrays", lambda handle: fill(handle) + suffix)
        relative = f"arrays/{written.name}"
        return relative, str(self.folder), f"reprokit/{relative}"


@dataclass
class Project:
    root: Path
    notebook: Path
    data: Path

    @property
    def lock_path(self) -> Path:
        return lock_path_for(self.notebook)


def make_project(tmp_path: Path, sources: list[str] | None = None) -> Project:
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    data = root / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "b.csv").write_text("x,y\n3,4\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Figure 3")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in (sources or SOURCES)]
    path = root / "notebooks" / "fig3.ipynb"
    nbformat.write(nb, path)
    return Project(root, path, data)


def executed(
    project: Project,
    results: list[Result],
    *,
    stdout: str = "loss 0.25\n",
    snapshot: bool = True,
) -> Any:
    """The source notebook with a snapshot, a printed line and the results as outputs."""
    nb = nbformat.read(project.notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if snapshot:
        snap = capture(root=project.root, data=[project.data])
        code[0].outputs = [_display(snapshot_bundle(snap, {}))]
    code[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
    code[2].outputs = [_display(result_bundle(r)) for r in results]
    return nb


def _display(bundle: dict[str, Any]) -> Any:
    return nbformat.v4.new_output("display_data", data=bundle, metadata={"reprokit": {}})


def record(project: Project, results: list[Result], **kwargs: Any) -> Lock:
    """Build and write the lock of ``project`` from an execution producing ``results``."""
    lock = build_lock(
        project.notebook,
        executed(project, results),
        project_root=project.root,
        parameters={"epochs": 2},
        device=kwargs.pop("device", "cpu"),
        **kwargs,
    )
    write_lock(lock, project.lock_path)
    return read_lock(project.lock_path)


def scalar_results(acc: float = 0.931, rtol: float | None = None) -> list[Result]:
    return [
        encode_result("acc", acc, rtol=rtol),
        encode_result("epochs", 10),
        encode_result("config", {"lr": 0.1, "name": "adam"}),
    ]
