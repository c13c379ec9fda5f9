"""Hypothesis fuzz of the index against a brute-force model, with real kills and a full disk.

A writer runs in a forked child process (a real process: SIGKILL really kills it mid-write)
and takes commands over a pipe: add (default or chosen ids, with or without metadata),
remove, reopen, compact, add with ENOSPC injected at its n-th write/fsync/rename, and add
killed after a random delay. The model applies an operation only once it was acknowledged;
an add killed in flight must be all there or not there at all. After every step a reader
that follows the writer with ``refresh()`` (and after kills a freshly opened one) must equal
the model: membership, metadata, and exact k-NN / radius / filtered search.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashlab.codes import hamming_distance_matrix
from hashlab.index import HammingIndex

N_BITS = 24
N_BYTES = N_BITS // 8


# ---------------------------------------------------------------- the writer child -----
def _writer_loop(path: str, commands: int, replies: int) -> None:
    """Runs in the forked child: execute commands until the pipe closes."""
    index = HammingIndex.open(path, mode="w")
    reader = os.fdopen(commands, "r")
    writer = os.fdopen(replies, "w")
    names = ("write", "pwrite", "fsync", "replace", "ftruncate")
    real = {name: getattr(os, name) for name in names}
    for line in reader:
        command = json.loads(line)
        fail_at = command.get("fail_at", 0)
        calls = [0]

        def failing(name, *args, _calls=calls, _fail_at=fail_at):
            _calls[0] += 1
            if _calls[0] == _fail_at:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real[name](*args)

        if fail_at:
            for name in names:
                setattr(os, name, lambda *a, _n=name: failing(_n, *a))
        try:
            if command["op"] == "add":
                codes = np.array(command["codes"], dtype=np.uint8).reshape(-1, N_BYTES)
                ids = index.add(codes, ids=command["ids"], metadata=command["metadata"])
                reply = {"ok": True, "ids": ids.tolist()}
            elif command["op"] == "remove":
                reply = {"ok": True, "n": index.remove(command["ids"])}
            elif command["op"] == "compact":
                index.save(path)
                reply = {"ok": True}
            else:
                raise AssertionError(command)
        except OSError as error:
            reply = {"ok": False, "errno": error.errno, "message": str(error)}
        finally:
            for name, function in real.items():
                setattr(os, name, function)
        writer.write(json.dumps(reply) + "\n")
        writer.flush()


class Writer:
    """The parent's handle on the writer child."""

    def __init__(self, path: str) -> None:
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            status = 0
            try:
                os.close(commands_w)
                os.close(replies_r)
                _writer_loop(path, commands_r, replies_w)
            except BaseException:  # noqa: BLE001 - report through the exit status
                import traceback

                traceback.print_exc()
                status = 1
            os._exit(status)
        os.close(commands_r)
        os.close(replies_w)
        self.commands = os.fdopen(commands_w, "w")
        self.replies = os.fdopen(replies_r, "r")

    def send(self, command: dict) -> None:
        self.commands.write(json.dumps(command) + "\n")
        self.commands.flush()

    def call(self, command: dict) -> dict:
        self.send(command)
        line = self.replies.readline()
        assert line, "the writer child died"
        return json.loads(line)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.commands.close()
        self.replies.close()

    def stop(self) -> None:
        self.commands.close()
        _, status = os.waitpid(self.pid, 0)
        self.replies.close()
        assert status == 0, f"the writer child failed (status {status})"


# ---------------------------------------------------------------- model and checks -----
class Model:
    def __init__(self) -> None:
        self.items: dict[int, tuple[bytes, dict | None]] = {}
        self.next_id = 0

    def add(self, ids, codes, metadata) -> None:
        for i, item_id in enumerate(ids):
            self.items[item_id] = (bytes(codes[i]), None if metadata is None else metadata[i])
        if ids:
            self.next_id = max(self.next_id, max(ids) + 1)


