"""GPU and CUDA facts, from torch when the notebook imported it and from NVML.

Two sources, both optional, never imported on our own initiative beyond NVML:

- **torch**, only if ``"torch" in sys.modules`` (importing it would cost a second and
  change the process): version, CUDA runtime, numerics flags, and, when the notebook already
  initialised CUDA, cuDNN's version and the SM count of a device NVML cannot derive it for.
  Otherwise we do not initialise it: after ``cuInit`` a forked child can no longer use CUDA
  (DataLoader workers, multiprocessing), and initialisation costs 0.1 to 1 s and GPU memory.
  NVML describes the devices either way (the same facts before and after CUDA starts), and
  the ``nvidia-cudnn-cu<N>`` wheel a pip build of torch loads gives cuDNN's version
  (``torch.backends.cudnn.version()`` initialises CUDA: torch 2.11 on an H200).
  (``torch.cuda.is_available()`` calls ``cuInit``; ``torch.cuda.device_count()`` asks NVML
  first.)  Only when NVML is unusable does torch count and describe the devices itself,
  since its count then needs ``cuInit``.
- **NVML** (``pynvml`` from nvidia-ml-py, a thin ctypes binding to the driver's
  ``libnvidia-ml``): driver version, device names, memory, UUIDs, compute capability, and
  the SM count derived from the CUDA core count.  Queried once per process (these facts
  do not change) and then filtered by ``CUDA_VISIBLE_DEVICES`` the way CUDA reads it
  (ordinals or ``GPU-`` UUID prefixes; an invalid entry ends the list, a repeated one
  empties it; ``""`` hides every device).  NVML numbers devices in PCI bus order, CUDA by
  default fastest first: on a machine mixing GPU models the two orders can differ unless
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.  With ``MIG-`` entries the physical GPUs are listed.

Nothing here raises for a missing GPU, driver or library: the result says
``available=False`` with a reason naming both sources ("torch not imported; NVML: NVIDIA
driver library not found").
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, TypeVar

from reprokit.capturing.model import AcceleratorInfo, GpuDevice, NumericsFlags

T = TypeVar("T")

# CUDA cores per SM by compute capability (as in the CUDA samples' _ConvertSMVer2Cores)
_CORES_PER_SM = {
    (3, 0): 192, (3, 2): 192, (3, 5): 192, (3, 7): 192,
    (5, 0): 128, (5, 2): 128, (5, 3): 128,
    (6, 0): 64, (6, 1): 128, (6, 2): 128,
    (7, 0): 64, (7, 2): 64, (7, 5): 64,
    (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
    (9, 0): 128,
    (10, 0): 128, (10, 1): 128, (10, 3): 128, (11, 0): 128, (12, 0): 128, (12, 1): 128,
}  # fmt: skip


def collect_accelerator() -> AcceleratorInfo:
    """Accelerator facts from torch (if imported) and NVML, without initialising CUDA."""
    nvml = _nvml_facts()
    torch = sys.modules.get("torch")
    torch_facts = _torch_facts(torch, nvml_ok=nvml.ok) if torch is not None else None
    visible = _visible(nvml.devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
    from_torch = torch_facts.devices if torch_facts else ()
    devices = _completed(visible, from_torch) if visible else from_torch
    sources = [name for name, used in (("torch", torch_facts), ("nvml", nvml.ok)) if used]
    return AcceleratorInfo(
        available=bool(devices),
        reason=None if devices else _reason(torch_facts, nvml),
        source="+".join(sources) or "none",
        torch_version=torch_facts.version if torch_facts else None,
        cuda_runtime=torch_facts.cuda_runtime if torch_facts else None,
        cudnn_version=torch_facts.cudnn_version if torch_facts else None,
        driver_version=nvml.driver_version,
        devices=devices,
        flags=torch_facts.flags if torch_facts else None,
    )


@dataclass(frozen=True)
class _TorchFacts:
    version: str
    cuda_runtime: str | None
    cudnn_version: str | None
    devices: tuple[GpuDevice, ...]  # only when torch had initialised CUDA, or without NVML
    flags: NumericsFlags


@dataclass(frozen=True)
class _NvmlFacts:
    ok: bool
    error: str | None = None
    driver_version: str | None = None
    devices: tuple[GpuDevice, ...] = ()  # every device, NVML (PCI) order


def _torch_facts(torch: ModuleType, *, nvml_ok: bool) -> _TorchFacts:
    cuda_runtime = _read(lambda: torch.version.cuda)
    # Without NVML, torch.cuda.device_count() falls back to cudaGetDeviceCount (cuInit):
    # then torch is the only source left, and asking it for properties costs little more.
    ask_torch = cuda_runtime is not None and (not nvml_ok or _read(torch.cuda.is_initialized))
    cudnn = None
    if cuda_runtime is not None:
        # torch.backends.cudnn.version() initialises CUDA: until the notebook has, the
        # cuDNN wheel torch loads says which version it is
        cudnn = _cudnn_version(torch) if ask_torch else _cudnn_wheel_version(str(cuda_runtime))
    return _TorchFacts(
        version=str(_read(lambda: torch.__version__) or "unknown"),
        cuda_runtime=None if cuda_runtime is None else str(cuda_runtime),
        cudnn_version=cudnn,
        devices=_torch_devices(torch) if ask_torch else (),
        flags=_numerics_flags(torch),
    )


def _torch_devices(torch: ModuleType) -> tuple[GpuDevice, ...]:
    devices = []
    for index in range(_read(torch.cuda.device_count) or 0):
        props: Any = _read(functools.partial(torch.cuda.get_device_properties, index))
        if props is None:
            continue
        uuid = _read(functools.partial(_uuid_of, props))
        devices.append(
            GpuDevice(
                index=index,
                name=str(props.name),
                compute_capability=f"{props.major}.{props.minor}",
                sm_count=int(props.multi_processor_count),
                memory_bytes=int(props.total_memory),
                uuid=uuid if uuid is None or uuid.startswith("GPU-") else f"GPU-{uuid}",
            )
        )
    return tuple(devices)


def _completed(
    nvml: tuple[GpuDevice, ...], from_torch: tuple[GpuDevice, ...]
) -> tuple[GpuDevice, ...]:
    """NVML's devices, whether or not CUDA was started (torch's own description differs: its
    ``total_memory`` is what CUDA may allocate, 150.1 GB of an H200's 150.8), with the SM
    count from torch where NVML could not derive it (an unknown compute capability)."""
    by_uuid = {d.uuid: d for d in from_torch if d.uuid}
    by_index = {d.index: d for d in from_torch}
    out = []
    for device in nvml:
        twin = by_uuid.get(device.uuid) if device.uuid else by_index.get(device.index)
        if device.sm_count is None and twin is not None:
            device = replace(device, sm_count=twin.sm_count)
        out.append(device)
    return tuple(out)


def _uuid_of(props: Any) -> str:
    return str(props.uuid)


def _cudnn_version(torch: ModuleType) -> str | None:
    """``"9.1.0"`` from torch's integer (90100 for cuDNN 9, 8907 for cuDNN 8.9.7)."""
    number = _read(torch.backends.cudnn.version)
    if not isinstance(number, int):
        return None
    major, rest = divmod(number, 10000 if number >= 10000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _cudnn_wheel_version(cuda_runtime: str) -> str | None:
    """``"9.13.0"`` from the installed ``nvidia-cudnn-cu13`` (for CUDA 13), the wheel a pip
    build of torch loads; None where cuDNN came otherwise (conda, a system library)."""
    major = cuda_runtime.partition(".")[0]
    try:
        version = importlib.metadata.version(f"nvidia-cudnn-cu{major}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    return ".".join(version.split(".")[:3])


def _numerics_flags(torch: ModuleType) -> NumericsFlags:
    backends = torch.backends
    return NumericsFlags(
        deterministic_algorithms=_read(torch.are_deterministic_algorithms_enabled),
        deterministic_warn_only=_read(torch.is_deterministic_algorithms_warn_only_enabled),
        cudnn_deterministic=_read(lambda: bool(backends.cudnn.deterministic)),
        cudnn_benchmark=_read(lambda: bool(backends.cudnn.benchmark)),
        cuda_matmul_allow_tf32=_read(lambda: bool(backends.cuda.matmul.allow_tf32)),
        cudnn_allow_tf32=_read(lambda: bool(backends.cudnn.allow_tf32)),
        float32_matmul_precision=_read(lambda: str(torch.get_float32_matmul_precision())),
        cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


def _read(getter: Callable[[], T]) -> T | None:
    """``getter()``, or None where this torch build lacks it; deprecation warnings muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getter()
        except (AttributeError, RuntimeError, TypeError, ValueError, AssertionError):
            return None


@functools.cache
def _nvml_facts() -> _NvmlFacts:
    """Driver and devices from NVML, once per process (neither changes while we run)."""
    try:
        import pynvml
    except ImportError:
        return _NvmlFacts(ok=False, error="nvidia-ml-py (pynvml) not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return _NvmlFacts(ok=False, error="NVIDIA driver library (libnvidia-ml) not found")
    except pynvml.NVMLError as exc:
        return _NvmlFacts(ok=False, error=f"initialisation failed: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        count = pynvml.nvmlDeviceGetCount()
        devices = tuple(_nvml_device(pynvml, index) for index in range(count))
    except pynvml.NVMLError as exc:
        return _NvmlFacts(ok=False, error=f"query failed: {exc}")
    finally:
        _nvml_call(pynvml, pynvml.nvmlShutdown)
    return _NvmlFacts(ok=True, driver_version=driver, devices=devices)


def _nvml_device(pynvml: Any, index: int) -> GpuDevice:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    capability = _nvml_call(pynvml, pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    cores = _nvml_call(pynvml, pynvml.nvmlDeviceGetNumGpuCores, handle)
    memory = _nvml_call(pynvml, pynvml.nvmlDeviceGetMemoryInfo, handle)
    uuid = _nvml_call(pynvml, pynvml.nvmlDeviceGetUUID, handle)
    per_sm = _CORES_PER_SM.get(tuple(capability)) if capability else None
    return GpuDevice(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        sm_count=cores // per_sm if cores and per_sm else None,
        memory_bytes=int(memory.total) if memory is not None else None,
        uuid=_text(uuid) if uuid is not None else None,
    )


def _nvml_call(pynvml: Any, function: Callable[..., T], *args: Any) -> T | None:
    """An NVML query that a driver may not support: None instead of an error."""
    try:
        return function(*args)
    except pynvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _visible(devices: tuple[GpuDevice, ...], spec: str | None) -> tuple[GpuDevice, ...]:
    """The devices CUDA would see under ``CUDA_VISIBLE_DEVICES=spec``, renumbered 0..n-1."""
    if spec is None or spec.strip().startswith("MIG-"):
        return devices
    chosen: list[int] = []
    for item in spec.split(","):
        index = _visible_index(item.strip(), devices)
        if index is None:
            break  # CUDA ignores everything from the first invalid entry on
        if index in chosen:
            return ()  # CUDA treats a repeated device as an invalid list
        chosen.append(index)
    return tuple(replace(devices[i], index=n) for n, i in enumerate(chosen))


def _visible_index(item: str, devices: tuple[GpuDevice, ...]) -> int | None:
    if item.startswith("GPU-"):
        matches = [i for i, d in enumerate(devices) if (d.uuid or "").startswith(item)]
        return matches[0] if len(matches) == 1 else None
    digits = item[: len(item) - len(item.lstrip("0123456789"))]  # strtoul: leading digits
    if not digits or int(digits) >= len(devices):
        return None
    return int(digits)


def _reason(torch_facts: _TorchFacts | None, nvml: _NvmlFacts) -> str:
    if torch_facts is None:
        torch_part = "torch not imported"
    elif torch_facts.cuda_runtime is None:
        torch_part = f"torch {torch_facts.version} built without CUDA"
    else:
        torch_part = f"torch {torch_facts.version} (CUDA {torch_facts.cuda_runtime}) sees no device"
    if not nvml.ok:
        nvml_part = f"NVML: {nvml.error}"
    elif not nvml.devices:
        nvml_part = "NVML: no NVIDIA GPU"
    else:
        nvml_part = f"NVML: {len(nvml.devices)} GPU(s) hidden by CUDA_VISIBLE_DEVICES"
    return f"{torch_part}; {nvml_part}"


def cuda_visible() -> bool:
    """True when an already imported torch (else NVML) sees a CUDA device; never imports
    torch and never initialises CUDA."""
    return collect_accelerator().available
