"""Canary secrets through record, verify and every report: then every byte reprokit wrote is
searched for them. Real kernels, a real git repository, a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fault_helpers import run_cli
from run_helpers import write_notebook

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]

CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIcanaryAWS0bPxRfiCYEXAMPLEKEY",
    "GITHUB_TOKEN": "ghp_canaryGITHUB0123456789abcdefghijklmn",
    "HF_TOKEN": "hf_canaryHUGGINGFACEabcdefghijklmnopq",
    "DB_PASSWORD": "canary-db-password-771",
    "DATABASE_URL": "postgresql://analyst:canary-url-password-553@db.internal:5432/lab",
}
GIT_TOKEN = "canary-git-remote-token-918"
SECRET_PARAM = "canary-secret-parameter-406"
URI_PASSWORD = "canary-tracking-password-227"
ALL = [*CANARIES.values(), GIT_TOKEN, SECRET_PARAM, URI_PASSWORD]

NOTEBOOK = [
    "import os, reprokit\nreprokit.start(seed=seed)",
    "reprokit.result('token_length', len(token))\n"
    "reprokit.result('value', seed * 2.5)\n"
    "print('env secrets visible to the notebook:', 'HF_TOKEN' in os.environ)",
    "print('a careless notebook prints its token:', token)",
    # and declares it as a result: the kernel's own results.json (uploaded to MLflow) had it
    "reprokit.result('echoed', token)\nreprokit.end()",
]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, timeout=60)


def _hits(folder: Path, skip: set[Path]) -> tuple[dict[str, list[str]], set[str]]:
    """Which canaries occur in which file under ``folder`` (raw bytes, every file), and the
    kinds of file searched."""
    found: dict[str, list[str]] = {}
    searched: set[str] = set()
    for path in folder.rglob("*"):
        if not path.is_file() or path in skip or ".git" in path.relative_to(folder).parts:
            continue
        searched.add(path.suffix or path.name)
        data = path.read_bytes()
        for canary in ALL:
            if canary.encode() in data:
                found.setdefault(canary, []).append(str(path.relative_to(folder)))
    return found, searched


@pytest.mark.slow
def test_canary_secrets_never_reach_anything_reprokit_writes(project: Path) -> None:
    nb = write_notebook(
        project / "nbs" / "canary.ipynb", NOTEBOOK, parameters="seed = 0\ntoken = ''"
    )
    _git(project, "init", "-q")
    _git(project, "remote", "add", "origin", f"https://ci-bot:{GIT_TOKEN}@git.example/lab.git")
    _git(
        project,
        "-c",
        "user.email=t@t",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    env = {**os.environ, **CANARIES, "token": SECRET_PARAM}
    common = ["--device", "cpu", "--secret-param", "token"]
    logs = [
        run_cli(["record", str(nb), *common], project, env=env),
        run_cli(
            [
                "verify",
                str(nb),
                *common,
                "--report",
                "r.html",
                "--junit",
                "j.xml",
                "--json",
                "v.json",
            ],
            project,
            env=env,
        ),
        # a tracking server URL with credentials (down): the error names it, without them
        run_cli(
            ["run", str(nb), *common],
            project,
            env={
                **env,
                "MLFLOW_TRACKING_URI": f"http://lab:{URI_PASSWORD}@127.0.0.1:9/",
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
            },
        ),
    ]
    assert [log.returncode for log in logs] == [0, 0, 0], [log.stderr for log in logs]
    assert "not recorded" in logs[2].stderr and "127.0.0.1:9" in logs[2].stderr
    (project / "runner.log").write_text("".join(log.stdout + log.stderr for log in logs))

    hits, searched = _hits(project, skip={nb})
    assert hits == {}, hits
    # SQLite store, artifacts, locks, notebooks, kernel logs, every report, the runner's log
    assert {".db", ".json", ".ipynb", ".log", ".html", ".xml", ".txt"} <= searched, searched
    lock = json.loads((project / "nbs" / "canary.repro.json").read_text())
    assert lock["results"]["token_length"]["value"] == len(SECRET_PARAM)  # it reached the kernel
    assert "token" not in lock["parameters"]["values"]
    # the secret did reach the kernel, and the notebook that printed it shows a marker instead
    written = sorted(project.rglob("*.repro.json")) + sorted(project.rglob("canary.ipynb"))
    assert (project / "nbs" / "canary.repro.json").is_file()
    assert any("<secret token>" in p.read_text() for p in written if p != nb)
    assert (project / "mlflow.db").stat().st_size > 0 and (project / "j.xml").is_file()
    assert "reproduced" in (project / "v.json").read_text()


@pytest.mark.slow
def test_verify_announces_what_runs_and_never_executes_code_from_a_lock(project: Path) -> None:
    """A lock from someone else: its parameter values are data (injected as literals), a
    parameter the notebook does not declare is refused, and the plan is printed first."""
    nb = write_notebook(
        project / "theirs.ipynb",
        ["import reprokit\nreprokit.result('n', len(str(n)))"],
        parameters="n = 1",
    )
    assert run_cli(["record", str(nb), "--device", "cpu"], project).returncode == 0
    lock_path = project / "theirs.repro.json"
    lock = json.loads(lock_path.read_text())
    payload = "__import__('pathlib').Path('PWNED').write_text('x')"
    lock["parameters"]["values"] = {"n": payload}
    lock_path.write_text(json.dumps(lock))
    done = run_cli(["verify", str(nb), "--device", "cpu"], project)
    assert done.returncode == 1, done.stderr  # n's result differs: a string, not 1
    assert f"will run  {nb}  kernel python3  device cpu  (n={payload!r})" in done.stderr
    assert not (project / "PWNED").exists()

    lock["parameters"]["values"] = {"n": 1, "hidden": payload}
    lock_path.write_text(json.dumps(lock))
    refused = run_cli(["verify", str(nb), "--device", "cpu"], project)
    assert refused.returncode == 2 and "hidden not declared" in refused.stderr
    assert "will run" not in refused.stderr and not (project / "PWNED").exists()


P_TOKEN = "canary-plain-api-token-615"
P_DB_PASSWORD = "canary-p-db-password-284"
ERROR_DB_PASSWORD = "canary-error-db-password-839"
ERROR_HF = "hf_canaryERRORtokenABCDEFGHIJKLMNOP"
ERROR_CANARIES = [SECRET_PARAM, P_TOKEN, P_DB_PASSWORD, ERROR_DB_PASSWORD, ERROR_HF]


@pytest.mark.slow
def test_canaries_in_plain_parameters_and_error_messages_reach_nothing(project: Path) -> None:
    """``-p`` values that redaction changes, and a failing cell whose message holds the secret
    parameter, a database URL with its password and a token: none of them is written or
    printed, while the kernel still gets every real value."""
    parameters = "token = ''\napi_token = ''\ndb_url = ''\nn = 0"
    ok = write_notebook(
        project / "plain.ipynb",
        [
            "import reprokit\nreprokit.start(seed=0)\n"
            "reprokit.result('lengths', [len(token), len(api_token), len(db_url), n])"
        ],
        parameters=parameters,
    )
    failing = write_notebook(
        project / "failing.ipynb",
        [
            "import reprokit\nreprokit.start(seed=0)",
            # the canaries are built at run time: the notebook's own source does not hold them
            f"pw, hf = {ERROR_DB_PASSWORD[:9]!r} + {ERROR_DB_PASSWORD[9:]!r}, "
            f"{ERROR_HF[:9]!r} + {ERROR_HF[9:]!r}\n"
            "raise ValueError(f'cannot connect with {token} to postgres://u:{pw}@h/db using {hf}')",
        ],
        parameters=parameters,
    )
    env = {**os.environ, "token": SECRET_PARAM}
    plain = ["-p", f"api_token={P_TOKEN}", "-p", f"db_url=postgres://u:{P_DB_PASSWORD}@h/db"]
    common = ["--device", "cpu", "--secret-param", "token", *plain, "-p", "n=3"]
    logs = [
        run_cli(["record", str(ok), *common], project, env=env),
        run_cli(
            ["verify", str(ok), "--device", "cpu", "--secret-param", "token", *plain],
            project,
            env=env,
        ),
        run_cli(["run", str(failing), *common], project, env=env),
    ]
    assert [log.returncode for log in logs] == [0, 0, 3], [log.stderr for log in logs]
    assert "ValueError: cannot connect with <secret token> to postgres://" in logs[2].stderr
    output = "".join(log.stdout + log.stderr for log in logs)
    assert [c for c in ERROR_CANARIES if c in output] == []
    lock = json.loads((project / "plain.repro.json").read_text())
    length = len(f"postgres://u:{P_DB_PASSWORD}@h/db")
    assert lock["results"]["lengths"]["value"] == [len(SECRET_PARAM), len(P_TOKEN), length, 3]
    assert lock["parameters"]["values"]["api_token"] == "<redacted>"
    assert lock["parameters"]["values"]["db_url"] == "postgres://<redacted>@h/db"
    found = {}
    for path in project.rglob("*"):
        if path.is_file() and path not in (ok, failing):
            data = path.read_bytes()
            hits = [c for c in ERROR_CANARIES if c.encode() in data]
            if hits:
                found[str(path.relative_to(project))] = hits
    assert found == {}, found
    executed = next(project.rglob(".reprokit/runs/*/failing/failing.ipynb")).read_text()
    assert '"evalue": "cannot connect with <secret token> to postgres://<redacted>@h/db' in executed


def test_a_secret_parameter_reaches_a_text_notebook_that_names_no_kernel(project: Path) -> None:
    """A bare percent-format ``.py`` (no header, so no kernelspec or language): papermill's
    parameterisation, which the secret cell goes through, refused it with a traceback."""
    (project / "bare.py").write_text(
        "# %% tags=['parameters']\ntoken = ''\n\n"
        "# %%\nimport reprokit\nreprokit.result('token_length', len(token))\n"
    )
    args = ["--device", "cpu", "--no-record", "--output-dir", "out", "--secret-param", "token"]
    done = run_cli(
        ["run", "bare.py", *args],
        project,
        env={**os.environ, "token": SECRET_PARAM},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    executed = (project / "out" / "bare" / "bare.ipynb").read_text()
    assert SECRET_PARAM not in executed
    results = json.loads(next((project / "out" / "bare").glob("*/results.json")).read_text())
    assert results["token_length"]["value"] == len(SECRET_PARAM)  # it reached the kernel


def test_a_killed_runner_leaves_no_secret_in_the_partial_notebook(project: Path) -> None:
    """The notebook is saved while it runs (so a kill leaves one); each save is scrubbed as
    the runner's last one is: a SIGKILL before that last one used to leave the value there."""
    import signal
    import time

    from fault_helpers import WAIT_S, kill_quietly, start_cli, wait_for

    markers = project / "markers"
    markers.mkdir()
    write_notebook(
        project / "nbs" / "leaky.ipynb",
        [
            "print('a careless notebook prints its token:', token)",
            "import os, pathlib, time\n"
            "pathlib.Path(os.environ['MARKERS'], 'leaky').write_text(str(os.getpid()))\n"
            "time.sleep(300)",
        ],
        parameters="token = ''",
    )
    args = ["--device", "cpu", "--no-record", "--output-dir", "out", "--secret-param", "token"]
    runner = start_cli(
        ["run", "nbs", *args],
        project,
        env={**os.environ, "token": SECRET_PARAM, "MARKERS": str(markers)},
    )
    kernel = 0
    partial = project / "out" / "leaky" / "leaky.ipynb"
    try:
        wait_for((markers / "leaky").exists, "the kernel to start")
        kernel = int((markers / "leaky").read_text())
        deadline = time.monotonic() + WAIT_S
        while '"name": "stdout"' not in (partial.read_text() if partial.exists() else ""):
            assert time.monotonic() < deadline, "the printed cell was never saved"
            time.sleep(0.2)
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid, kernel])
    text = partial.read_text()
    assert SECRET_PARAM not in text
    assert "<secret token>" in text


