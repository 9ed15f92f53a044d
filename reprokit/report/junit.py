"""Verdicts as JUnit XML for CI: one ``testsuite`` per notebook, one ``testcase`` per result
(:func:`junit_xml`), or, for GitLab, one ``testcase`` per notebook (:func:`junit_notebooks_xml`).

``classname`` is the notebook, ``name`` the result. ``differs`` and ``missing`` are
``<failure>`` elements whose text carries the deviation, the tolerance and the environment
changes most likely to explain it; ``unexpected`` passes with a note in ``system-out``.
Data drift is written in the suite's ``system-err`` and as a ``data-drift`` property; the Dask
worker that executed a notebook, as its suite's ``executed_by`` property.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import PurePosixPath

from reprokit._fsutil import atomic_write_bytes
from reprokit.capturing.redact import redact_text
from reprokit.compare.verify import FAILING, ResultCheck, Verdict
from reprokit.report.ci import NotebookCase
from reprokit.report.table import (
    as_verdicts,
    env_lines,
    format_deviation,
    format_tolerance,
    output_lines,
    verdict_line,
)

__all__ = ["junit_notebooks_xml", "junit_xml", "write_junit", "write_junit_notebooks"]


def junit_xml(verdicts: Verdict | Sequence[Verdict]) -> str:
    listed = as_verdicts(verdicts)
    root = ET.Element("testsuites", name="reprokit")
    for verdict in listed:
        root.append(_suite(verdict))
    _count(root, listed)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(verdicts: Verdict | Sequence[Verdict], path: str | os.PathLike[str]) -> None:
    atomic_write_bytes(path, junit_xml(verdicts).encode("utf-8"))


def _count(element: ET.Element, verdicts: Sequence[Verdict]) -> None:
    checks = [c for verdict in verdicts for c in verdict.checks]
    compared = [v for v in verdicts if v.outputs_compared]
    failing = [v for v in compared if any(not c.passed for c in v.outputs)]
    stopped = [v.not_compared for v in verdicts if v.not_compared is not None]
    element.set("tests", str(len(checks) + len(compared) + len(stopped)))
    failures = sum(c.status in FAILING for c in checks) + len(failing)
    element.set("failures", str(failures + stopped.count("data_changed")))
    element.set("errors", str(stopped.count("execution_failed")))


def _suite(verdict: Verdict) -> ET.Element:
    suite = ET.Element("testsuite", name=verdict.notebook)
    _count(suite, [verdict])
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(verdict):
        ET.SubElement(properties, "property", name=name, value=redact_text(value))
    environment = "\n".join(env_lines(verdict))
    for check in verdict.checks:
        suite.append(_case(verdict, check, environment))
    if verdict.outputs_compared:
        suite.append(_outputs_case(verdict, environment))
    if verdict.not_compared is not None:
        suite.append(_not_compared_case(verdict))
    out = ET.SubElement(suite, "system-out")
    out.text = verdict_line(verdict)
    if not verdict.data_ok and verdict.data is not None:
        err = ET.SubElement(suite, "system-err")
        err.text = "\n".join(
            f"data {e.status}: {e.path} ({e.reason})"
            + "".join(f"\n  {f.change}: {f.path}" for f in e.files)
            for e in verdict.data.drifted
        )
    return suite


def _not_compared_case(verdict: Verdict) -> ET.Element:
    """One test case for a notebook nothing was compared for: a failure when its data
    changed, an error when its execution failed."""
    case = ET.Element("testcase", classname=verdict.notebook, name=str(verdict.not_compared))
    if verdict.not_compared == "execution_failed":
        message = redact_text(verdict.execution_error or "execution failed")
        text = message + "".join(f"\n{line}" for line in _source_lines(verdict))
        ET.SubElement(case, "error", message=message).text = text
    else:
        drifted = verdict.data.drifted if verdict.data is not None else ()
        message = f"input data changed: {len(drifted)} path(s); nothing was executed"
        ET.SubElement(case, "failure", message=message).text = message
    return case


def _properties(verdict: Verdict) -> list[tuple[str, str]]:
    props = [
        ("reference_device", verdict.reference_device),
        ("current_device", verdict.current_device),
        ("reproduced", str(verdict.reproduced).lower()),
        ("data-drift", str(not verdict.data_ok).lower()),
    ]
    if verdict.run_id:
        props.append(("reference_run_id", verdict.run_id))
    if verdict.executed_by:
        props.append(("executed_by", verdict.executed_by))
    if verdict.git is not None and verdict.git.commit:
        props.append(("git_commit", verdict.git.commit + (" (dirty)" if verdict.git.dirty else "")))
    if verdict.source_changes:
        props.append(("source_changed_cells", _cells(verdict.source_changes)))
    return props


def _source_lines(verdict: Verdict) -> list[str]:
    if not verdict.source_changes:
        return []
    return [f"source changed since the lock was written: cells {_cells(verdict.source_changes)}"]


def _cells(indices: Sequence[int]) -> str:
    return ", ".join(str(index + 1) for index in indices)


def _case(verdict: Verdict, check: ResultCheck, environment: str) -> ET.Element:
    case = ET.Element("testcase", classname=verdict.notebook, name=check.name, time="0")
    if check.status in FAILING:
        failure = ET.SubElement(
            case, "failure", type=check.status, message=redact_text(_summary(check))
        )
        lines = [
            f"reference: {check.reference or '-'}",
            f"obtained:  {check.obtained or '-'}",
            f"deviation: {format_deviation(check.deviation)}",
            f"tolerance: {format_tolerance(check.tolerance, check.tolerance_source)}",
            f"detail:    {check.message}",
        ]
        if environment:
            lines += ["environment changes:", environment]
        failure.text = redact_text("\n".join(lines))
    elif check.status == "unexpected":
        out = ET.SubElement(case, "system-out")
        out.text = redact_text(check.message)
    return case


def _outputs_case(verdict: Verdict, environment: str) -> ET.Element:
    """``--outputs``: one test case for the notebook's cell outputs."""
    case = ET.Element("testcase", classname=verdict.notebook, name="cell outputs", time="0")
    lines = output_lines(verdict)
    if any(not check.passed for check in verdict.outputs):
        message = lines[-1] if len(lines) > 1 else lines[0]
        failure = ET.SubElement(case, "failure", type="outputs", message=redact_text(message))
        failure.text = redact_text("\n".join([*lines, "environment changes:", environment]))
    else:
        ET.SubElement(case, "system-out").text = redact_text("\n".join(lines))
    return case


