"""Compaction (``save()`` onto the index's own directory) survives a kill between any two steps.

A writer subprocess compacts an index and is SIGKILLed at its n-th file-system step (write,
fsync, rename, unlink), for every n the compaction takes; afterwards the directory must open
(as a reader, then as a writer) with every acknowledged live item, its code and metadata, and
none of the removed ones; the writer's open cleans what the killed compaction left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from hashlab.index import HammingIndex

N_BITS = 32
N_ITEMS = 300
REMOVED = list(range(0, N_ITEMS, 3))

# one driver process forks a fresh child per kill point (a real process, really SIGKILLed;
# forking spares the import of numpy and hashlab per child)
COMPACTOR = textwrap.dedent(
    """
    import json, os, shutil, signal, sys
    sys.path.insert(0, sys.argv[1])
    from test_index_durability import open_writer
    base, work = sys.argv[2], sys.argv[3]

    def compact(path, kill_at, count_file=None):
        index = open_writer(path)
        calls = [0]

        def counted(function):
            def wrapper(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(*args, **kwargs)
            return wrapper

        for name in ("write", "pwrite", "fsync", "replace", "rename", "unlink", "rmdir"):
            setattr(os, name, counted(getattr(os, name)))
        index.save(path)
        if count_file:
            with open(count_file, "w") as handle:
                handle.write(str(calls[0]))

    def in_child(path, kill_at, count_file=None):
        pid = os.fork()
        if pid == 0:
            try:
                compact(path, kill_at, count_file)
            finally:
                os._exit(0)
        return os.waitpid(pid, 0)[1]

    dry = os.path.join(work, "dry")
    shutil.copytree(base, dry)
    in_child(dry, 0, os.path.join(work, "count"))
    n_steps = int(open(os.path.join(work, "count")).read())
    statuses = {}
    for kill_at in range(1, n_steps + 1):
        path = os.path.join(work, f"kill{kill_at}")
        shutil.copytree(base, path)
        status = in_child(path, kill_at)
        statuses[kill_at] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    print(json.dumps({"n_steps": n_steps, "signals": statuses}))
    """
)


def codes_of(ids) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (N_ITEMS, N_BITS // 8), np.uint8)[ids]


def build(path: Path) -> None:
    index = HammingIndex.create(path, N_BITS)
    for start in range(0, N_ITEMS, 100):
        ids = list(range(start, start + 100))
        index.add(codes_of(ids), metadata=[{"i": i} for i in ids])
    index.remove(REMOVED)
    index.close()


def check(path: Path) -> None:
    live = [i for i in range(N_ITEMS) if i not in REMOVED]
    for mode in ("r", "w"):
        try:
            index = HammingIndex.open(path, mode=mode)
        except TypeError:  # the index API before writer locks
            index = HammingIndex.open(path)
        assert len(index) == len(live)
        assert all(i not in index for i in REMOVED)
        assert index.metadata(live) == [{"i": i} for i in live]
        hits = index.range_search(codes_of(live), 0)
        assert all(i in found for i, (found, _) in zip(live, hits, strict=True))
        if mode == "w":
            assert index.add(codes_of([1]), metadata=[{"again": 1}]).tolist() == [N_ITEMS]
        index.close()


def test_compaction_killed_at_every_step_keeps_every_acknowledged_item(tmp_path):
    base = tmp_path / "base"
    build(base)
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "compactor.py"
    script.write_text(COMPACTOR)
    tests = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, str(script), tests, str(base), str(work)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    result = json.loads(done.stdout.splitlines()[-1])
    n_steps = result["n_steps"]
    assert n_steps >= 6, n_steps  # writes, fsyncs, renames and unlinks were all counted
    check(work / "dry")
    assert list(result["signals"].values()) == [signal.SIGKILL] * n_steps, result
    for kill_at in range(1, n_steps + 1):
        path = work / f"kill{kill_at}"
        check(path)  # the reader, then the writer (which cleans up), then an add
        stray = [p.name for p in path.iterdir() if p.name.startswith(".") or "tmp" in p.name]
        assert not stray, (kill_at, stray)


CREATOR = textwrap.dedent(
    """
    import json, os, signal, sys
    from hashlab.index import HammingIndex
    work, n_max = sys.argv[1], int(sys.argv[2])

    def create(path, kill_at):
        calls = [0]

        def counted(function):
            def wrapper(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(*args, **kwargs)
            return wrapper

        for name in ("write", "pwrite", "fsync", "replace", "rename", "unlink", "mkdir"):
            setattr(os, name, counted(getattr(os, name)))
        HammingIndex.create(path, 32)
        return calls[0]

    statuses = {}
    for kill_at in range(1, n_max + 1):
        pid = os.fork()
        if pid == 0:
            create(os.path.join(work, f"kill{kill_at}"), kill_at)
            os._exit(0)
        status = os.waitpid(pid, 0)[1]
        statuses[kill_at] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        if statuses[kill_at] == 0:
            break  # create finished before the kill point: every step has been hit
    print(json.dumps(statuses))
    """
)


def test_create_killed_at_every_step_can_be_redone(tmp_path):
    """A create killed before its header leaves a directory that a new create may reuse."""
    script = tmp_path / "creator.py"
    script.write_text(CREATOR)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(work), "30"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-1500:]
    statuses = json.loads(done.stdout)
    assert 0 in statuses.values(), "create took more than 30 steps: raise the bound"
    for kill_at, status in statuses.items():
        path = work / f"kill{kill_at}"
        if status == 0 or (path / "header.json").exists():
            assert len(HammingIndex.open(path)) == 0  # committed: an empty index
            continue
        if path.exists():
            try:
                HammingIndex.open(path)
                raise AssertionError("an index without a header opened")
            except (FileNotFoundError, ValueError) as error:
                assert "header.json is missing" in str(error) or "no index" in str(error)
        index = HammingIndex.create(path, 32)  # redoing the create works
        index.add(np.zeros((1, 4), np.uint8))
        index.close()
        assert len(HammingIndex.open(path)) == 1
    (work / "photos").mkdir()
    (work / "photos" / "a.jpg").write_bytes(b"x")
    try:
        HammingIndex.create(work / "photos", 32)
        raise AssertionError("create took over a folder of photos")
    except FileExistsError:
        pass
