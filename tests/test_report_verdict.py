"""Reports of a verdict: terminal table, JSON, JUnit XML and a self-contained HTML file."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from lock_helpers import executed, make_project, record
from rich.console import Console

from reprokit._serde import from_builtins
from reprokit.compare.verify import Verdict, check_data, verify_results
from reprokit.report.html import render_html, write_html
from reprokit.report.json_report import verdicts_json, write_json_report
from reprokit.report.junit import junit_xml, write_junit
from reprokit.report.table import plain_table, print_verdicts, verdict_line
from reprokit.results import encode_result, read_notebook

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def failing_verdict(tmp_path: Path) -> Verdict:
    """acc reproduced, w drifted beyond tolerance, gone missing, new unexpected, data drift."""
    project = make_project(tmp_path)
    w = np.linspace(0, 1, 50)
    lock = record(
        project,
        [
            encode_result("acc", 0.9, rtol=1e-3),
            encode_result("w", w, rtol=1e-6),
            encode_result("gone", "x"),
            encode_result("label", f"token {SECRET}"),
        ],
    )
    (project.data / "a.csv").write_text("changed\n")
    data = check_data(lock, project.root, cache=None)
    drifted = w.copy()
    drifted[3] += 0.5
    now = [
        encode_result("acc", 0.9),
        encode_result("w", drifted),
        encode_result("new", math.inf),
        encode_result("label", f"token {SECRET}"),
    ]
    node = executed(project, now)
    return verify_results(
        lock,
        read_notebook(node),
        lock_dir=project.lock_path.parent,
        data=data,
        executed_notebook=node,
        command="reprokit verify notebooks/fig3.ipynb --device cpu",
    )


@pytest.fixture
def verdict(tmp_path: Path) -> Verdict:
    return failing_verdict(tmp_path)


def test_verdict_line_says_what_failed(verdict: Verdict) -> None:
    line = verdict_line(verdict)
    assert line.startswith("NOT REPRODUCED notebooks/fig3.ipynb")
    assert "1 differs" in line and "1 missing" in line and "data drifted: 1 path(s)" in line


def test_plain_table_has_a_row_per_result(verdict: Verdict) -> None:
    text = plain_table(verdict)
    lines = text.splitlines()
    assert lines[0].split() == [
        "notebook",
        "result",
        "reference",
        "obtained",
        "deviation",
        "tolerance",
        "status",
    ]
    for name in ("acc", "w", "gone", "new", "label"):
        assert any(f" {name} " in line for line in lines[2:])
    assert SECRET not in text


def test_rich_table_prints_rows_and_environment(verdict: Verdict) -> None:
    buffer = io.StringIO()
    print_verdicts([verdict], Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "differs" in text and "missing" in text and "NOT REPRODUCED" in text
    assert SECRET not in text


def test_each_result_that_failed_says_why_below_the_tables(verdict: Verdict) -> None:
    """The tables have no room for the message: a reviewer saw ``differs`` and ``-`` for an
    array file that no longer held the recorded array, its reason only in the JSON."""
    buffer = io.StringIO()
    print_verdicts([verdict], Console(file=buffer, width=200, color_system=None))
    for text in (buffer.getvalue(), plain_table(verdict)):
        assert "  w: differs: 1 of 50 elements differs; first at [3]: current" in text
        assert "  gone: missing: in the lock, not produced by this execution" in text
        assert "  acc: " not in text  # reproduced: nothing to explain


def test_json_report_parses_back_into_verdicts(verdict: Verdict) -> None:
    text = verdicts_json([verdict])
    document = json.loads(text, parse_constant=_refuse)  # strict JSON: no NaN/Infinity
    assert document["reproduced"] is False
    assert from_builtins(document["verdicts"][0], Verdict) == verdict


def _refuse(token: str) -> None:
    raise AssertionError(f"non-standard JSON token {token}")


def test_json_report_file_is_written(tmp_path: Path, verdict: Verdict) -> None:
    path = tmp_path / "out" / "report.json"
    path.parent.mkdir()
    write_json_report(verdict, path)
    assert json.loads(path.read_text())["verdicts"][0]["notebook"] == "notebooks/fig3.ipynb"


def test_junit_has_one_testcase_per_result_and_failures(tmp_path: Path, verdict: Verdict) -> None:
    path = tmp_path / "junit.xml"
    write_junit([verdict], path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "5" and root.get("failures") == "2"
    cases = root.findall("./testsuite/testcase")
    assert sorted(c.get("name") or "" for c in cases) == ["acc", "gone", "label", "new", "w"]
    assert {c.get("classname") for c in cases} == {"notebooks/fig3.ipynb"}
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"gone", "w"}
    w_failure = failed["w"]
    assert w_failure is not None and w_failure.get("type") == "differs"
    assert "deviation: abs 0.5" in (w_failure.text or "")
    assert "tolerance: rtol=1e-06" in (w_failure.text or "")
    assert "a.csv" in (root.findtext("./testsuite/system-err") or "")
    assert SECRET not in path.read_text()


def test_a_difference_without_a_size_is_not_shown_as_deviation_0(tmp_path: Path) -> None:
    """A changed str was shown with deviation ``0``, which reads as no difference at all."""
    project = make_project(tmp_path)
    before = {"s": "a", "b": True, "same": "x", "n": 1.0}
    lock = record(project, [encode_result(k, v) for k, v in before.items()])
    now = [encode_result(k, v) for k, v in {"s": "b", "b": False, "same": "x", "n": 2.0}.items()]
    verdict = verify_results(lock, read_notebook(executed(project, now)))
    rows = {line.split()[1]: line.split() for line in plain_table(verdict).splitlines()[2:]}
    assert rows["s"][-3:] == ["-", "exact", "differs"] and rows["b"][-3] == "-"
    assert rows["same"][-3] == "0" and rows["n"][-6:-2] == ["abs", "1", "rel", "1"]
    assert "<td>-<br>current &#x27;b&#x27;, reference &#x27;a&#x27;</td>" in render_html([verdict])
    junit = junit_xml([verdict])
    assert "deviation: -" in junit and "deviation: 0" not in junit
    assert 'message="s: differs"' in junit and 'message="n: differs (abs 1 rel 1)"' in junit
    (check,) = [c for c in verdict.checks if c.name == "s"]
    assert check.deviation is not None and check.deviation.mismatched_count == 1  # in JSON


def test_junit_of_a_reproduced_notebook_has_no_failure(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 0.5)])
    found = read_notebook(executed(project, [encode_result("acc", 0.5)]))
    root = ET.fromstring(junit_xml(verify_results(lock, found)))
    assert root.get("failures") == "0" and root.find(".//failure") is None


class _Checker(HTMLParser):
    """Collects tags and checks every opened element is closed (void elements aside)."""

    VOID: ClassVar[set[str]] = {"meta", "br", "rect", "line", "img", "link", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_well_formed_self_contained_and_has_the_verdict(verdict: Verdict) -> None:
    page = render_html([verdict])
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert {"svg", "table", "style"} <= checker.tags and "script" not in checker.tags
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "url(" not in page and "@import" not in page
    text = "".join(checker.text)
    assert "NOT REPRODUCED" in text and "notebooks/fig3.ipynb" in text
    assert "reprokit verify notebooks/fig3.ipynb --device cpu" in text
    assert "a.csv" in text and "blake3:" in text  # the data table with digests
    assert SECRET not in page and "&lt;redacted&gt;" in page


def test_the_html_banner_counts_the_notebooks_that_reproduced(
    tmp_path: Path, verdict: Verdict
) -> None:
    """With 1 of 2 reproduced it read "NOT REPRODUCED: 1 of 2 notebook(s)", as if 1 had not."""
    project = make_project(tmp_path / "green")
    lock = record(project, [encode_result("acc", 0.5)])
    green = verify_results(lock, read_notebook(executed(project, [encode_result("acc", 0.5)])))
    page = render_html([green, verdict, verdict])
    assert "NOT REPRODUCED: 1 of 3 notebook(s) reproduced</div>" in page


def test_html_shows_a_bar_for_the_drifted_array(verdict: Verdict) -> None:
    page = render_html(verdict)
    assert page.count("<svg") == 1  # only "w" has a measured error against a tolerance
    assert 'fill="#cf222e"' in page  # past the tolerance: red


def test_html_of_a_reproduced_notebook_is_green(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 0.5)])
    found = read_notebook(executed(project, [encode_result("acc", 0.5)]))
    page = render_html(verify_results(lock, found))
    assert 'class="banner ok"' in page and 'class="banner fail"' not in page
    assert "No difference from the reference environment" in page or "Environment diff" in page


def _chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    return subprocess.run([chromium, *flags, *args], check=True, capture_output=True, timeout=120)


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of an 8-bit RGBA/RGB PNG (what Chromium writes)."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    step = 4 if colour == 6 else 3
    raw, stride, rows, previous = zlib.decompress(idat), width * step, [], bytes(width * step)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - step] if x >= step else 0
            b, c = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = bytes(line)
    return width, height, rows


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium")
def test_html_renders_in_headless_chromium(tmp_path: Path, verdict: Verdict) -> None:
    """The report as a browser shows it: the verdict text in the rendered DOM, and the red
    banner of a failed verification painted in the top of a real screenshot."""
    page = tmp_path / "report.html"
    write_html(verdict, page)
    dom = _chromium("--dump-dom", page.as_uri()).stdout.decode()
    assert "NOT REPRODUCED" in dom and 'class="banner fail"' in dom
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1000,800", page.as_uri())
    width, height, rows = _png_pixels(shot)
    assert (width, height) == (1000, 800)
    step = len(rows[0]) // width
    red = (0xCF, 0x22, 0x2E)
    top = rows[: height // 3]
    painted = sum(
        1 for row in top for x in range(0, width * step, step * 10) if tuple(row[x : x + 3]) == red
    )
    assert painted > 50, "no red verdict banner in the top third of the rendered report"


def test_failures_carry_the_environment_diff(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, [encode_result("acc", 0.5)])
    assert lock.snapshot is not None
    old = replace(lock.snapshot, packages={**lock.snapshot.packages, "numpy": "0.0.1"})
    lock = replace(lock, snapshot=old)
    found = read_notebook(executed(project, [encode_result("acc", 0.75)]))
    verdict = verify_results(lock, found)
    failure = ET.fromstring(junit_xml(verdict)).find(".//failure")
    assert failure is not None and "environment changes:" in (failure.text or "")
    assert "numpy: 0.0.1 -> " in (failure.text or "")
    page = render_html(verdict)
    assert "Environment diff" in page and "0.0.1" in page
    assert "numpy: 0.0.1" in plain_table(verdict)


def test_reports_hold_no_absolute_git_root(tmp_path: Path) -> None:
    """The verdict's git facts are the current machine's: its repository's absolute folder
    (the reviewer's ``/home/...``) is not in the JSON, HTML or JUnit report."""
    project = make_project(tmp_path)
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project.root, check=True)
    subprocess.run([*git, "add", "."], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=project.root, check=True)
    lock = record(project, [encode_result("acc", 0.5)])
    verdict = verify_results(lock, read_notebook(executed(project, [encode_result("acc", 0.5)])))
    assert verdict.git is not None and verdict.git.commit and verdict.git.root is None
    for text in (verdicts_json(verdict), render_html(verdict), junit_xml(verdict)):
        assert str(project.root.resolve()) not in text and str(project.root) not in text


