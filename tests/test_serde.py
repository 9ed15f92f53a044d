"""Dataclasses round-trip JSON; invalid JSON names the source and the field."""

from __future__ import annotations

import json

import pytest

from reprokit._serde import from_json, to_json
from reprokit.capturing.model import DataEntry, DataManifest, FileDigest, SeedRecord
from reprokit.exceptions import InputError


def _manifest() -> DataManifest:
    files = (FileDigest("a.csv", 3, "aa"), FileDigest("sub/b.csv", 4, "bb"))
    return DataManifest(entries=(DataEntry("data", "dir", 7, "blake3", "ff", files=files),))


def test_manifest_round_trips() -> None:
    manifest = _manifest()
    assert from_json(to_json(manifest), DataManifest) == manifest


def test_json_is_sorted_and_line_per_value() -> None:
    text = to_json(SeedRecord(seed=1, deterministic=False, seeded=("random",)))
    keys = [line.split('"')[1] for line in text.splitlines() if line.startswith(' "')]
    assert keys == sorted(keys)
    assert text.endswith("\n")


def test_wrong_type_names_field_and_source() -> None:
    data = json.loads(to_json(_manifest()))
    data["entries"][0]["size"] = "seven"
    with pytest.raises(InputError) as info:
        from_json(json.dumps(data), DataManifest, source="lock.json")
    assert "lock.json" in str(info.value)
    assert "$.entries[0].size" in str(info.value)


def test_not_json_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        from_json("{nope", DataManifest, source="x.json")


def test_a_file_name_that_is_not_utf8_is_written_escaped_and_reads_back_the_same() -> None:
    """``os.fsdecode(b"caf\\xe9.txt")`` holds a lone surrogate, which UTF-8 cannot encode (a
    lock of such a data folder failed to write): it is written as JSON's escape, nothing else
    changes."""
    name = "caf\udce9.txt"
    manifest = DataManifest(
        entries=(DataEntry("data", "dir", 1, "blake3", "0" * 64, (FileDigest(name, 1, "1" * 64),)),)
    )
    text = to_json(manifest)
    assert '"caf\\udce9.txt"' in text
    text.encode("utf-8")  # does not raise
    assert from_json(text, DataManifest) == manifest
    plain = DataManifest(entries=(DataEntry("dätä", "file", 1, "blake3", "0" * 64),))
    assert '"dätä"' in to_json(plain)  # other characters stay as they are
