"""The masks of ``verify --outputs`` that need context: a real change is compared, what a
timing tool, a temporary folder or another machine changes is masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprokit.compare.outputs import compare_outputs
from reprokit.notebook.text import mask_volatile


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("train/test split 80:20", "train/test split 70:30"),
        ("train/val/test split 60:20:20", "train/val/test split 70:15:15"),
        ("final score 3:1", "final score 2:1"),
        ("forecast horizon: 3 days", "forecast horizon: 5 days"),
        ("timeout=30s", "timeout=60s"),
        ("window 12 h, step 15 min", "window 24 h, step 15 min"),
        ("reading /tmp/data/train.csv", "reading /tmp/data/test.csv"),
        ("wrote /tmp/tmpab12cd34/train.csv", "wrote /tmp/tmpxy98zw76/test.csv"),
        (
            "/usr/lib/python3/dist-packages/sklearn/base.py:12: UserWarning: x",
            "/usr/lib/python3/dist-packages/numpy/base.py:12: UserWarning: x",
        ),
    ],
)
def test_a_real_change_is_compared(reference: str, current: str) -> None:
    assert compare_outputs(reference, current).status == "differs"


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        # logging's asctime, datetime.now(), time.ctime()
        ("2024-05-01 12:03:04,123 INFO start", "2025-11-30 23:59:58,999 INFO start"),
        ("now: 2024-05-01 12:03:04.123456", "now: 2024-05-02 08:00:00.000001"),
        ("Wed May  1 12:03:04 2024", "Thu Dec 12 08:30:00 2024"),
        ("started at 12:03", "started at 14:55"),
        ("12:03 pm", "1:15 pm"),
        ("<DATE> 12:03 UTC", "<DATE> 09:41 UTC"),
        # tqdm, with and without a total
        (
            " 45%|████▌     | 45/100 [00:03<00:10, 3.2it/s]",
            " 45%|████▌     | 45/100 [00:05<00:14, 2.9it/s]",
        ),
        ("45it [00:03, 12.3it/s]", "45it [01:13, 0.6it/s]"),
        # %%time, %timeit, Keras, sklearn's verbose lines, "took"
        (
            "CPU times: user 1.23 s, sys: 12 ms, total: 1.24 s\nWall time: 1.5 s",
            "CPU times: user 2 µs, sys: 0 ns, total: 2 µs\nWall time: 1min 3s",
        ),
        (
            "1.23 ms ± 45.6 µs per loop (mean ± std. dev. of 7 runs, 1000 loops each)",
            "2.5 ms ± 1.2 ms per loop (mean ± std. dev. of 7 runs, 1000 loops each)",
        ),
        ("10/10 [======] - ETA: 0:00:03 - loss: 0.3", "10/10 [======] - ETA: 0:01:10 - loss: 0.3"),
        ("Epoch 1 - ETA: 1:05", "Epoch 1 - ETA: 0:07"),
        ("10/10 [====] - 1s 5ms/step - loss: 0.3", "10/10 [====] - 2s 9ms/step - loss: 0.3"),
        ("10/10 ━━━━━━━━━━ 1s 5ms/step - loss: 0.3", "10/10 ━━━━━━━━━━ 0s 3ms/step - loss: 0.3"),
        ("10/10 - 0s - loss: 0.3", "10/10 - 3s - loss: 0.3"),
        (
            "[Parallel(n_jobs=4)]: Done 10 | elapsed:    0.5s",
            "[Parallel(n_jobs=4)]: Done 10 | elapsed:    1.7s",
        ),
        ("[CV] END ....C=1; total time=   0.0s", "[CV] END ....C=1; total time=   0.2s"),
        ("fit took 3.4s", "fit took 12.0s"),
        ("finished at 2024-05-01T12:00:00 in 1.2s", "finished at 2024-05-01T12:00:09 in 3.4s"),
        ("elapsed 0:00:01", "elapsed 0:00:07"),
    ],
)
def test_what_a_timing_tool_prints_is_masked(reference: str, current: str) -> None:
    assert compare_outputs(reference, current).status == "reproduced"


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ("saved /tmp/tmpab12cd34/model.pt", "saved /tmp/tmpq_9z8y7x/model.pt"),
        ("wrote /tmp/tmpab12cd34.csv", "wrote /tmp/tmpzz00yy11.csv"),
        ("run in /tmp/reprokit-run-k3j4h5g6/x", "run in /tmp/reprokit-run-a1b2c3d4/x"),
        (
            "/tmp/pytest-of-alice/pytest-3/test_a0/out.csv",
            "/tmp/pytest-of-bob/pytest-12/test_a0/out.csv",
        ),
        (
            "/tmp/ipykernel_1234/3456789012.py:3: UserWarning: careful",
            "/tmp/ipykernel_98765/3456789012.py:3: UserWarning: careful",
        ),
        (
            "/var/folders/xy/ab12cd_34/T/tmpab12cd34/m.pt",
            "/var/folders/q1/zz99yy_88/T/tmpq1w2e3r4/m.pt",
        ),
        (
            r"C:\Users\alice\AppData\Local\Temp\tmpab12cd34\m.pt",
            r"C:\Users\bob\AppData\Local\Temp\tmpzz00yy11\m.pt",
        ),
    ],
)
def test_only_the_random_part_of_a_temporary_path_is_masked(reference: str, current: str) -> None:
    assert compare_outputs(reference, current).status == "reproduced"


def test_the_rest_of_a_temporary_path_is_kept() -> None:
    assert mask_volatile("/tmp/tmpab12cd34/out.csv") == "/tmp/<TMP>/out.csv"
    assert mask_volatile("/tmp/pytest-of-a/pytest-3/t0/x") == "/tmp/<TMP>/t0/x"
    assert mask_volatile("/tmp/data/train.csv") == "/tmp/data/train.csv"


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (
            "/home/runner/work/p/p/.venv/lib/python3.11/site-packages/sklearn/linear_model/"
            "_logistic.py:469: ConvergenceWarning: lbfgs failed to converge",
            "/Users/alice/miniconda3/lib/python3.12/site-packages/sklearn/linear_model/"
            "_logistic.py:473: ConvergenceWarning: lbfgs failed to converge",
        ),
        (
            "pip 24.0 from /home/runner/.venv/lib/python3.11/site-packages/pip (python 3.11)",
            "pip 24.0 from /usr/lib/python3/dist-packages/pip (python 3.11)",
        ),
        (
            '  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode',
            '  File "/opt/conda/lib/python3.11/json/decoder.py", line 340, in decode',
        ),
        (
            r"C:\Users\a\miniconda3\Lib\site-packages\sklearn\base.py:3: UserWarning: x",
            r"D:\envs\x\Lib\site-packages\sklearn\base.py:5: UserWarning: x",
        ),
    ],
)
def test_where_a_machine_keeps_its_libraries_is_masked(reference: str, current: str) -> None:
    assert compare_outputs(reference, current).status == "reproduced"


def test_a_library_path_keeps_the_package_path_and_masks_line_numbers() -> None:
    masked = mask_volatile("/u/.venv/lib/python3.11/site-packages/sklearn/base.py:12: W")
    assert masked == "<SITE_PACKAGES>/sklearn/base.py:<LINE>: W"
    assert mask_volatile("/usr/lib/python3.11/json/x.py:3: W") == "<STDLIB>/json/x.py:<LINE>: W"
    assert mask_volatile("notebooks/helpers.py:12: W") == "notebooks/helpers.py:12: W"


def test_the_project_root_is_masked_when_given() -> None:
    text = "Saved figure to /home/runner/work/p/p/figs/fig3.png, not /home/runner/work/p/p2/x"
    masked = mask_volatile(text, "/home/runner/work/p/p")
    assert masked == "Saved figure to <PROJECT>/figs/fig3.png, not /home/runner/work/p/p2/x"
    assert mask_volatile(masked) == masked
    assert mask_volatile(text) == text


def test_a_clone_elsewhere_reproduces_its_saved_paths(tmp_path: Path) -> None:
    from lock_helpers import executed, make_project

    from reprokit.compare.verify import verify_results
    from reprokit.options import ComparisonOptions
    from reprokit.recording.lock import build_lock
    from reprokit.results import encode_result, read_notebook

    results = [encode_result("acc", 0.5)]
    here, there = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    recorded = executed(here, results, stdout=f"Saved figure to {here.root}/figs/fig3.png\n")
    lock = build_lock(here.notebook, recorded, project_root=here.root, device="cpu")
    node = executed(there, results, stdout=f"Saved figure to {there.root}/figs/fig3.png\n")
    options = ComparisonOptions(outputs=True)

    def verdict(root: Path | None, node: object = node) -> bool:
        done = verify_results(
            lock, read_notebook(node), comparison=options, executed_notebook=node, project_root=root
        )
        return done.reproduced

    assert verdict(there.root)
    assert not verdict(None)  # the root not known: the paths differ
    moved = executed(there, results, stdout=f"Saved figure to {there.root}/figs/fig4.png\n")
    assert not verdict(there.root, moved)