@pytest.mark.slow
def test_parameters_with_token_or_key_inside_a_word_are_recorded_and_replayed(
    project: Path,
) -> None:
    """A stranger's report: ``max_tokens``, ``n_keys``, ``key_dim``, ``auth_mode`` and
    ``tokenizer`` were stored as ``<redacted>`` (a plain verify replayed that text: NOT
    REPRODUCED) and ``wordpiece`` was scrubbed from the result, so verifying with another
    tokenizer said REPRODUCED. Now they are kept verbatim, replayed, and compared."""
    nb = write_notebook(
        project / "params.ipynb",
        [
            "import reprokit\nreprokit.start(seed=0)\n"
            "reprokit.result('params', [max_tokens, n_keys, key_dim, auth_mode, tokenizer])"
        ],
        parameters="max_tokens = 0\nn_keys = 0\nkey_dim = 0\nauth_mode = ''\ntokenizer = ''",
    )
    given = ["max_tokens=128", "n_keys=3", "key_dim=8", "auth_mode=basic", "tokenizer=wordpiece"]
    flags = [arg for pair in given for arg in ("-p", pair)]
    record = run_cli(["record", str(nb), "--device", "cpu", *flags], project)
    assert record.returncode == 0, record.stderr
    lock = json.loads((project / "params.repro.json").read_text())
    expected = {"max_tokens": 128, "n_keys": 3, "key_dim": 8, "auth_mode": "basic"}
    assert lock["parameters"]["values"] == expected | {"tokenizer": "wordpiece"}
    assert lock["results"]["params"]["value"] == [128, 3, 8, "basic", "wordpiece"]
    plain = run_cli(["verify", str(nb), "--device", "cpu"], project)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    other = ["-p", "tokenizer=sentencepiece"]
    changed = run_cli(["verify", str(nb), "--device", "cpu", "--force", *other], project)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "NOT REPRODUCED" in changed.stdout


