"""Which text files discovery takes for notebooks, and which of them are an ``.ipynb``'s pair.

jupytext can read any ``.py`` or ``.md`` file as a notebook; a folder of them also holds scripts,
modules and READMEs. Discovery takes a text file only when jupytext itself would see a notebook
in it, by jupytext's own rules (:func:`jupytext.formats.read_metadata`, ``guess_format``):

- a jupytext header: ``jupytext:`` with ``text_representation`` or ``formats``, in the YAML
  front matter of a ``.md`` (under ``jupyter:``, or at the top for MyST) or in the commented
  ``# ---`` header of a ``.py``, as jupytext writes them;
- a ``.md`` whose front matter says ``file_format: mystnb``: MyST-NB's own mark of a text
  notebook (Jupyter Book writes it; jupytext then reads the file as MyST);
- a ``.py`` that jupytext reads as a percent script: a line *starting* with ``# %%`` (or
  ``#%%``, or nbconvert's ``# In[ ]:``) outside a string. An indented ``# %%`` or one inside a
  docstring does not count, as jupytext does not count it.

A Markdown file without the header is documentation, whatever its code blocks hold: jupytext
would read every ``.md`` as a notebook, so only the header says that one is meant as one.

A jupytext pair (``fit.ipynb`` and ``fit.py`` with ``formats: ipynb,py:percent``) is one
notebook in two files; :func:`without_paired_texts` keeps its ``.ipynb``, the file with outputs.
The pairing is read from either side (the text file's header or the ``.ipynb``'s
``metadata.jupytext.formats``), else from a ``jupytext.toml`` above them, and resolved with
jupytext's own ``paired_paths``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HEAD_BYTES = 64 * 1024
"""How much of a text file is read to decide whether it is a notebook."""
_IPYNB = ".ipynb"
TEXT_SUFFIXES = (".py", ".md")


def read_head(path: Path) -> str | None:
    """The first :data:`HEAD_BYTES` of ``path`` as text; None when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def is_text_notebook(head: str, suffix: str) -> bool:
    """Whether a ``.py``/``.md`` file beginning with ``head`` is a notebook (module docstring)."""
    if suffix not in TEXT_SUFFIXES:
        return False
    if "jupytext" in head and _jupytext_header(head, suffix) is not None:
        return True
    if suffix == ".md" and "mystnb" in head:
        return front_matter(head).get("file_format") == "mystnb"
    # the cheap test first: most plain modules have none of the markers jupytext looks for
    if suffix != ".py" or not any(mark in head for mark in ("%%", "<codecell>", "In[")):
        return False
    from jupytext.formats import guess_format  # type: ignore[import-untyped]

    try:
        return guess_format(head, suffix)[0] in ("percent", "hydrogen")
    except Exception:  # jupytext's reading of a file it cannot parse: not a notebook here
        return False


def _jupytext_header(head: str, suffix: str) -> dict[str, Any] | None:
    """The ``jupytext`` table of the file's jupytext header, when it has one."""
    from jupytext.formats import read_metadata

    try:
        metadata = read_metadata(head, suffix)
    except Exception:  # broken YAML in the front matter: no header jupytext could use
        return None
    table = metadata.get("jupytext") if isinstance(metadata, dict) else None
    if isinstance(table, dict) and ("text_representation" in table or "formats" in table):
        return table
    return None


