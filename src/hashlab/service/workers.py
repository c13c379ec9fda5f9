"""``hashlab serve --workers N``: N server processes over one index directory.

Why our own supervisor rather than uvicorn's ``workers=N``: uvicorn's needs an import string
and a configuration it can pickle into spawned children, while ``hashlab serve`` builds its
app from command-line state (the model, the limits, a guarded h11 protocol class made at run
time). Here the parent binds the listening socket, forks N children before it has loaded
any model (no torch threads to inherit), and each child builds its own service and runs a
uvicorn ``Server`` on the shared socket (the kernel hands each new connection to one of
them). A child that dies (a crash, ``kill -9``) is replaced; SIGTERM / SIGINT to the parent
stop every child gracefully.

How N processes share one index (see :class:`~hashlab.service.search.SearchService`): every
worker holds a reader (``HammingIndex.open(mode="r")``) and catches up with the commits
before each request (a ``stat`` of the header, a read only when it changed); a write takes
the index's exclusive writer lock for its own duration (open ``mode="w"``, add or remove,
close) with a bounded wait, and answers 503 with ``Retry-After`` when the lock stays busy.
Every acknowledged write was committed (fsynced) by the index before the answer, so killing
any worker at any moment loses nothing acknowledged; the next writer drops what a killed
one left uncommitted.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable

__all__ = ["bind_socket", "supervise"]

#: a worker that dies this soon after it started counts as failing to start
START_FAILURE_S = 10.0
#: after this many start failures in a row the supervisor gives up (a bad model, ...)
MAX_START_FAILURES = 3
#: seconds the children get to finish their requests after SIGTERM, then SIGKILL
STOP_GRACE_S = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (bound once, by the parent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _say(message: str) -> None:
    print(f"hashlab serve: {message}", file=sys.stderr, flush=True)


def supervise(
    n_workers: int, sock: socket.socket, run_worker: Callable[[socket.socket], None]
) -> int:
    """Keep ``n_workers`` forked children running ``run_worker(sock)``; returns the exit code.

    Returns 0 after SIGTERM / SIGINT (children stopped), 1 when workers keep failing to
    start (their own stderr says why).
    """
    children: dict[int, float] = {}  # pid -> start time
    stopping = False
    failures = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signal handling, uvicorn installs its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                run_worker(sock)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException as error:  # noqa: BLE001 - the child reports and exits
                _say(f"worker {os.getpid()} failed: {type(error).__name__}: {error}")
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(n_workers):
        spawn()
    _say(f"{n_workers} workers (pids {sorted(children)}) on {sock.getsockname()[:2]}")
    code = 0
    try:
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                time.sleep(0.1)
                continue
            started = children.pop(pid, None)
            if started is None:
                continue
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exit code {os.WEXITSTATUS(status)}"
            )
            failures = failures + 1 if time.monotonic() - started < START_FAILURE_S else 0
            if failures >= MAX_START_FAILURES:
                _say(f"worker {pid} ended ({how}); workers keep failing to start, stopping")
                code = 1
                break
            spawn()
            _say(f"worker {pid} ended ({how}); started worker {max(children, key=children.get)}")
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in children:  # still there after the grace period
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        sock.close()
    return code
