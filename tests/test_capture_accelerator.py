"""Accelerator facts: the no-GPU paths for real (CPU torch, no NVML library), the CUDA path
on a GPU machine, and CUDA_VISIBLE_DEVICES parsing."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from reprokit.capturing import accelerator
from reprokit.capturing.accelerator import collect_accelerator
from reprokit.capturing.model import GpuDevice

WITHOUT_TORCH = """
import json, sys
from reprokit.capturing.accelerator import collect_accelerator
info = collect_accelerator()
print(json.dumps({"available": info.available, "reason": info.reason, "source": info.source,
                  "flags": info.flags, "torch_imported": "torch" in sys.modules}))
"""


def test_without_torch_imported_torch_is_not_imported_and_the_reason_says_so() -> None:
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH], capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout)
    assert report["torch_imported"] is False
    assert report["flags"] is None
    if not report["available"]:
        assert report["reason"].startswith("torch not imported; NVML: ")
        assert report["source"] in ("none", "nvml")


@pytest.fixture
def torch_flags() -> Iterator[object]:
    """Real (CPU) torch, with its numerics switches restored afterwards."""
    torch = pytest.importorskip("torch")
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.get_float32_matmul_precision(),
    )
    yield torch
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def test_imported_torch_is_described_with_its_numerics_flags(
    torch_flags: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    info = collect_accelerator()
    assert info.torch_version == str(torch.__version__)
    assert info.cuda_runtime == torch.version.cuda
    assert info.flags is not None
    assert info.flags.cudnn_benchmark is True
    assert info.flags.float32_matmul_precision == "high"
    assert info.flags.deterministic_algorithms == torch.are_deterministic_algorithms_enabled()
    assert info.flags.cublas_workspace_config == ":16:8"
    assert info.source.startswith("torch")
    if torch.version.cuda is None and not info.available:
        assert info.reason is not None
        assert f"torch {torch.__version__} built without CUDA; NVML: " in info.reason
    assert not torch.cuda.is_initialized()  # type: ignore[no-untyped-call]  # capture never initialises CUDA itself


def test_nvml_absence_is_a_reason_not_an_error() -> None:
    facts = accelerator._nvml_facts()
    if facts.ok:
        pytest.skip("NVML works here")
    assert facts.error
    assert facts.devices == ()


GPUS = (
    GpuDevice(index=0, name="A", uuid="GPU-aaaa-1111"),
    GpuDevice(index=1, name="B", uuid="GPU-bbbb-2222"),
    GpuDevice(index=2, name="C", uuid="GPU-bbbc-3333"),
)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (None, ["A", "B", "C"]),
        ("", []),
        ("  ", []),
        ("2,0", ["C", "A"]),
        ("1,x,2", ["B"]),  # an invalid entry ends the list
        ("0,0", []),  # a repeated entry empties it
        ("5", []),
        ("-1", []),
        ("1gpu,2", ["B", "C"]),  # strtoul: leading digits count
        ("GPU-bbbb", ["B"]),
        ("GPU-bbb", []),  # ambiguous prefix
        ("GPU-aaaa-1111,GPU-bbbc", ["A", "C"]),
        ("MIG-1234", ["A", "B", "C"]),
    ],
)
def test_cuda_visible_devices_is_read_like_cuda(spec: str | None, names: list[str]) -> None:
    visible = accelerator._visible(GPUS, spec)
    assert [d.name for d in visible] == names
    assert [d.index for d in visible] == list(range(len(names)))


@pytest.mark.parametrize(("number", "text"), [(90100, "9.1.0"), (8907, "8.9.7"), (90501, "9.5.1")])
def test_cudnn_version_numbers_are_spelled_out(number: int, text: str) -> None:
    class FakeCudnn:
        @staticmethod
        def version() -> int:
            return number

    class FakeBackends:
        cudnn = FakeCudnn

    class FakeTorch:
        backends = FakeBackends

    assert accelerator._cudnn_version(FakeTorch) == text  # type: ignore[arg-type]


def _torch_with_cuda(initialised: bool, asked: list[str]) -> object:
    """A torch built for CUDA 13.0 whose cuDNN reading initialises CUDA, as torch 2.11's does."""

    def cudnn_version() -> int:
        asked.append("cudnn.version")
        return 91300

    cuda = SimpleNamespace(
        is_initialized=lambda: initialised,
        device_count=lambda: asked.append("device_count") or 0,
    )
    backends = SimpleNamespace(
        cudnn=SimpleNamespace(version=cudnn_version, deterministic=False, benchmark=False)
    )
    return SimpleNamespace(
        __version__="2.11.0",
        version=SimpleNamespace(cuda="13.0"),
        cuda=cuda,
        backends=backends,
        are_deterministic_algorithms_enabled=lambda: False,
        is_deterministic_algorithms_warn_only_enabled=lambda: False,
    )