def front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a ``.md`` file beginning with ``text``: the mapping between a
    first line ``---`` and the next; {} if there is none or it is not a YAML mapping."""
    import yaml  # type: ignore[import-untyped]

    lines = text.splitlines()
    if not lines or lines[0].rstrip() != "---":
        return {}
    end = next((i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "---"), None)
    if end is None:
        return {}
    try:
        found = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return {}
    return found if isinstance(found, dict) else {}


def with_kernel_display_name(text: str) -> str:
    """``text`` (a ``.md`` notebook) with ``display_name`` added to a front matter kernelspec
    that lacks it, as MyST-NB allows (``kernelspec: {name: python3}``) and nbformat, so
    jupytext, refuses; any other text unchanged."""
    import yaml

    matter = front_matter(text)
    kernelspec = matter.get("kernelspec")
    if not isinstance(kernelspec, dict) or "display_name" in kernelspec:
        return text
    if not isinstance(kernelspec.get("name"), str):
        return text
    kernelspec["display_name"] = kernelspec["name"]
    lines = text.splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "---")
    dumped = yaml.safe_dump(matter, sort_keys=False, allow_unicode=True)
    return "".join([lines[0], dumped, *lines[end:]])


def without_paired_texts(found: list[Path]) -> list[Path]:
    """``found`` without each text notebook whose jupytext pair's ``.ipynb`` is in it too."""
    ipynbs = {path.resolve() for path in found if path.suffix == _IPYNB}
    if not ipynbs or all(path.suffix == _IPYNB for path in found):
        return found
    linked: set[tuple[Path, Path]] = set()
    for path in found:
        for other in _paired_with(path):
            linked |= {(path.resolve(), other), (other, path.resolve())}
    return [
        path
        for path in found
        if path.suffix == _IPYNB or not any((path.resolve(), nb) in linked for nb in ipynbs)
    ]


def pair_texts(notebook: Path) -> list[Path]:
    """The text files (``.py``, ``.md``) on disk that are ``notebook``'s (an ``.ipynb``)
    jupytext pair, by the pairing either side declares; named beside ``notebook`` when they
    are in its folder."""
    if notebook.suffix != _IPYNB:
        return []
    target, folder = notebook.resolve(), notebook.parent.resolve()
    found = {p for p in _paired_with(notebook) if p.suffix in TEXT_SUFFIXES and p.is_file()}
    for suffix in TEXT_SUFFIXES:
        text = notebook.with_suffix(suffix)
        if text.is_file() and target in _paired_with(text):
            found.add(text.resolve())
    return sorted(notebook.parent / p.name if p.parent == folder else p for p in found)


def pair_notebook(text: Path) -> Path | None:
    """The ``.ipynb`` on disk whose jupytext pair ``text`` (a ``.py`` or ``.md``) is, by the
    pairing either side declares; None when it has none."""
    if text.suffix not in TEXT_SUFFIXES:
        return None
    own = text.resolve()
    candidates = [p for p in _paired_with(text) if p.suffix == _IPYNB]
    for candidate in [*candidates, text.with_suffix(_IPYNB)]:
        if candidate.is_file() and own in {p.resolve() for p in pair_texts(candidate)}:
            return candidate
    return None


def _paired_with(path: Path) -> Iterable[Path]:
    """The other files of ``path``'s jupytext pairing (resolved), as its own metadata says."""
    formats = _formats_of(path)
    if not formats:
        return ()
    from jupytext.paired_paths import paired_paths  # type: ignore[import-untyped]

    try:
        pairs = paired_paths(str(path), {"extension": path.suffix}, formats)
    except Exception:  # formats that do not name this file (InconsistentPath), or malformed
        return ()
    return [Path(other).resolve() for other, _ in pairs if Path(other) != path]


def _formats_of(path: Path) -> str | list[str] | None:
    if path.suffix == _IPYNB:
        table = _ipynb_jupytext(path)
    else:
        head = read_head(path)
        table = _jupytext_header(head, path.suffix) if head is not None else None
    formats = (table or {}).get("formats")
    if isinstance(formats, (str, list)):
        return formats
    return _configured_formats(path)


def _configured_formats(path: Path) -> str | list[str] | None:
    """The pairing a ``jupytext.toml`` (or another jupytext configuration file, as jupytext
    finds it from the file's folder up) sets for every notebook: ``jupytext --sync`` writes
    no metadata then."""
    from jupytext.config import load_jupytext_config  # type: ignore[import-untyped]

    try:
        config = load_jupytext_config(str(path))
    except Exception:  # a configuration jupytext itself refuses: no pairing known
        return None
    formats = getattr(config, "formats", None)
    if isinstance(formats, list) and all(isinstance(f, str) for f in formats):
        formats = ",".join(formats)  # the configuration's list: one string of formats each
    return formats if isinstance(formats, str) and formats else None


def _ipynb_jupytext(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            node = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None  # loading it reports the error, with the file's name
    metadata = node.get("metadata") if isinstance(node, dict) else None
    table = metadata.get("jupytext") if isinstance(metadata, dict) else None
    return table if isinstance(table, dict) else None