def test_a_secret_value_that_is_a_notebook_word_is_scrubbed_from_strings_only(
    project: Path,
) -> None:
    """A stranger's report: ``-p labels_key=cell_type`` (then a secret name) ended in
    ``AttributeError: cell_type`` with no lock: the value was replaced as raw text over the
    executed notebook's JSON, its ``"cell_type"`` keys too. A secret value that is a key
    (``cell_type``, ``outputs``) or a number (``1``) of the notebook's JSON now records, and is
    still scrubbed from what the notebook printed and declared."""
    import nbformat

    nb = write_notebook(
        project / "words.ipynb",
        [
            "import reprokit\nreprokit.start(seed=0)\n"
            "print('printed:', api_key, outputs_token, one_token)\n"
            "reprokit.result('echoed', f'{api_key}|{outputs_token}|{one_token}')\n"
            "reprokit.result('lengths', [len(api_key), len(outputs_token), len(one_token)])",
        ],
        parameters="api_key = ''\noutputs_token = ''\none_token = ''",
    )
    env = {**os.environ, "outputs_token": "outputs", "one_token": "1"}
    secrets = ["--secret-param", "outputs_token", "--secret-param", "one_token"]
    done = run_cli(
        ["record", str(nb), "--device", "cpu", "-p", "api_key=cell_type", *secrets],
        project,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lock = json.loads((project / "words.repro.json").read_text())
    assert lock["results"]["lengths"]["value"] == [len("cell_type"), len("outputs"), 1]
    echoed = lock["results"]["echoed"]["value"]
    assert echoed == "<secret api_key>|<secret outputs_token>|<secret one_token>"
    executed = next(project.rglob(".reprokit/runs/*/words/words.ipynb"))
    node = nbformat.read(executed, as_version=4)
    nbformat.validate(node)
    assert [cell.cell_type for cell in node.cells] == ["code"] * len(node.cells)
    printed = "".join(out.get("text", "") for cell in node.cells for out in cell.outputs)
    assert "printed: <secret api_key> <secret outputs_token> <secret one_token>" in printed


def test_scrubbing_a_notebook_keeps_its_structure_and_finds_a_value_split_over_lines() -> None:
    import nbformat

    from reprokit.runner._scrub import scrub_notebook_text

    node = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(key)", execution_count=1)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="stdout cell_type 1\n"),
        nbformat.v4.new_output("stream", name="stderr", text="outputs and secret\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "a\n-----BEGIN\nEND----- b"}),
    ]
    node.cells = [cell]
    text = nbformat.writes(node)
    secrets = {"a": "cell_type", "b": "1", "c": "stdout", "pem": "-----BEGIN\nEND-----"}
    scrubbed = nbformat.reads(scrub_notebook_text(text, secrets), as_version=4)
    nbformat.validate(scrubbed)
    out, _, shown = scrubbed.cells[0].outputs
    assert (out.output_type, out.name, out.text) == (
        "stream",
        "stdout",
        "<secret c> <secret a> <secret b>\n",
    )
    assert shown.data["text/plain"] == "a\n<secret pem> b"
    assert scrubbed.cells[0].execution_count == 1
    assert scrub_notebook_text(text, {"x": "absent"}) is text  # not parsed: the common case
    once = scrub_notebook_text(text, {"outputs_token": "outputs", "t": "secret"})
    assert '"outputs": [' in once  # a key, kept
    assert scrub_notebook_text(once, {"outputs_token": "outputs", "t": "secret"}) == once
    assert scrub_notebook_text("not json cell_type", secrets) == "not json <secret a>"


def test_scrubbing_finds_a_secret_as_a_key_or_escaped_twice_and_keeps_lists_apart() -> None:
    """A secret shown as a key (``display(JSON({token: 1}))``) or printed inside a
    ``json.dumps`` (escaped twice in the file) is replaced; a list of plain strings
    (``['1.4', '2.0', '3']``) is scrubbed item by item, never joined into one; a secret-named
    ``-p`` value of four characters or more (a number too) is scrubbed (a security review)."""
    import json

    import nbformat

    from reprokit.runner._scrub import scrub_notebook_text
    from reprokit.runner.execute import _scrubbed

    node = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()", execution_count=1)
    quoted = 'Hunter"2\\Zebra'
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"application/json": {quoted: 1}}),
        nbformat.v4.new_output("stream", name="stdout", text=json.dumps({"t": 'Zeb"ra'}) + "\n"),
        nbformat.v4.new_output("display_data", data={"application/json": ["1.4", "2.0", "3"]}),
    ]
    node.cells = [cell]
    text = nbformat.writes(node)
    secrets = {"token": quoted, "t": 'Zeb"ra', "pin": "42"}
    scrubbed = nbformat.reads(scrub_notebook_text(text, secrets), as_version=4)
    keyed, printed, listed = scrubbed.cells[0].outputs
    assert keyed.data["application/json"] == {"<secret token>": 1}
    assert printed.text == '{"t": "<secret t>"}\n'
    assert listed.data["application/json"] == ["1.4", "2.0", "3"]
    hidden = {"db_password": "hunter2", "api_token": 918273645546, "pin": "42"}
    assert _scrubbed({}, hidden) == {"db_password": "hunter2", "api_token": "918273645546"}


