"""The foreign-notebook corpus (``tests/corpus/``): notebooks shaped like other projects'
(papermill, nbval, nbclient, jupytext, nbmake test notebooks), each with its expected outcome
declared in ``tests/corpus/expected.toml``.

``run/`` is executed once, two at a time, and every outcome checked (the figure printed is
correct verdicts / total); ``refused/`` must be refused before any kernel starts (no kernel
is started for them, so those checks are fast); the ``[verify]`` ones are recorded and then
verified with ``--outputs``, each with its expected verdict.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from reprokit.api.run import run
from reprokit.exceptions import ReprokitError
from reprokit.options import ExecutionOptions
from reprokit.runner.plan import RunOutcome

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))


def _mismatch(outcome: RunOutcome, expected: dict[str, Any]) -> str:
    """What differs from the expectation ("" when the verdict is right)."""
    if outcome.status != expected["status"]:
        return f"status {outcome.status} (expected {expected['status']}): {outcome.failure}"
    failure = outcome.failure
    if expected["status"] == "ok":
        stopped = outcome.stopped_by.index + 1 if outcome.stopped_by is not None else None
        if stopped != expected.get("stopped_cell"):  # a sys.exit(0) that left cells unrun
            return f"stopped early at cell {stopped}, expected {expected.get('stopped_cell')}"
        return "" if failure is None else f"a failure on an ok notebook: {failure}"
    if failure is None:
        return "no failing cell named"
    got = (failure.ename, failure.index + 1)
    if got != (expected["ename"], expected["cell"]) or expected["message"] not in failure.evalue:
        return f"{got} {failure.evalue!r}, expected {expected}"
    return ""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(CORPUS, folder)  # runs write next to the notebooks' project root
    (folder / "pyproject.toml").write_text("[project]\nname = 'corpus'\n")
    return folder


@pytest.mark.slow
def test_every_corpus_notebook_gets_its_expected_verdict(corpus: Path) -> None:
    options = ExecutionOptions(device="cpu", jobs=2, timeout=120)
    outcomes = run([corpus / "run"], execution=options, record=False)
    by_name = {Path(outcome.notebook).name: outcome for outcome in outcomes}
    assert set(by_name) == set(EXPECTED["run"])  # every notebook declared, none missed
    wrong = {
        name: problem
        for name, expected in EXPECTED["run"].items()
        if (problem := _mismatch(by_name[name], expected))
    }
    total = len(EXPECTED["run"])
    print(f"corpus: {total - len(wrong)} / {total} correct verdicts")
    assert not wrong, wrong


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED["parameters"]))
def test_parameters_reach_a_parameters_cell_holding_magics(corpus: Path, name: str) -> None:
    expected = EXPECTED["parameters"][name]
    options = ExecutionOptions(device="cpu", timeout=120)
    [outcome] = run(
        [corpus / "run" / name], parameters=expected["parameters"], execution=options, record=False
    )
    assert outcome.status == "ok", outcome.failure
    cells = nbformat.read(outcome.output_path, as_version=4).cells
    printed = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    assert expected["stdout"] in printed


@pytest.mark.parametrize("name", sorted(EXPECTED["refused"]))
def test_refused_notebooks_are_one_line_exit_two_before_any_kernel(corpus: Path, name: str) -> None:
    expected = EXPECTED["refused"][name]
    with pytest.raises(ReprokitError) as caught:
        run(
            [corpus / "refused" / name],
            parameters=expected.get("parameters"),
            execution=ExecutionOptions(device="cpu"),
            record=False,
        )
    message = str(caught.value)
    assert caught.value.exit_code == expected["exit"] and "\n" not in message
    assert expected["message"] in message and name in message
    assert not (corpus / ".reprokit" / "runs").exists() or not any(
        (corpus / ".reprokit" / "runs").rglob(Path(name).stem + ".ipynb")
    )


@pytest.mark.slow
def test_recorded_corpus_notebooks_verify_with_their_expected_verdicts(
    corpus: Path, mlflow_template_db: Path
) -> None:
    """Record, then verify with ``--outputs``: seeded notebooks reproduce, an unseeded draw and a
    printed clock do not, nbval's ignore-output cells are not compared."""
    from reprokit.api.record import record
    from reprokit.api.verify import verify
    from reprokit.options import ComparisonOptions

    folder = corpus.parent / "verify"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname = 'corpus-verify'\n")
    shutil.copy(mlflow_template_db, folder / "mlflow.db")
    for name in EXPECTED["verify"]:
        shutil.copy(corpus / "run" / name, folder / name)
    options = ExecutionOptions(device="cpu", jobs=2, timeout=120)
    recorded = record([folder / name for name in EXPECTED["verify"]], execution=options)
    assert all(outcome.lock_path for outcome in recorded), [o.run.failure for o in recorded]
    verification = verify(
        [folder / name for name in EXPECTED["verify"]],
        execution=options,
        comparison=ComparisonOptions(outputs=True),
    )
    got = {Path(outcome.notebook).name: outcome.status for outcome in verification}
    wrong = {name: got[name] for name, want in EXPECTED["verify"].items() if got[name] != want}
    total = len(EXPECTED["verify"])
    print(f"corpus verify: {total - len(wrong)} / {total} correct verdicts")
    assert not wrong, wrong
