"""Plain-text renderings for the terminal (``reprokit env``, ``reprokit hash``), and the
(label, value) rows of a snapshot's facts that every rendering of it is built from: the full
sections of ``reprokit env`` here, the one-line summaries of the notebook and MLflow views in
:mod:`reprokit.report.render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reprokit.capturing.model import (
    AcceleratorInfo,
    DataEntry,
    DataManifest,
    GitInfo,
    SeedRecord,
    Snapshot,
)

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
    count = entry.file_count
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


def table_text(rows: Sequence[tuple[str, str]], *, caption: str = "") -> str:
    """Rows as an aligned two-column table, under ``caption`` when there is one."""
    width = max((len(k) for k, _ in rows), default=0)
    lines = [caption] if caption else []
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def _section(title: str, rows: Iterable[tuple[str, object]]) -> list[str]:
    pairs = [(key, _NOT_SET if value in (None, "") else str(value)) for key, value in rows]
    return [table_text(pairs, caption=title), ""]


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


def git_summary(git: GitInfo) -> str:
    """One line: ``3f2a9c1d0e4b on main, clean``."""
    if not git.available:
        return f"none ({git.reason})" if git.reason else "none"
    head = (git.commit or "no commit")[:12]
    where = f" on {git.branch}" if git.branch else " (detached)"
    return head + where + (", dirty" if git.dirty else ", clean")


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


def accelerator_summary(acc: AcceleratorInfo) -> str:
    """One line: the devices' names, CUDA, cuDNN and driver versions."""
    if not acc.available:
        return f"none ({acc.reason})" if acc.reason else "none"
    names = ", ".join(d.name for d in acc.devices) or "unknown device"
    parts = [names, f"CUDA {acc.cuda_runtime}" if acc.cuda_runtime else ""]
    parts += [f"cuDNN {acc.cudnn_version}" if acc.cudnn_version else ""]
    parts += [f"driver {acc.driver_version}" if acc.driver_version else ""]
    return ", ".join(p for p in parts if p)


def _seed_rows(seeds: SeedRecord) -> list[tuple[str, object]]:
    return [
        ("seed", seeds.seed),
        ("deterministic", seeds.deterministic),
        ("seeded", ", ".join(seeds.seeded)),
    ]


def seed_summary(seeds: SeedRecord | None) -> str:
    """One line: ``0, deterministic (random, numpy)``."""
    if seeds is None:
        return "not set"
    mode = ", deterministic" if seeds.deterministic else ""
    return f"{seeds.seed}{mode} ({', '.join(seeds.seeded) or 'nothing seeded'})"


def data_rows(data: DataManifest | None) -> list[tuple[str, str]]:
    """One row per declared data path: kind, size and a shortened digest."""
    if data is None or not data.entries:
        return [("data", "none declared")]
    return [
        (f"data: {e.path}", f"{e.kind}, {e.size:,} bytes, {e.algorithm}:{e.digest[:16]}…")
        for e in data.entries
    ]


def plugin_rows(snapshot: Snapshot) -> list[tuple[str, str]]:
    """What ``reprokit.collectors`` plugins recorded, one row per flat key (``jax.version``)."""
    if not snapshot.extensions:
        return []
    from reprokit.capturing.extensions import flat_facts  # imported only for plugin facts

    return list(flat_facts(snapshot.extensions).items())


def format_snapshot(snapshot: Snapshot, *, max_imported: int = 20) -> str:
    """A readable multi-section summary of a snapshot (the full data is ``--json``)."""
    lines = _machine_sections(snapshot)
    lines += _packages_sections(snapshot, max_imported)
    lines += _section("Environment", sorted(snapshot.environment.items()) or [("set", "none")])
    lines += _section("Git", _git_rows(snapshot.git))
    lines += _section("GPU / CUDA", _accelerator_rows(snapshot.accelerator))
    if snapshot.seeds is not None:
        lines += _section("Seeds", _seed_rows(snapshot.seeds))
    if snapshot.data is not None:
        lines += _section(
            "Data",
            [(entry.path, entry.tagged_digest) for entry in snapshot.data.entries],
        )
    if snapshot.extensions:
        lines += _section("Plugins", plugin_rows(snapshot))
    return "\n".join(lines).rstrip() + "\n"


def _machine_sections(snapshot: Snapshot) -> list[str]:
    py, plat = snapshot.python, snapshot.platform
    lines = _section(
        "Python",
        [
            ("version", f"{py.implementation} {py.version}"),
            ("executable", py.executable or "not recorded"),
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
    return lines


def _packages_sections(snapshot: Snapshot, max_imported: int) -> list[str]:
    imported = sorted(snapshot.imported.items())
    shown = [(name, version) for name, version in imported[:max_imported]]
    if len(imported) > max_imported:
        shown.append(("...", f"{len(imported) - max_imported} more (see --json)"))
    lines = _section(
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
    return lines