def test_a_secret_printed_in_pieces_is_scrubbed_from_the_streams_joined() -> None:
    """``print(t[:6], end="", flush=True); print(t[6:])`` and a secret written a character at a
    time reach the notebook as several outputs of one stream, none holding the value: a cell's
    consecutive outputs of one stream are joined (as Jupyter shows them, as the lock joins them)
    before the scrub, and the check that skips a notebook holding no value does not skip these
    (an outside tester's report: the lock, ``verify --outputs`` and the reports showed it)."""
    import json

    import nbformat

    from reprokit.runner._scrub import scrub_notebook_text

    secret = "CANARYsplitSecret42"
    node = nbformat.v4.new_notebook()
    halves = nbformat.v4.new_code_cell("print(token)", execution_count=1)
    halves.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="tok: CANARY"),
        nbformat.v4.new_output("stream", name="stdout", text=["splitSecret42\n", "more\n"]),
        nbformat.v4.new_output("stream", name="stderr", text="warned\n"),
        nbformat.v4.new_output("stream", name="stdout", text="after\n"),
    ]
    chars = nbformat.v4.new_code_cell("write(token)", execution_count=2)
    chars.outputs = [nbformat.v4.new_output("stream", name="stderr", text=c) for c in secret]
    node.cells = [halves, chars]
    text = nbformat.writes(node)
    assert secret not in text
    scrubbed = nbformat.reads(scrub_notebook_text(text, {"token": secret}), as_version=4)
    nbformat.validate(scrubbed)
    first, second = ([(o.name, o.text) for o in cell.outputs] for cell in scrubbed.cells)
    assert first == [
        ("stdout", "tok: <secret token>\nmore\n"),
        ("stderr", "warned\n"),
        ("stdout", "after\n"),
    ]
    assert second == [("stderr", "<secret token>")]
    # keys in another order than nbformat's: the streams' names are not known, so it is parsed
    data = json.loads(text)
    for cell in data["cells"]:
        cell["outputs"] = [dict(sorted(o.items(), reverse=True)) for o in cell["outputs"]]
    unordered = json.dumps(data, indent=1)
    assert '"name": "stderr",' not in unordered and secret not in unordered
    assert "<secret token>" in scrub_notebook_text(unordered, {"token": secret})
    one_each = nbformat.v4.new_notebook()
    one_each.cells = [nbformat.v4.new_code_cell("print(1)")]
    one_each.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="tok: CANARY"),
        nbformat.v4.new_output("stream", name="stderr", text="splitSecret42\n"),
    ]
    shown = nbformat.writes(one_each)
    assert scrub_notebook_text(shown, {"token": secret}) is shown  # two streams: not parsed


