"""Plain-text renderings for the terminal (``reprokit env``, ``reprokit hash``)."""

from __future__ import annotations

from collections.abc import Iterable

from reprokit.capturing.model import AcceleratorInfo, DataEntry, GitInfo, Snapshot

_NOT_SET = "-"


def human_bytes(size: int | None) -> str:
    """``1536`` → ``"1.5 KiB"``; ``None`` → ``"-"``."""
    if size is None:
        return _NOT_SET
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_entry(entry: DataEntry, *, list_files: bool = False) -> str:
    """One hashed path in checksum-file style (``sha256sum -c`` reads the file lines)."""
    if entry.kind == "file":
        return f"{entry.digest}  {entry.path}"
    count = len(entry.files)
    summary = (
        f"{entry.digest}  {entry.path.rstrip('/')}/  ({entry.algorithm} Merkle digest of "
        f"{count} file{'' if count == 1 else 's'}, {human_bytes(entry.size)})"
    )
    # with the file list, the folder's line becomes a comment so that the whole output is a
    # valid checksum file (`sha256sum -c` skips lines starting with '#')
    lines = [f"# {summary}" if list_files else summary]
    if list_files:
        base = entry.path.rstrip("/")
        lines += [f"{item.digest}  {base}/{item.path}" for item in entry.files]
    lines += [f"  skipped: {why}" for why in entry.skipped]
    return "\n".join(lines)


def _section(title: str, rows: Iterable[tuple[str, object]]) -> list[str]:
    pairs = [(key, _NOT_SET if value in (None, "") else str(value)) for key, value in rows]
    width = max((len(key) for key, _ in pairs), default=0)
    return [title, *(f"  {key.ljust(width)}  {value}" for key, value in pairs), ""]


def _git_rows(git: GitInfo) -> list[tuple[str, object]]:
    if not git.available:
        return [("status", f"unavailable ({git.reason})")]
    rows: list[tuple[str, object]] = [
        ("commit", git.commit),
        ("branch", git.branch or "(detached HEAD)"),
        ("dirty", "yes" if git.dirty else "no"),
        ("remote", git.remote_url),
    ]
    if git.diff_digest:
        rows.append(("diff", git.diff_digest))
    if git.untracked or git.untracked_omitted:
        rows.append(("untracked", f"{len(git.untracked) + git.untracked_omitted} files"))
    return rows


def _accelerator_rows(acc: AcceleratorInfo) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    if not acc.available:
        rows.append(("status", f"unavailable ({acc.reason})"))
    rows += [
        ("torch", acc.torch_version),
        ("CUDA runtime", acc.cuda_runtime),
        ("cuDNN", acc.cudnn_version),
        ("driver", acc.driver_version),
    ]
    for dev in acc.devices:
        memory = human_bytes(dev.memory_bytes)
        detail = (
            f"{dev.name} (sm_{dev.compute_capability or '?'}, {dev.sm_count or '?'} SMs, {memory})"
        )
        rows.append((f"GPU {dev.index}", detail))
    if acc.flags is not None:
        flags = acc.flags
        rows += [
            ("deterministic algorithms", flags.deterministic_algorithms),
            ("cudnn.deterministic", flags.cudnn_deterministic),
            ("cudnn.benchmark", flags.cudnn_benchmark),
            ("TF32 matmul / cuDNN", f"{flags.cuda_matmul_allow_tf32} / {flags.cudnn_allow_tf32}"),
            ("float32 matmul precision", flags.float32_matmul_precision),
        ]
    return [(key, value) for key, value in rows if value is not None]


def format_snapshot(snapshot: Snapshot, *, max_imported: int = 20) -> str:
    """A readable multi-section summary of a snapshot (the full data is ``--json``)."""
    py, plat = snapshot.python, snapshot.platform
    lines = _section(
        "Python",
        [
            ("version", f"{py.implementation} {py.version}"),
            ("executable", py.executable),
            ("virtualenv", "yes" if py.in_virtualenv else "no"),
        ],
    )
    lines += _section(
        "Platform",
        [
            ("OS", plat.os_name),
            ("kernel", f"{plat.system} {plat.release}"),
            ("machine", plat.machine),
            ("CPU", plat.cpu_model),
            ("cores", plat.logical_cores),
            ("memory", human_bytes(plat.memory_bytes)),
        ],
    )
    imported = sorted(snapshot.imported.items())
    shown = [(name, version) for name, version in imported[:max_imported]]
    if len(imported) > max_imported:
        shown.append(("...", f"{len(imported) - max_imported} more (see --json)"))
    lines += _section(
        f"Packages ({len(snapshot.packages)} installed, {len(imported)} imported)", shown
    )
    lines += _section(
        "BLAS / OpenMP",
        [
            (
                f"{pool.internal_api} ({pool.user_api})",
                f"{pool.num_threads} threads, {pool.version}",
            )
            for pool in snapshot.threadpools
        ]
        or [("loaded", "none yet")],
    )
    lines += _section("Environment", sorted(snapshot.environment.items()) or [("set", "none")])
    lines += _section("Git", _git_rows(snapshot.git))
    lines += _section("GPU / CUDA", _accelerator_rows(snapshot.accelerator))
    if snapshot.seeds is not None:
        seeds = snapshot.seeds
        lines += _section(
            "Seeds",
            [
                ("seed", seeds.seed),
                ("deterministic", seeds.deterministic),
                ("seeded", ", ".join(seeds.seeded)),
            ],
        )
    if snapshot.data is not None:
        lines += _section(
            "Data",
            [(entry.path, entry.tagged_digest) for entry in snapshot.data.entries],
        )
    if snapshot.extensions:  # facts of reprokit.collectors plugins, imported only for them
        from reprokit.capturing.extensions import flat_facts

        lines += _section("Plugins", list(flat_facts(snapshot.extensions).items()))
    return "\n".join(lines).rstrip() + "\n"
