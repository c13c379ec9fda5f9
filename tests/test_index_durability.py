"""Processes sharing an index, and a full disk: no acknowledged item is ever lost.

Each test drives real processes (a writer subprocess that prints an acknowledgement after
every ``add`` returns, readers running ``hashlab index info`` beside it, a second writer) or a
real full disk (a 1 MiB tmpfs, when this machine lets us mount one), then checks from a fresh
process that every acknowledged item is there with its code and metadata.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hashlab.index import HammingIndex

N_BITS = 32
ROOT = Path(__file__).resolve().parents[1]


def batch_codes(batch: int, rows: int) -> np.ndarray:
    """Deterministic codes of batch ``batch`` (the writer and the checker agree on them)."""
    return np.random.default_rng(1000 + batch).integers(0, 256, (rows, N_BITS // 8), np.uint8)


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_index_durability import batch_codes, open_writer, N_BITS
    path, tag, n_batches, rows = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    hold, pace, compact_every = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
    index = open_writer(path)
    print("open", flush=True)
    for batch in range(n_batches):
        time.sleep(pace)
        codes = batch_codes(batch, rows)
        meta = [{"writer": tag, "batch": batch, "row": i} for i in range(rows)]
        ids = index.add(codes, metadata=meta)
        print("ack", tag, batch, int(ids[0]), len(ids), flush=True)  # add returned
        if compact_every and batch % compact_every == compact_every - 1:
            index.save(path)  # compaction in place: a new generation of files
    time.sleep(hold)
    """
)


def open_writer(path: str) -> HammingIndex:
    """The writer's way in: create the index or open it for writing."""
    if not Path(path, "header.json").exists():
        return HammingIndex.create(path, N_BITS)
    try:
        return HammingIndex.open(path, mode="w")
    except TypeError:  # the index API before writer locks had no mode
        return HammingIndex.open(path)


def start_writer(
    tmp_path: Path, path: Path, tag: str, n_batches: int, rows: int, hold=0.0, pace=0.0,
    compact_every=0,
):  # fmt: skip
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    args = [str(Path(__file__).parent), str(path), tag, str(n_batches), str(rows)]
    args += [str(hold), str(pace), str(compact_every)]
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def parse_acks(lines: list[str]) -> list[tuple[str, int, int, int]]:
    acks = []
    for line in lines:
        parts = line.split()
        if parts and parts[0] == "ack":
            acks.append((parts[1], int(parts[2]), int(parts[3]), int(parts[4])))
    return acks


def acknowledged_report(index: HammingIndex, acks) -> dict:
    """Which acknowledged items are missing, or have other metadata or another code."""
    missing = []
    for tag, batch, first, rows in acks:
        ids = list(range(first, first + rows))
        want = [{"writer": tag, "batch": batch, "row": i} for i in range(rows)]
        found = index.range_search(batch_codes(batch, rows), 0)
        for i, (item_id, meta, (hit_ids, _)) in enumerate(
            zip(ids, index.metadata(ids), found, strict=True)
        ):
            if item_id not in index or meta != want[i] or item_id not in hit_ids:
                missing.append([tag, batch, item_id, meta])
    return {"n_items": len(index), "missing": missing[:10], "n_missing": len(missing)}


CHECKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from test_index_durability import acknowledged_report
    from hashlab.index import HammingIndex
    index = HammingIndex.open(sys.argv[2])
    print(json.dumps(acknowledged_report(index, json.loads(sys.argv[3]))))
    """
)


def check_acknowledged(tmp_path: Path, path: Path, acks) -> dict:
    """Open the index in a fresh process and look for every acknowledged item."""
    script = tmp_path / "checker.py"
    script.write_text(CHECKER)
    result = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent), str(path), json.dumps(acks)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"the index no longer opens: {result.stderr.strip()[-800:]}"
    return json.loads(result.stdout)


READER_LOOP = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from hashlab.index import HammingIndex
    path, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
    opened = failures = 0
    while time.monotonic() < until:
        try:
            index = HammingIndex.open(path)
            everything = index.range_search(np.zeros((1, 4), np.uint8), 32)[0][0]
            assert len(everything) == len(index) and len(index) % 40 == 0, len(index)
            index.close()
            opened += 1
        except Exception as error:  # counted: a reader beside a writer must not fail
            failures += 1
            print(type(error).__name__, error, file=sys.stderr)
    print(opened, failures)
    """
)

