"""Finding and loading notebooks: ``.ipynb`` and jupytext text formats, never rewritten.

A text notebook (``.py`` percent or light, ``.md``, ``.Rmd``...) is converted in memory with
jupytext; the source file is only read. :func:`declared_parameters` reads the names assigned in
the cell tagged ``parameters`` (papermill's convention) with :mod:`ast`, without a kernel, and
:func:`parameter_defaults` the literal values it assigns them.
"""

from __future__ import annotations

import ast
import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reprokit.exceptions import InputError, PathError
from reprokit.notebook.textnotebooks import (
    TEXT_SUFFIXES,
    is_text_notebook,
    pair_texts,
    read_head,
    with_kernel_display_name,
    without_paired_texts,
)

IPYNB = ".ipynb"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # the cell papermill adds after it
# folders never searched: editor copies, reprokit's and MLflow's output, lock sidecars
_SKIPPED_DIRS = (
    ".ipynb_checkpoints",
    ".reprokit",
    "__pycache__",
    "node_modules",
    "mlartifacts",
    "mlruns",
)
OUTPUT_MARKER = ".reprokit-output"
"""A file reprokit leaves in every folder it writes outside ``.reprokit/`` (the MLflow
artifact location, a ``--output-dir``): discovery never searches a folder that holds one."""


def mark_output_folder(folder: Path) -> None:
    """Create ``folder`` with an :data:`OUTPUT_MARKER` in it (best effort: never raises)."""
    marker = folder / OUTPUT_MARKER
    if marker.exists():
        return
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by reprokit: notebook discovery skips this folder\n")


def is_notebook_file(path: Path) -> bool:
    """``.ipynb`` files, and ``.py``/``.md`` files that jupytext marks as notebooks: a jupytext
    header, or (``.py``) percent cell markers (:mod:`reprokit.notebook.textnotebooks`)."""
    if path.suffix == IPYNB:
        return True
    if path.suffix not in TEXT_SUFFIXES:
        return False
    head = read_head(path)
    return head is not None and is_text_notebook(head, path.suffix)


