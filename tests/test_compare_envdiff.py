"""diff_snapshots: every kind of environment change, with a hint, most relevant first."""

from __future__ import annotations

from dataclasses import replace

from reprokit._serde import from_json, to_json
from reprokit.capturing.model import (
    AcceleratorInfo,
    ExtensionInfo,
    GitInfo,
    GpuDevice,
    NumericsFlags,
    PlatformInfo,
    PythonInfo,
    SeedRecord,
    Snapshot,
    ThreadPool,
)
from reprokit.compare.envdiff import CATEGORIES, EnvChange, EnvDiff, diff_snapshots

OPENBLAS = ThreadPool("blas", "openblas", "0.3.27", 8, "/x/libopenblas.so", "pthreads", "Zen")
GPU = GpuDevice(0, "NVIDIA A100-SXM4-80GB", "8.0", 108, 80 * 2**30, "GPU-1")


def snapshot() -> Snapshot:
    return Snapshot(
        schema_version=1,
        reprokit_version="0.1.0",
        captured_at="2024-05-01T12:00:00Z",
        python=PythonInfo("3.11.7", "CPython", "/usr/bin/python3", "/venv", True),
        platform=PlatformInfo(
            "Linux", "6.1.0-18-amd64", "#1 SMP", "x86_64", "Debian 12", "AMD EPYC", 16, 2**36
        ),
        packages={"numpy": "2.1.0", "requests": "2.32.0", "tqdm": "4.66.0"},
        imported={"numpy": "2.1.0", "tqdm": "4.66.0"},
        threadpools=(OPENBLAS,),
        environment={"OMP_NUM_THREADS": "8", "LANG": "C.UTF-8"},
        git=GitInfo(True, commit="a" * 40, branch="main", root="/repo"),
        accelerator=AcceleratorInfo(
            True,
            source="torch+nvml",
            torch_version="2.4.0",
            cuda_runtime="12.4",
            cudnn_version="90100",
            driver_version="550.54",
            devices=(GPU,),
            flags=NumericsFlags(
                deterministic_algorithms=True,
                cudnn_deterministic=True,
                cudnn_benchmark=False,
                cuda_matmul_allow_tf32=False,
                cudnn_allow_tf32=True,
                float32_matmul_precision="highest",
            ),
        ),
        seeds=SeedRecord(0, True, ("random", "numpy", "torch")),
    )


def one(diff: EnvDiff, key: str) -> EnvChange:
    matches = [c for c in diff.changes if c.key == key]
    assert len(matches) == 1, diff.changes
    return matches[0]


def test_identical_snapshots_have_an_empty_diff() -> None:
    diff = diff_snapshots(snapshot(), snapshot())
    assert diff.is_empty
    assert diff == EnvDiff()


def test_capture_time_and_paths_are_not_differences() -> None:
    ref = snapshot()
    cur = replace(
        ref,
        captured_at="2025-01-01T00:00:00Z",
        reprokit_version="0.2.0",
        python=replace(ref.python, executable="/other/python", prefix="/other"),
    )
    assert diff_snapshots(ref, cur).is_empty


def test_packages_added_removed_and_changed_with_versions() -> None:
    ref = snapshot()
    cur = replace(ref, packages={"numpy": "2.2.0", "requests": "2.32.0", "scipy": "1.14.0"})
    diff = diff_snapshots(ref, cur)
    numpy = one(diff, "numpy")
    assert (numpy.change, numpy.reference, numpy.current) == ("changed", "2.1.0", "2.2.0")
    assert numpy.category == "packages" and numpy.importance == 2
    assert one(diff, "scipy").change == "added"
    tqdm = one(diff, "tqdm")
    assert (tqdm.change, tqdm.current, tqdm.importance) == ("removed", None, 3)  # imported
    assert diff.in_category("packages") == tuple(
        c for c in diff.changes if c.category == "packages"
    )


def test_tf32_switch_comes_first_with_its_precision_hint() -> None:
    ref = snapshot()
    flags = replace(ref.accelerator.flags or NumericsFlags(), cuda_matmul_allow_tf32=True)
    cur = replace(
        ref,
        packages={**ref.packages, "requests": "2.33.0"},
        accelerator=replace(ref.accelerator, flags=flags),
    )
    diff = diff_snapshots(ref, cur)
    first = diff.changes[0]
    assert (first.key, first.category, first.importance) == (
        "cuda_matmul_allow_tf32",
        "numerics",
        0,
    )
    assert (first.reference, first.current) == ("False", "True")
    assert "1e-3" in first.hint
    assert diff.changes[-1].key == "requests"