def _summary(check: ResultCheck) -> str:
    if check.status == "missing":
        return f"{check.name}: missing (in the lock, not produced)"
    if check.status == "nondeterministic":
        return f"{check.name}: nondeterministic (its repeated runs disagree)"
    size = format_deviation(check.deviation)
    return f"{check.name}: differs" + ("" if size == "-" else f" ({size})")


# ----------------------------------------------------------------------------- GitLab's shape

CaseProperties = Sequence[Sequence[tuple[str, str]]] | None
"""Per notebook, extra ``(name, value)`` properties of its test case."""
_FAILURES = ("not_reproduced", "data_changed")


def junit_notebooks_xml(cases: Sequence[NotebookCase], properties: CaseProperties = None) -> str:
    """JUnit with one ``testcase`` per notebook, the shape GitLab shows (``--ci gitlab``).

    Each test case has ``classname`` (``reprokit.`` and the notebook's folder), ``name`` (the
    notebook's file name), ``file`` (its path in the repository), ``time`` (seconds executing
    it; 0 for a verdict reused from the skip cache), its ``properties``, and, when it did not
    reproduce, a ``failure`` (``error`` when it failed to execute) whose text — the failing
    results, the environment diff, the changed data, the failed cell — is in ``system-out``
    too: GitLab shows both and ignores a suite's ``system-err``. ``properties`` gives each
    case's extra ``(name, value)`` pairs, in the order of ``cases``.
    """
    root = ET.Element("testsuites", name="reprokit")
    suite = ET.SubElement(root, "testsuite", name="reprokit verify")
    extra = list(properties) if properties is not None else [() for _ in cases]
    for case, more in zip(cases, extra, strict=True):
        suite.append(_notebook_case(case, more))
    for element in (root, suite):
        element.set("tests", str(len(cases)))
        element.set("failures", str(sum(c.status in _FAILURES for c in cases)))
        element.set("errors", str(sum(c.status == "execution_failed" for c in cases)))
        element.set("time", f"{sum(c.duration_s for c in cases):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit_notebooks(
    cases: Sequence[NotebookCase],
    path: str | os.PathLike[str],
    properties: CaseProperties = None,
) -> None:
    atomic_write_bytes(path, junit_notebooks_xml(cases, properties).encode("utf-8"))


def _notebook_case(case: NotebookCase, extra: Sequence[tuple[str, str]]) -> ET.Element:
    folder = PurePosixPath(case.file).parent.as_posix()
    classname = "reprokit" if folder in (".", "") else "reprokit." + folder.replace("/", ".")
    element = ET.Element(
        "testcase",
        classname=classname,
        name=PurePosixPath(case.file).name,
        file=case.file,
        time=f"{case.duration_s:.3f}",
    )
    listed = [("status", case.status), ("verdict", case.verdict), *case.properties, *extra]
    if case.cached_at is not None:
        listed.append(("cached_at", case.cached_at))
    properties = ET.SubElement(element, "properties")
    for name, value in listed:
        ET.SubElement(properties, "property", name=name, value=redact_text(value))
    if not case.passed:
        kind = "error" if case.status == "execution_failed" else "failure"
        failed = ET.SubElement(element, kind, type=case.status, message=case.title)
        failed.text = case.detail
    ET.SubElement(element, "system-out").text = case.detail or case.verdict
    return element