def test_a_long_or_multiline_result_name_keeps_the_table_readable(tmp_path: Path) -> None:
    """A 300-character name squeezed every other column to nothing, and a newline in a name
    split its row in two."""
    project = make_project(tmp_path)
    long, split = "n" * 300, "first\nsecond"
    results = [encode_result(long, 1.0), encode_result(split, 2.0)]
    lock = record(project, results)
    node = executed(project, results)
    verdict = verify_results(lock, read_notebook(node), lock_dir=project.lock_path.parent)
    buffer = io.StringIO()
    print_verdicts([verdict], Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    assert "first\\nsecond" in text and "\nsecond" not in text
    assert text.count("reproduced") >= 2 and "1.0" in text  # the other columns are shown


def test_why_a_result_failed_is_one_line_without_escape_codes(tmp_path: Path) -> None:
    """A result named ``a\\n::error::pwned`` put ``::error::pwned`` on a line of its own below
    the verdict, which GitHub Actions runs as a command; ``\\x1b[2J`` cleared the screen."""
    from reprokit.report.table import failing_lines

    project = make_project(tmp_path)
    names = ("a\n::error::pwned", "b\x1b[2J")
    lock = record(project, [encode_result(n, 1.0) for n in names])
    node = executed(project, [encode_result(n, 2.0) for n in names])
    verdict = verify_results(lock, read_notebook(node), lock_dir=project.lock_path.parent)
    lines = failing_lines(verdict)
    assert len(lines) == 2 and all("\n" not in line and "\x1b" not in line for line in lines)
    assert any(line.startswith("a\\n::error::pwned: differs") for line in lines)
