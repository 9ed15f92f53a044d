"""The data model of what reprokit captures: frozen dataclasses that round-trip JSON.

Absence is always a value, never an exception: a collector that cannot find what
it looks for returns its dataclass with ``available=False`` and a ``reason``.
Mappings are plain ``dict`` (sorted when serialised); sequences are tuples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1
"""Version of the snapshot/manifest JSON schema; bumped on incompatible change."""


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.11.7"
    implementation: str  # "CPython"
    # the recording machine's paths: in a snapshot, never in a lock (None there)
    executable: str | None = None
    prefix: str | None = None  # sys.prefix: tells a virtual environment apart from the system
    in_virtualenv: bool = False
    interpreter_tag: str | None = None  # "cp311": the wheel tag of this interpreter and ABI
    platform_tag: str | None = None  # "linux_x86_64": the wheel platform tag (sysconfig)
    libc: str | None = None  # "glibc 2.36": which manylinux/musllinux wheels can run here


OriginKind = Literal["vcs", "archive", "directory"]
"""Where a distribution came from when not from an index (PEP 610 ``direct_url.json``)."""


@dataclass(frozen=True)
class PackageOrigin:
    """A distribution installed from a URL rather than an index (PEP 610), credentials removed.

    A local directory or archive keeps only its file name (``local_name``), never its path:
    such a distribution cannot be reinstalled elsewhere (``local``).  A VCS URL is kept as
    installed (a ``git+file://`` one is ``local`` too: only this machine can fetch it).
    """

    kind: OriginKind
    url: str | None = None  # None for a local directory or archive
    local: bool = False  # True: only the recording machine could reinstall it from here
    local_name: str | None = None  # the folder or file name of a local origin
    vcs: str | None = None  # "git", "hg", "svn", "bzr"
    commit: str | None = None  # vcs_info.commit_id
    requested_revision: str | None = None  # the branch or tag asked for
    subdirectory: str | None = None
    archive_hash: str | None = None  # "sha256=<hex>"
    editable: bool = False


@dataclass(frozen=True)
class Distribution:
    """What a rebuild needs beyond a distribution's version (``Snapshot.packages``)."""

    requested: bool | None = None  # PEP 376 REQUESTED: installed by the user; None: unknown
    origin: PackageOrigin | None = None  # None: from a package index
    requires: tuple[str, ...] = ()  # installed distributions it depends on (normalised names)


@dataclass(frozen=True)
class PlatformInfo:
    system: str  # "Linux"
    release: str  # kernel release, "6.1.0-18-amd64"
    version: str  # kernel build string / OS version
    machine: str  # "x86_64"
    os_name: str  # "Debian GNU/Linux 12 (bookworm)" from /etc/os-release, or platform.platform()
    cpu_model: str  # "Intel(R) Xeon(R) ..." or "" when unknown
    logical_cores: int
    memory_bytes: int | None  # total physical memory; None when it cannot be read


@dataclass(frozen=True)
class ThreadPool:
    """One BLAS/OpenMP library loaded in the process, as threadpoolctl reports it."""

    user_api: str  # "blas" | "openmp"
    internal_api: str  # "openblas" | "mkl" | "blis" | "openmp" | ...
    version: str | None
    num_threads: int
    filepath: str
    threading_layer: str | None = None
    architecture: str | None = None


@dataclass(frozen=True)
class GitInfo:
    available: bool
    reason: str | None = None  # why not available: "not a git repository", "git not installed"
    root: str | None = None
    commit: str | None = None
    branch: str | None = None  # None on a detached HEAD
    dirty: bool = False
    diff_digest: str | None = None  # "blake3:<hex>" of `git diff HEAD` (tracked changes)
    untracked: tuple[str, ...] = ()  # sorted, at most git.UNTRACKED_LIMIT names
    untracked_omitted: int = 0  # untracked files past the limit, not listed
    remote_url: str | None = None  # credentials stripped


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    compute_capability: str | None = None  # "9.0"
    sm_count: int | None = None
    memory_bytes: int | None = None
    uuid: str | None = None


@dataclass(frozen=True)
class NumericsFlags:
    """torch switches that change numerical results; None where torch did not say."""

    deterministic_algorithms: bool | None = None
    deterministic_warn_only: bool | None = None
    cudnn_deterministic: bool | None = None
    cudnn_benchmark: bool | None = None
    cuda_matmul_allow_tf32: bool | None = None
    cudnn_allow_tf32: bool | None = None
    float32_matmul_precision: str | None = None
    cublas_workspace_config: str | None = None


@dataclass(frozen=True)
class AcceleratorInfo:
    available: bool  # True when at least one CUDA device was seen (via torch or NVML)
    reason: str | None = None  # "torch not imported; NVML: no NVIDIA driver", ...
    source: str = "none"  # "torch" | "nvml" | "torch+nvml" | "none"
    torch_version: str | None = None
    cuda_runtime: str | None = None  # torch.version.cuda
    cudnn_version: str | None = None
    driver_version: str | None = None  # from NVML
    devices: tuple[GpuDevice, ...] = ()
    flags: NumericsFlags | None = None  # None when torch was not imported


@dataclass(frozen=True)
class SeedRecord:
    """Exactly what seed_everything set."""

    seed: int
    deterministic: bool
    seeded: tuple[str, ...]  # "random", "numpy", "torch", "torch.cuda"
    settings: dict[str, str] = field(default_factory=dict)  # switch -> value it was set to
    pythonhashseed: str | None = None  # current PYTHONHASHSEED (only effective at start)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileDigest:
    path: str  # relative to the directory entry it belongs to, "/"-separated
    size: int
    digest: str  # hex


def file_digests(
    paths: Iterable[str], sizes: Iterable[int], digests: Iterable[str]
) -> tuple[FileDigest, ...]:
    """Many :class:`FileDigest` at once: the same objects ``FileDigest(path, size, digest)``
    makes, filled in directly instead of through the frozen class's ``__setattr__`` guard
    (a third of the time for the 100,000 files of a large folder)."""
    new = object.__new__
    made: list[FileDigest] = []
    append = made.append
    for path, size, digest in zip(paths, sizes, digests, strict=True):
        item = new(FileDigest)
        fields = item.__dict__
        fields["path"] = path
        fields["size"] = size
        fields["digest"] = digest
        append(item)
    return tuple(made)


@dataclass(frozen=True)
class DataEntry:
    """One hashed path: a file, or a directory with its Merkle digest and file list."""

    path: str
    kind: str  # "file" | "dir"
    size: int  # bytes (sum over files for a directory)
    algorithm: str  # "blake3" | "sha256" | "md5"
    digest: str  # hex
    files: tuple[FileDigest, ...] = ()  # for a directory, sorted by path
    skipped: tuple[str, ...] = ()  # special files (sockets, FIFOs, ...) left out, with why

    @property
    def tagged_digest(self) -> str:
        """The digest as ``ALGO:HEX``, the form ``--expect`` takes."""
        return f"{self.algorithm}:{self.digest}"

    @property
    def file_count(self) -> int:
        """Files listed in ``files`` (counted without making them, for a folder just hashed)."""
        return len(self.files)


@dataclass(frozen=True)
class DataManifest:
    schema_version: int = SCHEMA_VERSION
    entries: tuple[DataEntry, ...] = ()


@dataclass(frozen=True)
class ExtensionInfo:
    """What one ``reprokit.collectors`` plugin reported (see :mod:`reprokit.plugins`).

    ``data`` is the collector's JSON-able output (a dataclass becomes a dict), with secrets
    redacted; a collector that raised or returned something that is not JSON is recorded with
    ``available=False`` and the ``reason``.
    """

    available: bool
    reason: str | None = None
    data: Any = None


@dataclass(frozen=True)
class Snapshot:
    schema_version: int
    reprokit_version: str
    captured_at: str  # ISO 8601, UTC
    python: PythonInfo
    platform: PlatformInfo
    packages: dict[str, str]  # every installed distribution -> version
    imported: dict[str, str]  # top-level modules imported at capture time -> version
    threadpools: tuple[ThreadPool, ...]
    environment: dict[str, str]  # allow-listed, redacted environment variables
    git: GitInfo
    accelerator: AcceleratorInfo
    seeds: SeedRecord | None = None
    data: DataManifest | None = None
    # collector plugin name -> what it reported; absent in snapshots written before plugins
    extensions: dict[str, ExtensionInfo] = field(default_factory=dict)
    # normalised name -> requested/origin/requires; absent in snapshots written before lock 2
    distributions: dict[str, Distribution] = field(default_factory=dict)
    # the distributions of the modules in ``imported`` (``yaml`` -> ``pyyaml``), sorted
    imported_distributions: tuple[str, ...] = ()
