"""Index persistence: round trips, crash safety under SIGKILL, and clear errors on bad files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hashlab.index import HammingIndex, IndexFormatError

BATCH_ROWS = 20_000
N_BITS = 64


def batch_codes(batch: int) -> np.ndarray:
    """The deterministic content of batch number ``batch`` (writer and checker agree)."""
    return np.random.default_rng(batch).integers(0, 256, (BATCH_ROWS, N_BITS // 8), np.uint8)


def test_create_add_remove_reopen_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (3000, 48), dtype=np.uint8)
    index = HammingIndex.create(tmp_path / "idx", 48)
    index.add(bits[:2000], metadata=[{"path": f"{i}.jpg"} for i in range(2000)])
    index.add(bits[2000:], ids=np.arange(5000, 6000))
    assert index.remove([3, 5001]) == 2
    expected = index.search(bits[:20], 10)
    expected_range = index.range_search(bits[:5], 6)
    index.close()

    reopened = HammingIndex.open(tmp_path / "idx", mode="w")
    assert len(reopened) == 2998
    for got, want in zip(reopened.search(bits[:20], 10), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(reopened.range_search(bits[:5], 6), expected_range, strict=True):
        np.testing.assert_array_equal(got[0], want[0])
    assert reopened.metadata([0, 3, 5000]) == [{"path": "0.jpg"}, None, None]
    # a re-added id after removal survives a reopen (the tombstone only hits the old row)
    reopened.add(bits[3:4], ids=[3], metadata=[{"path": "again.jpg"}])
    reopened.close()
    again = HammingIndex.open(tmp_path / "idx")
    assert len(again) == 2999 and again.metadata([3]) == [{"path": "again.jpg"}]
    assert again.search(bits[3:4], 1)[0][0, 0] == 3


def test_save_compacts_and_in_memory_index_saves(tmp_path):
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, (4000, 32), dtype=np.uint8)
    index = HammingIndex(32)
    index.add(bits, metadata=[{"i": i} for i in range(4000)])
    index.remove(np.arange(0, 4000, 2))
    index.search(bits[:1], 1)  # rows reordered for the multi-index tables
    index.save(tmp_path / "saved")
    saved = HammingIndex.open(tmp_path / "saved", mode="w")
    assert len(saved) == 2000 and saved.info()["n_rows"] == 2000  # tombstones compacted
    for got, want in zip(saved.search(bits[:30], 5), index.search(bits[:30], 5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert saved.metadata([1, 2]) == [{"i": 1}, None]
    # saving onto its own directory compacts in place and keeps the index usable
    saved.remove([1])
    saved.save(tmp_path / "saved")
    assert len(saved) == 1999 and saved.info()["n_rows"] == 1999
    saved.add(bits[:1], ids=[1])
    assert len(HammingIndex.open(tmp_path / "saved")) == 2000


def test_large_index_is_memory_mapped(tmp_path, monkeypatch):
    import hashlab.index.storage as storage

    monkeypatch.setattr(storage, "MMAP_THRESHOLD", 1024)
    bits = np.random.default_rng(2).integers(0, 2, (1000, 64), dtype=np.uint8)
    index = HammingIndex.create(tmp_path / "idx", 64)
    index.add(bits)
    index.close()
    opened = HammingIndex.open(tmp_path / "idx", mode="w")
    assert isinstance(opened._codes, np.memmap)
    opened.add(bits[:10], ids=np.arange(2000, 2010))  # grows by remapping the files
    assert len(opened) == 1010
    np.testing.assert_array_equal(opened.search(bits[:3], 1)[1], 0)


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from hashlab.index import HammingIndex
    sys.path.insert(0, sys.argv[2])
    from test_index_storage import batch_codes, N_BITS
    path = sys.argv[1]
    try:
        index = HammingIndex.open(path, mode="w")
    except FileNotFoundError:
        index = HammingIndex.create(path, N_BITS)
    batch = index.info()["n_rows"] // len(batch_codes(0))
    while True:
        codes = batch_codes(batch)
        meta = [{"batch": batch, "row": i} for i in range(len(codes))]
        index.add(codes, metadata=meta)
        print(batch, flush=True)  # acknowledged: add returned
        batch += 1
    """
)