@pytest.mark.parametrize("wheel", ["9.13.0.50", None])
def test_cudnn_is_read_from_its_wheel_until_the_notebook_initialised_cuda(
    monkeypatch: pytest.MonkeyPatch, wheel: str | None
) -> None:
    def installed(name: str) -> str:
        if wheel is None or name != "nvidia-cudnn-cu13":
            raise importlib.metadata.PackageNotFoundError(name)
        return wheel

    monkeypatch.setattr(importlib.metadata, "version", installed)
    asked: list[str] = []
    fresh = accelerator._torch_facts(_torch_with_cuda(False, asked), nvml_ok=True)  # type: ignore[arg-type]
    assert asked == []  # neither cuDNN nor the devices were asked of torch: CUDA stays as it was
    assert fresh.cudnn_version == ("9.13.0" if wheel else None)
    assert fresh.devices == ()
    started = accelerator._torch_facts(_torch_with_cuda(True, asked), nvml_ok=True)  # type: ignore[arg-type]
    assert started.cudnn_version == "9.13.0"  # torch's own reading, once CUDA is up
    assert asked == ["cudnn.version", "device_count"]


def test_nvml_describes_the_devices_and_torch_fills_in_an_sm_count_it_lacks() -> None:
    nvml = (
        GpuDevice(index=0, name="H200", sm_count=132, memory_bytes=150754820096, uuid="GPU-a"),
        GpuDevice(index=1, name="Next", sm_count=None, memory_bytes=10, uuid="GPU-b"),
    )
    from_torch = (  # what CUDA may allocate, not the card's memory
        GpuDevice(index=0, name="H200", sm_count=132, memory_bytes=150109880320, uuid="GPU-a"),
        GpuDevice(index=1, name="Next", sm_count=200, memory_bytes=9, uuid="GPU-b"),
    )
    completed = accelerator._completed(nvml, from_torch)
    assert [d.memory_bytes for d in completed] == [150754820096, 10]
    assert [d.sm_count for d in completed] == [132, 200]
    assert accelerator._completed(nvml, ()) == nvml


@pytest.mark.gpu
def test_cuda_devices_and_flags_on_a_gpu(torch_flags: object) -> None:
    import torch

    torch.backends.cudnn.benchmark = True
    before = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]  # (another test may have)
    info = collect_accelerator()
    assert torch.cuda.is_initialized() == before  # type: ignore[no-untyped-call]
    if not before:  # the version of the cuDNN wheel (torch's reading would initialise CUDA)
        assert info.cudnn_version == accelerator._cudnn_wheel_version(str(torch.version.cuda))
    assert info.available and info.reason is None
    assert info.devices
    assert info.cuda_runtime == torch.version.cuda
    assert info.flags is not None and info.flags.cudnn_benchmark is True
    first = info.devices[0]
    assert first.name and first.memory_bytes and first.compute_capability
    torch.zeros(1, device="cuda")  # initialise CUDA: torch's own properties are used now
    initialised = collect_accelerator()
    assert initialised.cudnn_version == accelerator._cudnn_version(torch)
    assert initialised.cudnn_version
    assert (
        initialised.devices[0].sm_count == torch.cuda.get_device_properties(0).multi_processor_count
    )
    assert initialised.devices[0].name == torch.cuda.get_device_name(0)