def assert_matches(index: HammingIndex, model: Model, rng: np.random.Generator) -> None:
    assert len(index) == len(model.items)
    ids = np.array(sorted(model.items), dtype=np.int64)
    assert all(int(i) in index for i in ids)
    assert index.metadata(ids) == [model.items[int(i)][1] for i in ids]
    queries = rng.integers(0, 256, (3, N_BYTES), dtype=np.uint8)
    if len(ids):
        db = np.frombuffer(b"".join(model.items[int(i)][0] for i in ids), np.uint8)
        db = db.reshape(len(ids), N_BYTES)
        dist = hamming_distance_matrix(queries, db, packed=True)
    else:
        dist = np.zeros((3, 0), dtype=np.int64)
    keep = np.array([(model.items[int(i)][1] or {}).get("g") == 1 for i in ids], dtype=bool)
    for k, radius in ((5, 6),):
        got_ids, got_d = index.search(queries, k)
        filtered_ids, _ = index.search(queries, k, filter="g == 1")
        ranges = index.range_search(queries, radius)
        for q in range(len(queries)):
            order = np.lexsort((ids, dist[q]))
            want = np.full(k, -1)
            want[: min(k, len(order))] = ids[order][:k]
            np.testing.assert_array_equal(got_ids[q], want)
            np.testing.assert_array_equal(got_d[q][: len(order)], dist[q, order][:k])
            only = order[keep[order]]
            want = np.full(k, -1)
            want[: min(k, len(only))] = ids[only][:k]
            np.testing.assert_array_equal(filtered_ids[q], want)
            inside = order[dist[q, order] <= radius]
            np.testing.assert_array_equal(ranges[q][0], ids[inside])


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 12), st.booleans(), st.booleans()),
        st.tuples(st.just("remove"), st.floats(0.0, 1.0), st.integers(0, 2**16)),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("compact")),
        st.tuples(st.just("enospc"), st.integers(1, 14), st.integers(1, 12)),
        st.tuples(st.just("kill"), st.integers(1, 12), st.floats(0.0, 0.03)),
    ),
    min_size=3,
    max_size=10,
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(operations=OPERATIONS, seed=st.integers(0, 2**16))
def test_random_operations_with_kills_and_full_disk_match_the_model(tmp_path, operations, seed):
    path = str(tmp_path / f"idx-{seed}-{time.monotonic_ns()}")
    HammingIndex.create(path, N_BITS).close()
    rng = np.random.default_rng(seed)
    model = Model()
    writer = Writer(path)
    follower = HammingIndex.open(path)
    try:
        for operation in operations:
            kind = operation[0]
            if kind in ("add", "enospc", "kill"):
                n = operation[1]
                codes = rng.integers(0, 256, (n, N_BYTES), dtype=np.uint8)
                chosen = kind != "add" or operation[2]
                if chosen:  # fresh ids, sometimes ones that were removed before
                    pool = np.setdiff1d(np.arange(3 * model.next_id + 20), list(model.items))
                    ids = sorted(rng.choice(pool, n, replace=False).tolist())
                else:
                    ids = None
                with_meta = kind != "add" or operation[3]
                metadata = (
                    [{"g": int(g), "n": int(n)} for g in rng.integers(0, 3, n)]
                    if with_meta
                    else None
                )
                command = {"op": "add", "codes": codes.tolist(), "ids": ids, "metadata": metadata}
                if kind == "enospc":
                    command["fail_at"] = operation[2]
                if kind == "kill":
                    writer.send(command)
                    time.sleep(operation[2])
                    writer.kill()
                    fresh = HammingIndex.open(path)
                    # atomic: the whole batch or none of it
                    present = [i in fresh for i in ids]
                    assert all(present) or not any(present), present
                    if all(present) and n:
                        model.add(ids, codes, metadata)
                    assert_matches(fresh, model, rng)
                    fresh.close()
                    writer = Writer(path)
                else:
                    reply = writer.call(command)
                    if reply["ok"]:
                        if ids is None:
                            assert reply["ids"] == list(range(model.next_id, model.next_id + n))
                        model.add(reply["ids"], codes, metadata)
                    else:
                        assert kind == "enospc" and reply["errno"] == errno.ENOSPC, reply
                        assert "no space left" in reply["message"]
            elif kind == "remove":
                live = sorted(model.items)
                chosen = np.random.default_rng(operation[2]).permutation(live)
                chosen = chosen[: int(operation[1] * len(live))].tolist()
                reply = writer.call({"op": "remove", "ids": chosen})
                assert reply == {"ok": True, "n": len(chosen)}, reply
                for item_id in chosen:
                    del model.items[item_id]
            elif kind == "reopen":
                writer.stop()
                writer = Writer(path)
            elif kind == "compact":
                assert writer.call({"op": "compact"}) == {"ok": True}
            follower.refresh()
            assert_matches(follower, model, rng)
        writer.stop()
        writer = None
        with HammingIndex.open(path, mode="w") as final:
            assert_matches(final, model, rng)
    finally:
        if writer is not None:
            writer.kill()
        follower.close()