def test_sigkill_during_add_keeps_every_acknowledged_batch(tmp_path):
    """A real writer process is SIGKILLed mid-add, repeatedly, at varying moments."""
    path = tmp_path / "idx"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    tests_dir = str(Path(__file__).parent)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    acknowledged = -1
    rng = np.random.default_rng(0)
    for round_number in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), tests_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # wait for a few acknowledgements, then kill at a random point of a later add
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged = max(acknowledged, int(line))
            seen += 1
        assert seen == 2, proc.stderr.read()
        time.sleep(float(rng.uniform(0.0, 0.05)) * (round_number + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().split():  # lines printed before the kill landed
            acknowledged = max(acknowledged, int(line))

        index = HammingIndex.open(path)
        n_batches = index.info()["n_rows"] // BATCH_ROWS
        assert index.info()["n_rows"] % BATCH_ROWS == 0  # no half batch
        assert n_batches >= acknowledged + 1
        rows = np.arange(0, n_batches * BATCH_ROWS, 7919)
        expected = np.concatenate([batch_codes(b) for b in range(n_batches)])[rows]
        ids, dists = index.search(expected, 1)
        np.testing.assert_array_equal(dists[:, 0], 0)
        last = (n_batches - 1) * BATCH_ROWS
        assert index.metadata([last]) == [{"batch": n_batches - 1, "row": 0}]
        assert index.metadata([n_batches * BATCH_ROWS]) == [None]  # no uncommitted metadata
        index.close()


def make_index(tmp_path) -> Path:
    bits = np.random.default_rng(3).integers(0, 2, (500, 32), dtype=np.uint8)
    index = HammingIndex.create(tmp_path / "idx", 32)
    index.add(bits, metadata=[{"i": i} for i in range(500)])
    index.close()
    return tmp_path / "idx"


def test_truncated_codes_file_is_reported(tmp_path):
    path = make_index(tmp_path)
    with open(path / "codes.bin", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(IndexFormatError, match="codes.bin is truncated"):
        HammingIndex.open(path)


def test_flipped_byte_is_reported(tmp_path):
    path = make_index(tmp_path)
    data = bytearray((path / "ids.bin").read_bytes())
    data[100] ^= 0x40
    (path / "ids.bin").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="ids.bin is corrupted"):
        HammingIndex.open(path)


def test_trailing_uncommitted_bytes_are_ignored_by_readers_dropped_by_the_writer(tmp_path):
    path = make_index(tmp_path)
    with open(path / "codes.bin", "ab") as handle:
        handle.write(b"\x01\x02\x03")  # what a writer killed mid-append leaves behind
    index = HammingIndex.open(path)
    assert len(index) == 500
    assert (path / "codes.bin").stat().st_size == 500 * 4 + 3  # a reader changes nothing
    index.close()
    writer = HammingIndex.open(path, mode="w")
    assert len(writer) == 500
    assert (path / "codes.bin").stat().st_size == 500 * 4


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "faiss", "version": 1}), "not a hashlab index header"),
        (json.dumps({"format": "hashlab-hamming-index", "version": 99}), "format version 99"),
    ],
)
def test_foreign_or_broken_header_is_reported(tmp_path, content, message):
    path = make_index(tmp_path)
    (path / "header.json").write_text(content)
    with pytest.raises(IndexFormatError, match=message):
        HammingIndex.open(path)


def test_foreign_directory_and_broken_metadata(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(IndexFormatError, match="header.json is missing"):
        HammingIndex.open(tmp_path / "photos")
    with pytest.raises(FileNotFoundError, match="no index directory"):
        HammingIndex.open(tmp_path / "nowhere")
    path = make_index(tmp_path)
    for name in ("metadata.sqlite-wal", "metadata.sqlite-shm"):
        (path / name).unlink(missing_ok=True)
    (path / "metadata.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexFormatError, match="metadata.sqlite"):
        HammingIndex.open(path)


def test_create_refuses_to_overwrite(tmp_path):
    path = make_index(tmp_path)
    with pytest.raises(FileExistsError):
        HammingIndex.create(path, 32)


def test_reader_opens_a_directory_whose_name_looks_like_uri_syntax(tmp_path):
    path = tmp_path / "photos?mode=rwc #1 %41"
    index = HammingIndex.create(path, 16)
    index.add(np.zeros((1, 2), np.uint8), metadata=[{"a": 1}])
    index.close()
    assert HammingIndex.open(path).metadata([0]) == [{"a": 1}]
    assert not (tmp_path / "photos").exists()  # nothing created beside it
