"""The lines ``reprokit gc`` and ``reprokit status`` print: run folders, bytes, reasons."""

from __future__ import annotations

from pathlib import Path

from reprokit.recording.handoff import WriterFailure
from reprokit.recording.retention import DiskUsage, GcResult, KeepReason
from reprokit.report.describe import relative_path

_REASONS: dict[KeepReason, str] = {
    "recent": "one of the last runs of its notebook",
    "locked": "a lock was recorded from it (its MLflow run, or its snapshot)",
    "active": "still being written",
    "syncing": "a journal still has to upload it",
    "undeletable": "could not be deleted (a file this user may not delete, or a link)",
}


def human_bytes(size: int) -> str:
    """``1.5 MB`` (decimal units, as ``du --si``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def describe_gc(result: GcResult, base: Path | None = None, *, verbose: bool = False) -> list[str]:
    """One line per run folder removed (and, ``verbose``, kept with its reason), then a sum."""
    verb = "would remove" if result.dry_run else "removed"
    lines = [f"{verb}  {relative_path(entry.path, base)}" for entry in result.removed]
    if verbose:
        lines += [
            f"kept     {relative_path(entry.path, base)}: {_REASONS[reason]}"
            for entry, reason in result.kept
        ]
    lines.append(
        f"{verb} {len(result.removed)} run folder(s) and {result.objects_removed} stored "
        f"object(s), {human_bytes(result.bytes_freed)}; kept {len(result.kept)} run folder(s)"
    )
    return lines


def describe_disk(usage: DiskUsage, base: Path | None = None) -> list[str]:
    """What ``reprokit status`` prints about the disk, the journals whose background writer
    failed (why) and those that lost their start (one line each; paths relative to ``base``
    when inside it)."""
    return (
        [
            f"runs     {usage.runs} run folder(s), {human_bytes(usage.run_bytes)} "
            f"({human_bytes(usage.shared_bytes)} of it stored once in objects)",
            f"objects  {usage.objects} stored file(s), {human_bytes(usage.object_bytes)}",
            f"total    {human_bytes(usage.total_bytes)} under .reprokit/ (each file counted once)",
        ]
        + ([_journals(usage.journals)] if usage.journals else [])
        + [_writer_failure(failure, base) for failure in usage.writer_failures]
        + [_startless(journal, base) for journal in usage.startless]
    )


def _journals(count: int) -> str:
    return (
        f"journals {count} run(s) not in MLflow yet: being recorded, or left by a process that "
        "died (`reprokit sync` records those)"
    )


def _startless(journal: str, base: Path | None) -> str:
    return (
        f"startless {relative_path(journal, base)}: kept, no start event: its events cannot be "
        "replayed (`reprokit sync` names it)"
    )


def _writer_failure(failure: WriterFailure, base: Path | None) -> str:
    why = failure.reason or "it ended without writing the run"
    return (
        f"failed   {relative_path(failure.journal, base)}: its background writer failed: {why}; "
        "`reprokit sync` records the run once the store works"
    )


__all__ = ["describe_disk", "describe_gc", "human_bytes"]