def discover_notebooks(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Notebooks named by ``paths``: files as given, folders searched recursively (sorted;
    of a jupytext pair found in a folder, only the ``.ipynb``).

    Hidden folders, ``.ipynb_checkpoints``, ``.reprokit``, lock sidecars (``*.repro/``), MLflow's
    default artifact folders (``mlartifacts``, ``mlruns``) and every folder holding an
    :data:`OUTPUT_MARKER` (an artifact location configured elsewhere, a runner ``--output-dir``)
    are skipped, so nothing reprokit or MLflow wrote is found again. A path that is missing,
    a dangling link or not a regular file (a FIFO, a device, a socket: never opened) raises
    :class:`~reprokit.exceptions.PathError` saying which.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(_walk(path))
        elif path.is_file():
            found.append(path)
        else:
            raise PathError(str(path), _why_not_found(path))
    unique: dict[Path, None] = dict.fromkeys(found)
    for notebook in unique:
        check_name(notebook)
    return list(unique)


def _why_not_found(path: Path) -> str:
    """Why ``path``, neither a folder nor a regular file (links followed), is not a notebook."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        dangling = os.path.islink(path)
        return "a link leading to no file" if dangling else "no such notebook or folder"
    except OSError as exc:  # a loop of links, a folder this user may not search
        return f"cannot read it: {exc.strerror}"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"not a regular file ({kind}); refused"


MAX_STEM_BYTES = 255 - len(".kernel.attempt-9.log")
"""The longest notebook name (without its extension, in bytes) whose files all fit in the 255
bytes a file name may take: ``<name>.kernel.attempt-N.log`` in its run folder is the longest,
``<name>.repro.json`` (its lock) beside it."""


def check_name(path: Path) -> None:
    """Refuse a notebook whose name is not UTF-8 (it goes into JSON: the lock, the executed
    notebook, MLflow) or too long for the files reprokit writes for it: a
    :class:`~reprokit.exceptions.PathError` naming it, before anything runs."""
    raw = os.fsencode(path.name)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PathError(shown, "the name is not UTF-8 text; rename the notebook") from None
    if any(_is_control(c) for c in shown):
        raise PathError(
            "".join(repr(c)[1:-1] if _is_control(c) else c for c in shown),
            "the path holds a control character (a line break, a tab...), which would break "
            "the lines reprokit prints about it (and CI systems read); rename it",
        )
    length = len(os.fsencode(path.stem))
    if length > MAX_STEM_BYTES:
        raise PathError(
            shown,
            f"the name is too long for the files reprokit writes for it (<name>.repro.json, "
            f"<name>.kernel.attempt-N.log): without its extension it may take "
            f"{MAX_STEM_BYTES} bytes, it takes {length}; rename the notebook",
        )


def _is_control(character: str) -> bool:
    return character < " " or "\x7f" <= character < "\xa0"


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _skipped_dir(Path(root), d))
        found.extend(
            Path(root) / name
            for name in sorted(files)
            if not name.startswith(".") and is_notebook_file(Path(root) / name)
        )
    return without_paired_texts(found)


def _skipped_dir(root: Path, name: str) -> bool:
    if name.startswith(".") or name in _SKIPPED_DIRS or name.endswith(".repro"):
        return True
    return (root / name / OUTPUT_MARKER).exists()


def load_notebook(path: str | os.PathLike[str]) -> Any:
    """The notebook at ``path`` as an nbformat v4 ``NotebookNode`` (validated).

    Raises :class:`~reprokit.exceptions.PathError` for a missing or unreadable file, a file that
    is not JSON, or JSON that is not a valid notebook.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PathError(str(source), "no such notebook") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PathError(str(source), f"cannot read the notebook: {exc}") from None
    node = _parse_ipynb(source, text) if source.suffix == IPYNB else _parse_text(source, text)
    _validate(source, node)
    return node


def unsynced_cells(notebook: Path, text: Path) -> list[int]:
    """The cells (0-based) in which ``text``, a jupytext pair of ``notebook``, differs from
    it: a cell's kind or source, whitespace at a cell's end left out (jupytext writes none,
    so a pair just synced differs there). A cell on one side only counts too."""
    ours, theirs = _loose_cells(load_notebook(notebook)), _loose_cells(load_notebook(text))
    return [
        k
        for k in range(max(len(ours), len(theirs)))
        if k >= len(ours) or k >= len(theirs) or ours[k] != theirs[k]
    ]


def _loose_cells(node: Any) -> list[tuple[str, str]]:
    return [
        (str(cell.get("cell_type")), "".join(cell.get("source", "")).rstrip())
        for cell in node.cells
        if INJECTED_TAG not in cell.get("metadata", {}).get("tags", ())
    ]


def edited_pair_texts(notebook: Path) -> list[tuple[Path, list[int]]]:
    """The jupytext pair texts of ``notebook`` (an ``.ipynb``) saved after it that differ
    from it, each with the cells that differ: edits ``jupytext --sync`` would carry into
    ``notebook``, which running it as it is leaves out. A text that cannot be read is left
    out (running ``notebook`` never reads it)."""
    edited = []
    for text in pair_texts(notebook):
        try:
            if text.stat().st_mtime <= notebook.stat().st_mtime:
                continue
            cells = unsynced_cells(notebook, text)
        except (OSError, PathError):
            continue
        if cells:
            edited.append((text, cells))
    return edited


def _parse_ipynb(source: Path, text: str) -> Any:
    import nbformat

    try:
        # read and converted without nbformat's validation, which prints MissingIDFieldWarning
        # for a 4.5 notebook without cell ids; _validate runs once the ids are added
        node = nbformat.convert(nbformat.reader.reads(text), 4)  # type: ignore[no-untyped-call]
        _add_cell_ids(node)
        # an upgraded nbformat 3 notebook keeps v3's node class, which papermill takes for a
        # path; from_dict gives every notebook the same v4 node types
        return nbformat.from_dict(node)  # type: ignore[no-untyped-call]
    except nbformat.reader.NotJSONError:
        raise PathError(str(source), "not a notebook: the file is not JSON") from None
    except (nbformat.ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PathError(str(source), f"not a valid notebook: {_one_line(exc)}") from None


def _add_cell_ids(node: Any) -> None:
    """Give each cell of an nbformat 4.5+ notebook without an ``id`` a new one, as
    ``nbformat.validator.normalize`` would, in memory only: the file is never rewritten."""
    from nbformat.corpus.words import generate_corpus_id

    minor = node.get("nbformat_minor") if isinstance(node, dict) else None
    if not isinstance(minor, int) or minor < 5:  # ids came with nbformat 4.5
        return
    cells = node.get("cells")
    for cell in cells if isinstance(cells, list) else ():
        if isinstance(cell, dict) and "id" not in cell:
            cell["id"] = generate_corpus_id()  # type: ignore[no-untyped-call]


def _parse_text(source: Path, text: str) -> Any:
    import jupytext  # type: ignore[import-untyped]

    if source.suffix == ".md":
        text = with_kernel_display_name(text)
    try:
        return jupytext.reads(text, fmt=source.suffix.lstrip("."))
    except Exception as exc:
        # (a marimo notebook without marimo, an unknown extension...): one line, exit 2
        raise PathError(
            str(source), f"not a notebook jupytext can read: {_one_line(exc)}"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _validate(source: Path, node: Any) -> None:
    import nbformat

    try:
        nbformat.validate(node)
    except nbformat.ValidationError as exc:
        raise PathError(str(source), f"not a valid notebook: {_one_line(exc)}") from None


def parameters_cell(node: Any) -> int | None:
    """Index of the first code cell tagged ``parameters``, or None."""
    for index, cell in enumerate(node.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return index
    return None


def declared_parameters(node: Any, source: str = "notebook") -> tuple[str, ...] | None:
    """Names assigned at the top level of the ``parameters`` cell; None when there is none.

    IPython syntax (``%matplotlib inline``, ``!pip ...``) is turned into Python first, as the
    kernel would; a cell that still does not parse raises :class:`InputError` naming
    ``source``, the cell (1-based, as every message counts cells) and the line.
    """
    index = parameters_cell(node)
    if index is None:
        return None
    text = node.cells[index].source
    try:
        tree = ast.parse(_as_python(text))
    except SyntaxError as exc:
        raise InputError(
            f"{source}: cell {index + 1} (the 'parameters' cell) is not valid Python: "
            f"line {exc.lineno}: {exc.msg}",
            path=source,
            cell_index=index,
        ) from None
    names: list[str] = []
    for statement in tree.body:
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets = list(statement.targets)
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        for target in targets:
            names.extend(_target_names(target))
    return tuple(dict.fromkeys(names))


def parameter_defaults(node: Any) -> dict[str, Any]:
    """The values the ``parameters`` cell assigns as plain literals (``alpha = 0.5``,
    ``name = "x"``, ``sizes = [1, 2]``): what a run without ``-p`` had. A name assigned
    anything else (``n = 2 ** 10``, ``path = Path("x")``) is left out, as is every name of a
    cell that does not parse; no code runs."""
    index = parameters_cell(node)
    if index is None:
        return {}
    try:
        tree = ast.parse(_as_python(node.cells[index].source))
    except SyntaxError:
        return {}
    found: dict[str, Any] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            literal = _literal(statement.value)
            for target in targets:
                for name in _target_names(target):  # a later assignment decides
                    found.pop(name, None)
                if isinstance(target, ast.Name) and literal is not _NOT_LITERAL:
                    found[target.id] = literal
    return found


_NOT_LITERAL = object()


def _literal(value: ast.expr) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _as_python(source: str) -> str:
    """``source`` with IPython's magics and shell escapes turned into Python calls (IPython's
    own transformer keeps line numbers); without IPython, those lines are blanked."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return "\n".join("" if _is_ipython_line(line) else line for line in source.split("\n"))
    try:
        return str(TransformerManager().transform_cell(source))  # type: ignore[no-untyped-call]
    except (SyntaxError, ValueError, IndexError):  # a broken cell: let ast name the line
        return source


def _is_ipython_line(line: str) -> bool:
    return line.lstrip().startswith(("%", "!"))


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    return []


# file extensions of text notebooks whose language jupytext knows but may not record
_EXTENSION_LANGUAGES = {".r": "r", ".rmd": "r", ".jl": "julia", ".py": "python", ".ipynb": "python"}


def notebook_language(node: Any, path: str | os.PathLike[str] | None = None) -> str:
    """The notebook's programming language, lower case: the kernelspec's, else
    ``language_info``'s, else jupytext's ``main_language``, else the file extension's
    (``python`` when nothing says)."""
    meta = node.metadata
    found = (
        meta.get("kernelspec", {}).get("language")
        or meta.get("language_info", {}).get("name")
        or meta.get("jupytext", {}).get("main_language")
    )
    if not found and path is not None:
        found = _EXTENSION_LANGUAGES.get(Path(path).suffix.lower())
    return str(found or "python").lower()