FOLLOWER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from test_index_durability import acknowledged_report, N_BITS
    from hashlab.index import HammingIndex
    path, rows, total = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    until = time.monotonic() + 60
    index = HammingIndex.open(path)
    print("ready", flush=True)
    seen, changes = 0, 0
    while seen < total and time.monotonic() < until:  # follow until the writer is done
        changes += index.refresh()
        n = len(index)
        assert n >= seen and n % rows == 0, (n, seen)  # whole batches, never going back
        acks = [("w", b, b * rows, rows) for b in range(n // rows)]
        report = acknowledged_report(index, acks[-3:])  # the newest rows are fully readable
        assert report["n_missing"] == 0, report
        seen = n
    print(seen, changes)
    """
)


@pytest.mark.parametrize("compact_every", [0, 4], ids=["appends", "with-compactions"])
def test_readers_beside_a_live_writer_lose_nothing(tmp_path, compact_every):
    """Issue 15.1: ``index info`` / ``HammingIndex.open`` in a loop beside a writer.

    With compactions the files a reader's header names are deleted under it: it must retry
    (open) or reload (refresh), never fail or see a partial state.
    """
    path = tmp_path / "idx"
    HammingIndex.create(path, N_BITS).close()
    reader_script = tmp_path / "reader.py"
    reader_script.write_text(READER_LOOP)
    follower_script = tmp_path / "follower.py"
    follower_script.write_text(FOLLOWER)
    tests_dir = str(Path(__file__).parent)
    readers = [
        subprocess.Popen(
            [sys.executable, str(reader_script), str(path), "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [sys.executable, str(follower_script), tests_dir, str(path), "40", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    assert readers[1].stdout.readline().strip() == "ready", readers[1].stderr.read()
    writer = start_writer(
        tmp_path, path, "w", n_batches=25, rows=40, pace=0.02, compact_every=compact_every
    )
    assert writer.stdout.readline().strip() == "open", writer.stderr.read()
    cli_runs = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and writer.poll() is None:
        cli_runs.append(
            subprocess.run(
                [sys.executable, "-m", "hashlab", "index", "info", str(path), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
    out, err = writer.communicate(timeout=120)
    outputs = [reader.communicate(timeout=90) for reader in readers]
    acks = parse_acks(out.splitlines())
    assert writer.returncode == 0, err[-800:]
    assert len(acks) == 25
    assert readers[1].returncode == 0, outputs[1][1][-1500:]
    followed, changes = map(int, outputs[1][0].split())
    opened, failures = map(int, outputs[0][0].split())
    assert opened > 0 and failures == 0, outputs[0][1][-1500:]
    assert changes >= 1 and followed == 25 * 40  # the follower saw the writer's commits
    assert cli_runs and all(run.returncode == 0 for run in cli_runs), [
        run.stderr[-300:] for run in cli_runs if run.returncode
    ][:3]
    report = check_acknowledged(tmp_path, path, acks)
    assert report["n_missing"] == 0, report
    assert report["n_items"] == 25 * 40


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    """Issue 15.2: two writers on one directory; the second must be refused, naming the pid."""
    path = tmp_path / "idx"
    HammingIndex.create(path, N_BITS).close()
    first = start_writer(tmp_path, path, "a", n_batches=10, rows=20, hold=1.5)
    assert first.stdout.readline().strip() == "open", first.stderr.read()
    second = start_writer(tmp_path, path, "b", n_batches=10, rows=20)
    out_b, err_b = second.communicate(timeout=120)
    out_a, err_a = first.communicate(timeout=120)
    assert first.returncode == 0, err_a[-800:]
    assert second.returncode != 0, "a second writer was let in"
    assert f"pid {first.pid}" in err_b and "locked" in err_b, err_b[-800:]
    assert "Traceback" not in err_b.splitlines()[-1]
    acks = parse_acks(out_a.splitlines()) + parse_acks(out_b.splitlines())
    assert not parse_acks(out_b.splitlines())
    report = check_acknowledged(tmp_path, path, acks)
    assert report["n_missing"] == 0, report
    # once the first writer is gone, a writer gets in
    third = start_writer(tmp_path, path, "c", n_batches=1, rows=5)
    out_c, err_c = third.communicate(timeout=120)
    assert third.returncode == 0, err_c[-800:]


# ----------------------------------------------------------------- full disk -----------
def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs), or a skip where mounting is not allowed."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-ENOSPC test covers it")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk so that about ``leave`` bytes stay free."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def _is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@pytest.mark.parametrize("leave", [0, 6144, 20480])
def test_full_disk_keeps_the_last_commit_and_recovers(small_disk, tmp_path, leave):
    """Issue 15.3: ENOSPC wherever it lands keeps the last commit; adds work once space returns."""
    path = small_disk / "idx"
    index = HammingIndex.create(path, N_BITS)
    acks = []
    meta0 = [{"writer": "t", "batch": 0, "row": i} for i in range(30)]
    index.add(batch_codes(0, 30), metadata=meta0)
    acks.append(("t", 0, 0, 30))
    filler = _fill(small_disk, leave)
    failure = None
    for batch in range(1, 400):
        meta = [{"writer": "t", "batch": batch, "row": i} for i in range(30)]
        try:
            ids = index.add(batch_codes(batch, 30), metadata=meta)
        except Exception as error:  # noqa: BLE001 - what it is, is the assertion below
            failure = error
            break
        acks.append(("t", batch, int(ids[0]), 30))
    assert failure is not None, "the disk never filled"
    assert _is_disk_full(failure), f"disk full surfaced as {type(failure).__name__}: {failure}"
    assert "space" in str(failure)
    # another process opens the full index and finds every acknowledged item
    report = check_acknowledged(tmp_path, path, acks)
    assert report["n_missing"] == 0 and report["n_items"] == 30 * len(acks), report
    filler.unlink()
    for batch in range(400, 403):  # space is back: the same writer goes on
        meta = [{"writer": "t", "batch": batch, "row": i} for i in range(30)]
        ids = index.add(batch_codes(batch, 30), metadata=meta)
        acks.append(("t", batch, int(ids[0]), 30))
    index.close()
    report = check_acknowledged(tmp_path, path, acks)
    assert report["n_missing"] == 0 and report["n_items"] == 30 * len(acks), report


def test_injected_enospc_at_every_write_step(tmp_path, monkeypatch):
    """Issue 15.3 without a small disk: ENOSPC raised at the n-th write/fsync/rename of an add."""
    path = tmp_path / "idx"
    index = HammingIndex.create(path, N_BITS)
    acks = []
    meta0 = [{"writer": "t", "batch": 0, "row": i} for i in range(10)]
    index.add(batch_codes(0, 10), metadata=meta0)
    acks.append(("t", 0, 0, 10))
    names = ("write", "pwrite", "fsync", "replace", "ftruncate")
    real = {name: getattr(os, name) for name in names}
    batch = 1
    for step in range(1, 60):
        calls = {"n": 0}

        def failing(name, *args, _step=step, _calls=calls):
            _calls["n"] += 1
            if _calls["n"] == _step:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real[name](*args)

        for name in real:
            monkeypatch.setattr(os, name, lambda *a, _n=name, _f=failing: _f(_n, *a))
        meta = [{"writer": "t", "batch": batch, "row": i} for i in range(10)]
        try:
            ids = index.add(batch_codes(batch, 10), metadata=meta)
            injected = False
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
            injected = True
        else:
            acks.append(("t", batch, int(ids[0]), 10))
        for name, function in real.items():
            monkeypatch.setattr(os, name, function)
        # the very next add, with space back, must work and be durable
        batch += 1
        meta = [{"writer": "t", "batch": batch, "row": i} for i in range(10)]
        ids = index.add(batch_codes(batch, 10), metadata=meta)
        acks.append(("t", batch, int(ids[0]), 10))
        batch += 1
        with HammingIndex.open(path) as reader:  # reads the files afresh
            report = acknowledged_report(reader, acks)
        assert report["n_missing"] == 0 and report["n_items"] == 10 * len(acks), (step, report)
        if not injected:
            break  # the add made fewer calls than ``step``: every step has been hit
    assert step > 6, "the injection never reached the write path"
    index.close()
    report = check_acknowledged(tmp_path, path, acks)  # and from a fresh process
    assert report["n_missing"] == 0 and report["n_items"] == 10 * len(acks), report