def test_gpu_driver_cuda_cudnn_and_sm_count() -> None:
    ref = snapshot()
    h100 = GpuDevice(0, "NVIDIA H100 80GB HBM3", "9.0", 132, 80 * 2**30, "GPU-2")
    cur = replace(
        ref,
        accelerator=replace(
            ref.accelerator,
            devices=(h100,),
            driver_version="560.28",
            cuda_runtime="12.6",
            cudnn_version="90300",
            torch_version="2.5.0",
        ),
    )
    diff = diff_snapshots(ref, cur)
    assert one(diff, "GPU 0 name").current == "NVIDIA H100 80GB HBM3"
    assert (one(diff, "GPU 0 SM count").reference, one(diff, "GPU 0 SM count").current) == (
        "108",
        "132",
    )
    for key in ("driver", "CUDA runtime", "cuDNN", "torch", "GPU 0 compute capability"):
        assert one(diff, key).category == "accelerator"
    assert all(c.hint for c in diff.changes)


def test_cpu_against_gpu_is_a_top_change() -> None:
    ref = snapshot()
    cur = replace(ref, accelerator=AcceleratorInfo(False, reason="no CUDA device"))
    diff = diff_snapshots(ref, cur)
    device = one(diff, "CUDA device")
    assert (device.reference, device.current, device.importance) == ("available", "none", 0)
    assert one(diff, "GPU count").current == "0"
    unknown = one(diff, "cuda_matmul_allow_tf32")  # unknown without torch: ranked lower
    assert (unknown.current, unknown.importance) == (None, 3)
    assert "not recorded" in unknown.hint


def test_seed_changes() -> None:
    ref = snapshot()
    seeds = ref.seeds or SeedRecord(0, True, ())
    diff = diff_snapshots(ref, replace(ref, seeds=replace(seeds, seed=1, deterministic=False)))
    assert (one(diff, "seed").reference, one(diff, "seed").current) == ("0", "1")
    assert one(diff, "deterministic").category == "seeds"
    unseeded = diff_snapshots(ref, replace(ref, seeds=None))
    assert one(unseeded, "seeding").change == "removed"


def test_blas_threads_and_libraries() -> None:
    ref = snapshot()
    mkl = ThreadPool("blas", "mkl", "2024.0", 4, "/x/libmkl_rt.so", "intel", None)
    cur = replace(ref, threadpools=(replace(OPENBLAS, num_threads=2, architecture="Haswell"), mkl))
    diff = diff_snapshots(ref, cur)
    threads = one(diff, "blas:openblas threads")
    assert (threads.reference, threads.current, threads.category) == ("8", "2", "blas")
    assert one(diff, "blas:openblas kernel").current == "Haswell"
    assert one(diff, "blas:mkl").change == "added"


def test_allow_listed_environment_variables() -> None:
    ref = snapshot()
    cur = replace(ref, environment={"OMP_NUM_THREADS": "1", "NVIDIA_TF32_OVERRIDE": "0"})
    diff = diff_snapshots(ref, cur)
    assert one(diff, "OMP_NUM_THREADS").importance == 2
    assert one(diff, "NVIDIA_TF32_OVERRIDE").importance == 0
    assert one(diff, "LANG").change == "removed"


def test_git_commit_and_dirty_flag() -> None:
    ref = snapshot()
    cur = replace(ref, git=replace(ref.git, commit="b" * 40, dirty=True, diff_digest="blake3:1"))
    diff = diff_snapshots(ref, cur)
    assert one(diff, "commit").current == "b" * 40
    assert (one(diff, "dirty").reference, one(diff, "dirty").current) == ("False", "True")
    outside = diff_snapshots(ref, replace(ref, git=GitInfo(False, reason="not a git repository")))
    assert one(outside, "repository").change == "removed"


def test_another_commit_with_the_same_source_is_a_note_not_a_change() -> None:
    """A lock never holds the commit that adds it: with the notebook's source as recorded,
    another commit is shown, not counted, and does not say "the code changed"; unknown
    source (the default) still counts it, and a dirty worktree counts as ever."""
    ref = snapshot()
    cur = replace(ref, git=replace(ref.git, commit="b" * 40))
    assert one(diff_snapshots(ref, cur), "commit").hint.startswith("the code changed")
    same = diff_snapshots(ref, cur, same_source=True)
    assert same.is_empty
    (note,) = same.notes
    assert (note.key, note.reference, note.current) == ("commit", "a" * 40, "b" * 40)
    assert note.hint.startswith("not counted") and "the code changed" not in note.hint
    dirty = diff_snapshots(ref, replace(cur, git=replace(cur.git, dirty=True)), same_source=True)
    assert one(dirty, "dirty").current == "True" and len(dirty.notes) == 1


