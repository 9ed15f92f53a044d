"""MkDocs hooks: pages generated from the code, so the references cannot drift from it.

A page asks for generated content with a marker comment on a line of its own:

- ``<!-- generated: cli-reference -->`` — every command of ``reprokit.cli:main``, found with
  the group's ``list_commands`` (a lazily loaded subcommand added later appears by itself),
  with its usage, help text and options as click itself formats them;
- ``<!-- generated: api-reference -->`` — one mkdocstrings block per public name of
  ``reprokit.__all__``, grouped by the module that defines it;
- ``<!-- generated: lock-fields -->`` — one table per object of ``docs/lock.schema.json``.

Configured in ``mkdocs.yml`` under ``hooks:``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "lock.schema.json"
HELP_WIDTH = 76  # fits a code block of the theme without a horizontal scroll bar


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, render in _GENERATORS.items():
        token = f"<!-- generated: {marker} -->"
        if token in markdown:
            markdown = markdown.replace(token, render())
    return markdown


# docstrings use Sphinx roles (:func:`~reprokit.x.f`), which mkdocstrings leaves as text
_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_role_name, html)


def _role_name(match: re.Match[str]) -> str:
    name = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{name}</code>"


# ----------------------------------------------------------------------------- CLI


def cli_commands() -> list[tuple[str, click.Command]]:
    """Every command under ``reprokit`` as (full name, command), depth first, sorted."""
    from reprokit.cli import main

    found: list[tuple[str, click.Command]] = []
    _walk(main, click.Context(main, info_name="reprokit"), "reprokit", found)
    return found


def _walk(
    group: click.Command, ctx: click.Context, path: str, found: list[tuple[str, click.Command]]
) -> None:
    if not isinstance(group, click.Group):
        return
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{path} {name}"
        found.append((full, command))
        _walk(command, click.Context(command, info_name=name, parent=ctx), full, found)


def _help_text(path: str, command: click.Command) -> str:
    """``reprokit NAME --help`` exactly as a terminal of HELP_WIDTH columns shows it."""
    parent = None
    for name in path.split()[:-1]:
        parent = click.Context(click.Command(name), info_name=name, parent=parent)
    ctx = click.Context(
        command,
        info_name=path.split()[-1],
        parent=parent,
        terminal_width=HELP_WIDTH,
        max_content_width=HELP_WIDTH,
    )
    return command.get_help(ctx)


def render_cli() -> str:
    from reprokit.cli import main

    blocks = [
        "## `reprokit`\n",
        "```text\n" + _help_text("reprokit", main) + "\n```\n",
    ]
    for path, command in cli_commands():
        blocks.append(f"## `{path}`\n")
        summary = command.get_short_help_str(limit=200)
        if summary:
            blocks.append(html.escape(summary) + "\n")  # "<stem>.repro.json" is no tag
        blocks.append("```text\n" + _help_text(path, command) + "\n```\n")
    return "\n".join(blocks)


# ----------------------------------------------------------------------------- API


def api_names() -> dict[str, list[str]]:
    """Public names of ``reprokit.__all__`` grouped by the module that defines them."""
    import reprokit

    groups: dict[str, list[str]] = {}
    for name in reprokit.__all__:
        if name.startswith("__"):
            continue
        module = reprokit._EXPORTS[name]
        groups.setdefault(module, []).append(name)
    return dict(sorted(groups.items()))


# section titles of the defining modules, in page order; a module not listed here still
# appears (under its own name), so a public name added later is never left out
_API_SECTIONS = {
    "reprokit.api.session": "In a notebook or a script",
    "reprokit.magics": "IPython extension",
    "reprokit.capturing.snapshot": "Capture",
    "reprokit.capturing.seeds": "Capture",
    "reprokit.capturing.hashing": "Hashing",
    "reprokit.capturing.values": "Hashing",
    "reprokit.results.notebook": "Results",
    "reprokit.results.model": "Results",
    "reprokit.recording.recorded_run": "Results",
    "reprokit.capturing.model": "Data model",
    "reprokit.exceptions": "Errors",
}


def render_api() -> str:
    sections: dict[str, list[str]] = {title: [] for title in _API_SECTIONS.values()}
    for module, names in api_names().items():
        title = _API_SECTIONS.get(module, f"`{module}`")
        for name in sorted(names):
            sections.setdefault(title, []).append(
                f"::: {module}.{name}\n"
                f"    options:\n"
                f'      heading: "reprokit.{name}"\n'
                f'      toc_label: "{name}"\n'
            )
    blocks = []
    for title, entries in sections.items():
        if entries:
            blocks += [f"## {title}\n", *entries]
    return "\n".join(blocks)


# ----------------------------------------------------------------------------- lock schema


def _type_text(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in spec:
        return " or ".join(_type_text(option) for option in spec["anyOf"])
    kind = spec.get("type")
    if kind is None:
        return "any JSON value"
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"array of {_type_text(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec:
        values = spec["additionalProperties"]
        return f"object: name → {_type_text(values) if values else 'any JSON value'}"
    if "enum" in spec:
        return " or ".join(f"`{json.dumps(v)}`" for v in spec["enum"])
    if "const" in spec:
        return f"{kind}, always `{json.dumps(spec['const'])}`"
    return str(kind)


def _fields_table(obj: dict[str, Any]) -> str:
    required = set(obj.get("required", ()))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, spec in obj["properties"].items():
        text = spec.get("description", "").replace("|", "\\|").replace("\n", " ")
        kind = _type_text(spec).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {text} |")
    return "\n".join(rows) + "\n"


def render_lock_fields() -> str:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    blocks = ["### Lock\n", schema["description"] + "\n", _fields_table(schema)]
    for name, obj in schema["$defs"].items():
        blocks += [f"### {name}\n", obj.get("description", "") + "\n", _fields_table(obj)]
    return "\n".join(blocks)


_GENERATORS = {
    "cli-reference": render_cli,
    "api-reference": render_api,
    "lock-fields": render_lock_fields,
}
