"""Bad input never reaches the disk, and bad stored data never breaks a search (issue 15.4, 15.6).

A rejected ``add`` leaves every file of the index byte-identical; metadata written before the
checks existed (lone surrogates, 900-deep nesting, not JSON) comes back marked instead of
raising, ``hashlab index check`` reports it and ``--repair`` fixes it; a missing or empty
metadata store and a hand-edited header are one clear line, not silent nulls or a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hashlab.index import HammingIndex, IndexFormatError, MetadataError
from hashlab.index.storage import MAX_METADATA_BYTES, METADATA_ERROR_KEY

N_BITS = 16


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes, aside from SQLite's coordination files (-shm, an empty -wal), which
    its read-only connections may create and which hold no data."""
    files = {p.name: p.read_bytes() for p in sorted(path.iterdir()) if not p.name.endswith("-shm")}
    return {name: data for name, data in files.items() if data or not name.endswith("-wal")}


def deep(levels: int) -> dict:
    item: dict = {"leaf": 1}
    for _ in range(levels):
        item = {"x": item}
    return item


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "hashlab", *args], capture_output=True, text=True, timeout=120
    )


def cli_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same entry point in this process (cheaper, for the many bad-header cases)."""
    from hashlab.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def index_dir(tmp_path):
    bits = np.random.default_rng(0).integers(0, 2, (50, N_BITS), dtype=np.uint8)
    index = HammingIndex.create(tmp_path / "idx", N_BITS)
    index.add(bits, metadata=[{"site": "A", "i": i} for i in range(50)])
    index.close()
    return tmp_path / "idx"


class Unserialisable:
    pass


@pytest.mark.parametrize(
    "metadata, words",
    [
        ([deep(900)], "nested deeper than 32"),
        ([{"name": "\ud800"}], "lone surrogate"),
        ([{"\udfff": 1}], "lone surrogate"),
        ([{"a": ["ok", {"b": "x\ud83d"}]}], "lone surrogate"),
        ([{1: "int key"}], "not a string"),
        ([{"v": float("nan")}], "NaN"),
        ([{"v": float("inf")}], "infinity"),
        ([{"blob": "x" * (MAX_METADATA_BYTES + 1)}], "at most"),
        ([{"s": {1, 2}}], "set"),
        ([{"b": b"bytes"}], "bytes"),
        ([{"o": Unserialisable()}], "Unserialisable"),
        (["not a dict"], "must be a dict"),
        ({"a": 1}, "sequence of 1"),
    ],
)
def test_rejected_add_changes_nothing(index_dir, metadata, words):
    before = snapshot(index_dir)
    index = HammingIndex.open(index_dir, mode="w")
    code = np.zeros((1, N_BITS), dtype=np.uint8)
    with pytest.raises(MetadataError, match=words) as caught:
        index.add(code, metadata=metadata)
    assert isinstance(caught.value, ValueError)
    # the second of two items is the bad one: the first is not written either
    if isinstance(metadata, list):
        with pytest.raises(MetadataError):
            index.add(np.zeros((2, N_BITS), np.uint8), metadata=[{"ok": 1}, *metadata])
    assert len(index) == 50
    index.close()
    assert snapshot(index_dir) == before
    reopened = HammingIndex.open(index_dir, mode="w")
    assert reopened.add(code, metadata=[{"fine": True}]).tolist() == [50]  # next id unchanged


def test_rejected_ids_and_codes_change_nothing(index_dir):
    before = snapshot(index_dir)
    index = HammingIndex.open(index_dir, mode="w")
    code = np.zeros((2, N_BITS), dtype=np.uint8)
    for bad in ([3, 60], [70, 70], [-1, 71]):
        with pytest.raises(ValueError):
            index.add(code, ids=bad)
    with pytest.raises(ValueError):
        index.add(np.zeros((2, N_BITS + 1), dtype=np.uint8))
    with pytest.raises(KeyError):
        index.remove([3, 999])
    index.close()
    assert snapshot(index_dir) == before


def test_metadata_is_normalised(tmp_path):
    index = HammingIndex.create(tmp_path / "idx", N_BITS)
    index.add(
        np.zeros((1, N_BITS), np.uint8),
        metadata=[{"n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "t": (1, "é")}],
    )
    index.close()
    assert HammingIndex.open(tmp_path / "idx").metadata([0]) == [
        {"n": 3, "f": 0.5, "b": True, "t": [1, "é"]}
    ]


def poison(index_dir: Path) -> None:
    """Store what the unvalidated version let in, straight into the metadata store."""
    connection = sqlite3.connect(str(index_dir / "metadata.sqlite"))
    with connection:
        connection.execute("UPDATE items SET json = ? WHERE id = 3", ('{"name": "\\ud800x"}',))
        connection.execute("UPDATE items SET json = ? WHERE id = 4", (json.dumps(deep(900)),))
        connection.execute("UPDATE items SET json = ? WHERE id = 5", ("{not json",))
        connection.execute("UPDATE items SET json = ? WHERE id = 6", ('["a list"]',))
    connection.close()


def test_unrenderable_stored_metadata_never_breaks_a_search(index_dir):
    poison(index_dir)
    index = HammingIndex.open(index_dir)
    ids, _, meta = index.search(np.zeros((1, N_BITS), np.uint8), 50, with_metadata=True)
    by_id = dict(zip(ids[0].tolist(), meta[0], strict=True))
    for bad in (3, 4, 5, 6):
        assert set(by_id[bad]) == {METADATA_ERROR_KEY}, by_id[bad]
    assert "cannot be shown" in by_id[4][METADATA_ERROR_KEY]
    assert by_id[7] == {"site": "A", "i": 7}
    # every answer can be sent as UTF-8 JSON, the service's way out
    json.dumps(meta, ensure_ascii=False).encode("utf-8")
    hits = index.range_search(np.zeros((1, N_BITS), np.uint8), N_BITS, filter="site == 'A'")
    assert sorted(hits[0][0].tolist()) == [i for i in range(50) if i not in (3, 4, 5, 6)]


def test_index_check_reports_and_repairs(index_dir):
    poison(index_dir)
    with open(index_dir / "codes.bin", "ab") as handle:
        handle.write(b"\x07\x07\x07")  # a killed writer's tail
    (index_dir / "header.json.999.abcd.tmp").write_text("{")
    before = snapshot(index_dir)
    found = cli("index", "check", str(index_dir), "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert sorted(b["id"] for b in report["bad_metadata"]) == [3, 4, 5, 6]
    assert any("codes.bin: 3 bytes past the commit point" in p for p in report["problems"])
    assert any("header.json.999.abcd.tmp" in p for p in report["problems"])
    assert snapshot(index_dir) == before  # checking is reading

    repaired = cli("index", "check", str(index_dir), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "item 3: bad text replaced by U+FFFD" in repaired.stdout
    assert "item 4: metadata removed" in repaired.stdout
    again = cli("index", "check", str(index_dir))
    assert again.returncode == 0 and ": ok, 50 items" in again.stdout, again.stdout
    index = HammingIndex.open(index_dir)
    assert index.metadata([3, 4, 5, 7]) == [{"name": "\ufffdx"}, None, None, {"site": "A", "i": 7}]
    assert (index_dir / "codes.bin").stat().st_size == 50 * 2


def test_check_refuses_to_repair_beside_a_live_writer(index_dir):
    writer = HammingIndex.open(index_dir, mode="w")
    done = cli("index", "check", str(index_dir), "--repair")
    assert done.returncode == 1 and "locked by a writer" in done.stdout, done.stdout
    writer.close()


@pytest.mark.parametrize("damage", ["missing", "empty", "no-table"])
def test_missing_or_empty_metadata_store_is_an_error(index_dir, damage, capsys):
    for name in ("metadata.sqlite-wal", "metadata.sqlite-shm"):
        (index_dir / name).unlink(missing_ok=True)
    store = index_dir / "metadata.sqlite"
    if damage == "missing":
        store.unlink()
    elif damage == "empty":
        store.write_bytes(b"")
    else:
        store.unlink()
        sqlite3.connect(str(store)).execute("CREATE TABLE other (x)").connection.commit()
    for mode in ("r", "w"):
        with pytest.raises(IndexFormatError, match="metadata"):
            HammingIndex.open(index_dir, mode=mode)
    done = cli_here(capsys, "index", "info", str(index_dir))
    assert done.returncode == 2 and "metadata" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda h: h.update(n_rows="abc"), "'n_rows' must be a non-negative integer"),
        (lambda h: h.update(n_rows=-5), "'n_rows' must be a non-negative integer"),
        (lambda h: h.update(n_rows=10**6), "truncated"),
        (lambda h: h.update(n_bits=0), "'n_bits' must be between 1 and 65536"),
        (lambda h: h.update(next_id=True), "'next_id' must be a non-negative integer"),
        (lambda h: h.pop("crc32"), "'crc32' must be an object"),
        (lambda h: h["crc32"].update(codes="x"), "CRC-32 of codes"),
        (lambda h: h["crc32"].update(codes=12345), "CRC-32 does not match"),
        (lambda h: h["files"].update(codes="../../etc/passwd"), "'files' must name"),
        (lambda h: h.update(files=None), "'files' must name"),
        (lambda h: h.update(version=99), "format version 99"),
        (lambda h: h.update(backend=[1]), "'backend' must be an object"),
    ],
)
def test_hand_edited_header_is_one_clear_line(index_dir, edit, words, capsys):
    header = json.loads((index_dir / "header.json").read_text())
    edit(header)
    (index_dir / "header.json").write_text(json.dumps(header))
    with pytest.raises(IndexFormatError, match=words):
        HammingIndex.open(index_dir)
    done = cli_here(capsys, "index", "info", str(index_dir))
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert str(index_dir) in done.stderr


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe garbage", b"", b"[" * 100_000])
def test_garbage_header_is_one_clear_line(index_dir, content, capsys):
    (index_dir / "header.json").write_bytes(content)
    with pytest.raises(IndexFormatError):
        HammingIndex.open(index_dir)
    done = cli_here(capsys, "index", "info", str(index_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