def test_a_secret_named_key_inside_a_parameter_reaches_no_param_and_no_output() -> None:
    """``-p 'config={"password": "…", "db": "x"}'``: the lock already kept the password as
    ``<redacted>``, but MLflow's params wrote the value as Python text (``str``), where no
    pattern finds ``'password': '…'``, and the executed notebook kept it where the notebook
    printed ``config`` (only the whole value's JSON was scrubbed) — an outside tester's
    report. Now each hidden part is scrubbed on its own, and params are redacted first."""
    import nbformat

    from reprokit.api.session import _initial_params
    from reprokit.capturing.redact import hidden_parts
    from reprokit.recording.executed import _params
    from reprokit.runner._scrub import scrub_notebook_text
    from reprokit.runner.execute import _scrubbed

    canary = "CANARYnested1"
    config = {"password": canary, "db": "x", "hosts": ["h1", {"api_key": 918273645546}]}
    assert hidden_parts("config", config) == {
        "config": config,
        "config.password": canary,
        "config.hosts[1].api_key": 918273645546,
    }
    assert hidden_parts("plain", {"db": "x", "n": [1, 2]}) == {}
    assert hidden_parts("creds", {"user": "bob", "pw": ["abcd"]}) == {
        "creds": {"user": "bob", "pw": ["abcd"]},
        "creds.user": "bob",
        "creds.pw[0]": "abcd",
    }
    for params in (_params("cpu", {"config": config}), _initial_params({"config": config})):
        assert canary not in str(params) and "918273645546" not in str(params)
        assert "'db': 'x'" in params["config"]  # what is not secret stays readable
    scrubbed = _scrubbed({}, {"config": config})
    assert scrubbed["config.password"] == canary
    node = nbformat.v4.new_notebook()
    node.cells = [nbformat.v4.new_code_cell("print(config)")]
    node.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{config}\n")]
    text = scrub_notebook_text(nbformat.writes(node), scrubbed)
    assert canary not in text and "918273645546" not in text
    assert "'password': '<secret config.password>', 'db': 'x'" in text
