"""The house rules, checked over the source with :mod:`ast`: stages import only earlier stages,
front ends sit beside the flow, and no module reaches into another package's private modules.

The order (docs/concepts.md draws it)::

    base ─► capturing ─► results ─► recording ─► runner ─► compare ─► report ─► api ─► front ends

``base`` is what every stage may use (errors, options, file helpers, notebooks as files and
text, the plugin loader); ``api`` holds one module per public verb; the front ends (``cli``,
``magics``, the pytest plugin) call the API and format what comes back. Every import counts,
also one inside a function or under ``TYPE_CHECKING``: a later stage's name in an earlier
stage's signature is still a backward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reprokit"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "_version",
            "exceptions",
            "options",
            "comparison",
            "statuses",
            "_fsutil",
            "_serde",
            "_warn",
            "_archive",
            "plugins",
            "notebook",
        }
    ),
    frozenset({"capturing"}),
    frozenset({"results"}),
    frozenset({"recording"}),
    frozenset({"runner"}),
    frozenset({"compare"}),
    frozenset({"report"}),
    frozenset({"api"}),
    frozenset({"cli", "magics", "pytest_plugin", "pytest_items", "__main__"}),
)
# the package's face: lazy re-exports of the public API (it imports nothing eagerly but the
# version)
EXEMPT = frozenset({"reprokit"})


def layer_of(module: str) -> int:
    """The layer of ``reprokit.<unit>...`` (unit: a top-level module or a stage package)."""
    unit = module.split(".")[1]
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{module}: not placed in a layer (add it to LAYERS and concepts.md)")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, imported module, imported names) for every import of a ``reprokit`` module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names if _ours(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module or ""):
            found.append((node.lineno, str(node.module), tuple(a.name for a in node.names)))
    return found


def _ours(module: str) -> bool:
    return module.split(".")[0] == "reprokit"


def expanded(module: str, names: tuple[str, ...]) -> list[str]:
    """``from reprokit import session`` imports the module ``reprokit.session``: count it."""
    if module != "reprokit":
        return [module]
    return [f"reprokit.{name}" for name in names if (PACKAGE / name).exists()] or [module]


def violations(path: Path) -> list[str]:
    here = module_name(path)
    if here in EXEMPT:
        return []
    problems = []
    for line, module, names in imports_of(path):
        for target in expanded(module, names):
            problems += _check(here, f"{path.name}:{line}", target, names)
    return problems


def _check(here: str, where: str, target: str, names: tuple[str, ...]) -> list[str]:
    if target == "reprokit":
        return [f"{here} ({where}) imports the package face `reprokit`: import the module"]
    problems = []
    if layer_of(target) > layer_of(here):
        problems.append(f"{here} ({where}) imports the later {target}")
    same_unit = target.split(".")[1] == here.split(".")[1]
    private_module = any(part.startswith("_") for part in target.split(".")[2:])
    private_name = any(name.startswith("_") and not name.startswith("__") for name in names)
    if not same_unit and (private_module or private_name):
        problems.append(f"{here} ({where}) reaches into the private {target} {names or ''}")
    return problems


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in all_modules():
        name = module_name(path)
        if name not in EXEMPT:
            layer_of(name)


def test_stages_import_only_earlier_stages() -> None:
    problems = [problem for path in all_modules() for problem in violations(path)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_backward_import(tmp_path: Path) -> None:
    """The rule is not vacuous: a capture module importing the report stage is caught."""
    fake = PACKAGE / "capturing" / "_scratch_backward.py"
    source = "def f():\n    from reprokit.report.render import result_summary\n"
    tree_path = tmp_path / "reprokit" / "capturing" / "_scratch_backward.py"
    tree_path.parent.mkdir(parents=True)
    tree_path.write_text(source)
    here = module_name(fake)
    found = [
        problem
        for line, module, names in imports_of(tree_path)
        for problem in _check(here, f"x:{line}", module, names)
    ]
    assert found == [
        "reprokit.capturing._scratch_backward (x:2) imports the later reprokit.report.render"
    ]


@pytest.mark.parametrize(
    ("here", "target", "names", "expected"),
    [
        ("reprokit.compare.verify", "reprokit.capturing.walk", ("links_outside",), 0),
        ("reprokit.compare.verify", "reprokit.capturing._walk", ("links_outside",), 1),
        ("reprokit.api.verify", "reprokit.capturing.hashing", ("_private",), 1),
        ("reprokit.capturing.hashing", "reprokit.capturing._pool", ("_serve",), 0),
        ("reprokit.cli._run", "reprokit.api.run", ("run",), 0),
        ("reprokit.api.run", "reprokit.cli", ("main",), 1),
    ],
)
def test_rules(here: str, target: str, names: tuple[str, ...], expected: int) -> None:
    assert len(_check(here, "x:1", target, names)) == expected


FUNCTION_LIMIT = 50  # lines of a function, from `def` to its last line
COMMAND_LIMIT = 25  # lines of a CLI command's function


def _function_lengths() -> list[tuple[int, int, str]]:
    """(length, limit, where) of every function of reprokit/."""
    found = []
    for path in all_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                command = any("command" in ast.unparse(d) for d in node.decorator_list)
                limit = COMMAND_LIMIT if command else FUNCTION_LIMIT
                found.append((length, limit, f"{module_name(path)}.{node.name} ({length} lines)"))
    return found


def test_functions_stay_short() -> None:
    """Small functions (STYLE.md): none over 50 lines, no CLI command over 25: a command
    parses, calls the API and formats; logic that grows belongs in the API."""
    lengths = _function_lengths()
    assert any(limit == COMMAND_LIMIT for _, limit, _ in lengths)  # the commands are seen
    too_long = [where for length, limit, where in lengths if length > limit]
    assert not too_long, "\n".join(too_long)


def test_concepts_page_draws_the_real_tree() -> None:
    """docs/concepts.md names every module of reprokit/ in the row of its package (and every
    package is in the layer table), so the page cannot drift from `find reprokit -name '*.py'`."""
    page = (PACKAGE.parent / "docs" / "concepts.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("|")]
    missing = []
    for path in all_modules():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            if parts[0] != "__init__.py" and f"`{parts[0]}`" not in page:
                missing.append(parts[0])
            continue
        row = next((r for r in rows if f"`{parts[0]}/`" in r), "")
        stem = path.stem
        if not row or (stem != "__init__" and stem not in row):
            missing.append("/".join(parts))
    assert not missing, f"docs/concepts.md does not name: {', '.join(missing)}"
