"""The documentation site builds, its generated references are complete, and its code runs.

- ``mkdocs build --strict`` succeeds (a broken link, a missing page or a warning fails it),
  and the CLI and API references list every command and every public name;
- every ```python block of ``docs/*.md`` is executed: the blocks of one page in order, in one
  fresh Jupyter kernel, in a throw-away project (``data/`` copied from ``examples/data``,
  ``quickstart.ipynb``, a copied migrated MLflow store) — unless the comment
  ``<!-- docs-test: skip -->`` precedes the block;
- every ``$ reprokit ...`` line of a ```console block parses with the real click command, and
  the safe ones (``env``, ``hash`` of existing paths, ``--help``) run and exit 0;
- the quoted environment-diff lines of the troubleshooting page use the code's real hints,
  and the security page lists exactly the code's secret-name rules.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- docs-test: skip -->"
_FENCE = re.compile(r"^```(\w*)\s*$")
_SHELL_OPERATORS = {"|", "||", ">", ">>", "<", "&&", ";", "&", "2>", "2>&1"}


def fenced_blocks(text: str) -> Iterator[tuple[str, str, bool]]:
    """(language, body, skipped) for every fenced block; skipped when the marker precedes it."""
    lines = text.splitlines()
    k = 0
    previous = ""
    while k < len(lines):
        match = _FENCE.match(lines[k])
        if match is None:
            if lines[k].strip():
                previous = lines[k].strip()
            k += 1
            continue
        end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
        yield match.group(1), "\n".join(lines[k + 1 : end]), previous == SKIP_MARKER
        previous = ""
        k = end + 1


def python_blocks(page: Path) -> list[str]:
    return [
        body
        for lang, body, skipped in fenced_blocks(page.read_text(encoding="utf-8"))
        if lang == "python" and not skipped
    ]


def reprokit_commands(page: Path) -> list[list[str]]:
    """The argument lists of ``$ reprokit ...`` lines, cut at the first shell operator."""
    found = []
    for lang, body, skipped in fenced_blocks(page.read_text(encoding="utf-8")):
        if lang != "console" or skipped:
            continue
        for line in body.splitlines():
            if not line.startswith("$ reprokit "):
                continue
            lexer = shlex.shlex(line[2:], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            cut = next((i for i, t in enumerate(tokens) if t in _SHELL_OPERATORS), len(tokens))
            found.append(tokens[1:cut])
    return found


PAGES = sorted(DOCS.glob("*.md"))
PYTHON_PAGES = [page for page in PAGES if python_blocks(page)]
COMMANDS = [(page.name, args) for page in PAGES for args in reprokit_commands(page)]


# ----------------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return target


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def test_site_has_every_page_of_the_docs_folder(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in PAGES:
        if page.stem != "index":
            assert (site / page.stem / "index.html").is_file(), page.name
    assert (site / "lock.schema.json").is_file()


def test_cli_reference_lists_every_command(site: Path) -> None:
    from reprokit.cli import main

    html = _page(site, "cli")
    names = main.list_commands(click.Context(main, info_name="reprokit"))
    assert {"env", "hash", "run", "record", "verify"} <= set(names)
    for name in names:
        assert f'id="reprokit-{name}"' in html, name
        assert f"Usage: reprokit {name} [OPTIONS]" in html, name
    # the options come from the commands themselves
    assert "--allow-data-drift" in html and "--no-cache" in html


def test_a_command_added_later_appears_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference comes from the group's list_commands, not from a list of names."""
    import importlib.util

    from reprokit import cli

    spec = importlib.util.spec_from_file_location("_docs_hooks", ROOT / "tools" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    monkeypatch.setitem(cli._COMMANDS, "later", "reprokit.cli._capture:env_command")
    page = hooks.on_page_markdown("x\n<!-- generated: cli-reference -->\n")
    assert "## `reprokit later`" in page and "Usage: reprokit later [OPTIONS]" in page
    assert "## `reprokit verify`" in page and "<!-- generated" not in page


def test_api_reference_documents_every_public_name(site: Path) -> None:
    import reprokit

    html = _page(site, "api")
    for name in reprokit.__all__:
        if name != "__version__":
            assert f'id="{reprokit._EXPORTS[name]}.{name}"' in html, name
    # from the docstrings: seed_everything's own words, Sphinx roles turned into code
    assert "deterministic" in html
    assert ":func:" not in html and ":class:" not in html


def test_lock_page_has_a_table_per_schema_object(site: Path) -> None:
    import json

    schema = json.loads((DOCS / "lock.schema.json").read_text(encoding="utf-8"))
    html = _page(site, "lock")
    for name, obj in schema["$defs"].items():
        assert f'id="{name.lower()}"' in html, name
        for field in obj["properties"]:
            assert f"<code>{field}</code>" in html, f"{name}.{field}"


def test_changelog_and_benchmarks_are_included(site: Path) -> None:
    assert "Unreleased" in _page(site, "changelog")
    assert "Keep a Changelog" in _page(site, "changelog")
    assert "bench_hash.py" in _page(site, "benchmarks")


def test_site_needs_no_network(site: Path) -> None:
    """No web fonts or other remote assets: the site works offline."""
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text, html
        assert "fonts.gstatic.com" not in text, html


# ----------------------------------------------------------------------------- python blocks


@pytest.fixture
def doc_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template_db: Path
) -> Iterator[Path]:
    """The project a docs example runs in: data/, quickstart.ipynb, a private MLflow store."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'docs-example'\n")
    shutil.copytree(ROOT / "examples" / "data", root / "data")
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", root / "quickstart.ipynb")
    shutil.copy(mlflow_template_db, root / "mlflow.db")
    for name in ("MLFLOW_EXPERIMENT_NAME", "REPROKIT_DEVICE", "REPROKIT_PARAMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.chdir(root)
    yield root


def _first_error(nb: Any) -> tuple[int, str] | None:
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", ()):
            if output.get("output_type") == "error":
                trace = "\n".join(output.get("traceback", ()))
                return index, re.sub(r"\x1b\[[0-9;]*m", "", trace)[-3000:]
        if cell.get("execution_count") is None:
            return index, "not executed (the kernel stopped before it)"
    return None


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_python_blocks_execute(page: Path, doc_project: Path) -> None:
    blocks = python_blocks(page)
    nb = execute_notebook(blocks, doc_project, timeout=180)
    error = _first_error(nb)
    if error is not None:
        index, trace = error
        pytest.fail(f"{page.name}: python block {index + 1} failed:\n{blocks[index]}\n{trace}")


def test_the_docs_execute_enough_python() -> None:
    """The skip marker is for the odd block that cannot run here, not a way out."""
    executed = sum(len(python_blocks(page)) for page in PAGES)
    skipped = sum(
        1
        for page in PAGES
        for lang, _body, skip in fenced_blocks(page.read_text(encoding="utf-8"))
        if lang == "python" and skip
    )
    assert executed >= 12
    assert skipped <= executed // 4


def test_skip_marker_is_recognised() -> None:
    text = f"a\n\n{SKIP_MARKER}\n```python\nraise SystemExit\n```\n\n```python\nx = 1\n```\n"
    assert [(b, s) for _l, b, s in fenced_blocks(text)] == [
        ("raise SystemExit", True),
        ("x = 1", False),
    ]


# ----------------------------------------------------------------------------- console blocks


def _parse(args: list[str]) -> None:
    """Parse ``reprokit ARGS`` with the real commands: unknown options and bad values fail."""
    from reprokit.cli import main

    command: click.Command = main
    ctx = click.Context(main, info_name="reprokit")
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r}"
        ctx = click.Context(sub, info_name=rest[0], parent=ctx)
        command, rest = sub, rest[1:]
    if "--help" in rest or "-h" in rest or "--version" in rest:
        return
    command.make_context(ctx.info_name, rest, parent=ctx.parent)


@pytest.mark.parametrize(
    "args", [a for _p, a in COMMANDS], ids=[f"{p}:{' '.join(a)[:40]}" for p, a in COMMANDS]
)
def test_console_command_lines_parse(args: list[str]) -> None:
    _parse(args)


def test_console_parser_rejects_what_the_command_rejects() -> None:
    with pytest.raises(click.NoSuchOption):
        _parse(["hash", "data/", "--no-such-option"])
    with pytest.raises(click.BadParameter):
        _parse(["verify", "nb.ipynb", "--device", "tpu"])
    with pytest.raises(AssertionError):
        _parse(["no-such-command"])


def test_pytest_lines_use_the_plugin_s_options() -> None:
    """``$ pytest --reprokit...`` lines name options the plugin really adds."""
    plugin = (ROOT / "reprokit" / "pytest_plugin.py").read_text(encoding="utf-8")
    offered = set(re.findall(r'"(--reprokit[\w-]*)"', plugin))
    used = {
        option
        for page in PAGES
        for lang, body, _skip in fenced_blocks(page.read_text(encoding="utf-8"))
        if lang == "console"
        for line in body.splitlines()
        if line.startswith("$ pytest ")
        for option in re.findall(r"(--reprokit[\w-]*)", line)
    }
    assert used and used <= offered, used - offered


def _safe(args: list[str], project: Path) -> bool:
    if "--help" in args or args in (["env"], ["env", "--json"]):
        return True
    if args[:1] != ["hash"] or any(a.startswith("--expect") for a in args):
        return False
    paths = [a for a in args[1:] if not a.startswith("-") and a not in ("sha256", "md5")]
    return bool(paths) and all((project / p).exists() for p in paths)


def test_safe_console_commands_run(doc_project: Path) -> None:
    safe = [args for _page, args in COMMANDS if _safe(args, doc_project)]
    assert len(safe) >= 4, safe
    for args in safe:
        run = subprocess.run(
            [sys.executable, "-m", "reprokit", *args],
            cwd=doc_project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, f"reprokit {' '.join(args)}: {run.stderr[-2000:]}"


# ----------------------------------------------------------------------------- pages kept true


_DIFF_LINE = re.compile(r"^(\w+): (.+?): (.+?) -> (.+?) \((.+)\)$")


def _hint_texts() -> set[str]:
    from reprokit.compare import _hints

    texts = {v for v in vars(_hints).values() if isinstance(v, str)}
    texts |= set(_hints.FLAGS.values())
    texts |= {hint for hint, _rank in _hints.ENV_VARS.values()}
    return texts


def test_troubleshooting_quotes_the_real_hints() -> None:
    from reprokit.compare import _hints
    from reprokit.compare.envdiff import CATEGORIES

    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    lines = [
        line
        for lang, body, _skip in fenced_blocks(text)
        if lang == "text"
        for line in body.splitlines()
        if _DIFF_LINE.match(line) and not line.startswith("category: item:")  # not the legend
    ]
    assert len(lines) >= 20
    hints = _hint_texts()
    for line in lines:
        match = _DIFF_LINE.match(line)
        assert match is not None
        category, hint = match.group(1), match.group(5)
        assert category in CATEGORIES, line
        assert hint.removeprefix(_hints.FLAGS_UNKNOWN) in hints, line
    for category in CATEGORIES:
        assert f"`{category}`" in text, category


def test_security_page_lists_the_real_name_rules() -> None:
    from reprokit.capturing import redact

    text = (DOCS / "security.md").read_text(encoding="utf-8")
    item = re.search(r"1\. \*\*Names\*\*(.+?)\n2\. \*\*Values\*\*", text, re.S)
    assert item is not None
    names = " ".join(item.group(1).split())

    def listed(after: str, until: str) -> list[str]:
        found = re.search(re.escape(after) + r"(.+?)" + re.escape(until), names)
        assert found is not None, after
        return re.findall(r"`([A-Z_]+)`", found.group(1))

    assert listed("a secret word:", " (") == redact.SECRET_NAME_WORDS
    assert listed("a vocabulary word:", " (") == redact.VOCABULARY_TOKEN_WORDS
    assert listed("a token setting:", " (") == redact.TOKEN_SETTING_WORDS
    assert listed("are numbers or name suffixes:", " (") == redact.NAME_SUFFIX_WORDS
    assert listed("a session setting:", " (") == redact.SESSION_SETTING_WORDS
    assert listed("a pass over data:", " (") == redact.ORDINARY_PASS_QUALIFIERS
    assert listed("a key qualifier:", " (") == redact.SECRET_KEY_QUALIFIERS
    assert listed("names a key of data:", " (") == redact.ORDINARY_KEY_QUALIFIERS
    assert listed("is an auth word:", ", unless") == redact.AUTH_WORDS
    assert listed("an auth setting:", " (") == redact.AUTH_SETTING_WORDS
    assert listed("a secret last word:", " (") == redact.SECRET_LAST_WORDS
    assert listed("it holds a part:", " (") == redact.SECRET_NAME_PARTS
    assert listed("an ordinary name word:", ";") == redact.ORDINARY_NAME_WORDS
    assert listed("before a key setting:", ";") == redact.KEY_SETTING_WORDS
    assert listed("a password setting:", " (") == redact.PASSWORD_SETTING_WORDS
    pairs = [f"`{a} {b}`" for a, b in redact.SECRET_NAME_PAIRS]
    assert f"two words in a row are {' or '.join(pairs)} (" in names
    assert redact.PATTERNS_ENV_VAR in text


def test_the_nbval_section_ignores_the_folders_that_hold_executed_copies() -> None:
    """``pytest --nbval .`` after a reprokit run collected every executed copy in MLflow's
    artifact folder: the page tells nbval users to leave out the folders reprokit writes them
    to that pytest enters (hidden ones, ``.reprokit/``, it never does)."""
    from reprokit.recording.target import DEFAULT_ARTIFACT_DIR

    text = (DOCS / "pytest.md").read_text(encoding="utf-8")
    lines = [
        line
        for lang, body, _skip in fenced_blocks(text)
        if lang == "console"
        for line in body.splitlines()
        if line.startswith("$ pytest --nbval .")
    ]
    assert lines and all(f"--ignore={DEFAULT_ARTIFACT_DIR}" in line for line in lines), lines
    assert "`.reprokit/runs/`" in text and "`--output-dir`" in text