def test_python_and_platform() -> None:
    ref = snapshot()
    cur = replace(
        ref,
        python=replace(ref.python, version="3.12.1"),
        platform=replace(ref.platform, cpu_model="Intel Xeon", logical_cores=8, release="6.8.0"),
    )
    diff = diff_snapshots(ref, cur)
    assert one(diff, "python version").current == "3.12.1"
    assert one(diff, "CPU model").importance < one(diff, "kernel").importance
    assert one(diff, "logical cores").category == "platform"


def test_changes_are_sorted_by_importance_then_category() -> None:
    ref = snapshot()
    cur = replace(
        ref,
        packages={"numpy": "2.2.0"},
        environment={},
        python=replace(ref.python, version="3.12.1"),
        seeds=None,
        git=replace(ref.git, branch="dev"),
    )
    changes = diff_snapshots(ref, cur).changes
    order = {name: i for i, name in enumerate(CATEGORIES)}
    keys = [(c.importance, order[c.category], c.key) for c in changes]
    assert keys == sorted(keys)
    assert changes[0].category == "seeds"
    assert diff_snapshots(ref, cur).numerics_relevant[-1].importance <= 2


def test_snapshots_read_back_from_json_diff_the_same() -> None:
    ref = snapshot()
    cur = replace(ref, packages={**ref.packages, "numpy": "2.2.0"})
    again = from_json(to_json(cur), Snapshot)
    assert diff_snapshots(ref, again) == diff_snapshots(ref, cur)


def test_plugin_facts_are_diffed_by_flat_key_path() -> None:
    jax = ExtensionInfo(True, data={"version": "0.4.30", "config": {"x64": False}})
    ref = replace(snapshot(), extensions={"jax": jax, "lab": ExtensionInfo(True, data="A")})
    cur = replace(
        ref,
        extensions={
            "jax": ExtensionInfo(True, data={"version": "0.5.0", "config": {"x64": True}}),
            "lab": ExtensionInfo(False, reason="collector raised OSError: offline"),
        },
    )
    diff = diff_snapshots(ref, cur)
    changes = {c.key: c for c in diff.in_category("extensions")}
    assert set(changes) == {"jax.version", "jax.config.x64", "lab"}
    version = changes["jax.version"]
    assert (version.reference, version.current, version.change) == ("0.4.30", "0.5.0", "changed")
    assert "'jax'" in version.hint and version.importance == 2
    assert version in diff.numerics_relevant  # shown beside a failed result
    assert (changes["jax.config.x64"].reference, changes["jax.config.x64"].current) == (
        "false",
        "true",
    )
    assert changes["lab"].current == "unavailable (collector raised OSError: offline)"


def test_a_plugin_present_on_one_side_only_is_added_or_removed() -> None:
    ref = snapshot()  # e.g. a lock written before the plugin was installed
    cur = replace(ref, extensions={"lab": ExtensionInfo(True, data={"serial": "DS-1"})})
    added = one(diff_snapshots(ref, cur), "lab.serial")
    assert (added.category, added.change, added.reference, added.current) == (
        "extensions",
        "added",
        None,
        "DS-1",
    )
    assert one(diff_snapshots(cur, ref), "lab.serial").change == "removed"
    assert diff_snapshots(cur, cur).is_empty


def test_another_branch_name_is_a_note_never_a_change() -> None:
    """A CI checkout's detached HEAD or a review branch made ``reprokit diff LOCK`` say DIFFERS
    (exit 1) for a branch name its own hint says does not matter."""
    ref = snapshot()
    for branch in ("review", None):  # another name; detached HEAD
        found = diff_snapshots(ref, replace(ref, git=replace(ref.git, branch=branch)))
        assert found.is_empty and [n.key for n in found.notes] == ["branch"]
        same = diff_snapshots(
            ref, replace(ref, git=replace(ref.git, branch=branch)), same_source=True
        )
        assert same.is_empty and [n.key for n in same.notes] == ["branch"]
