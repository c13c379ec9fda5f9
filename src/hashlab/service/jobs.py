"""Batch job status on disk, so every worker of ``hashlab serve --workers N`` knows each job.

A job runs in the memory of the worker that accepted it; any other worker may answer
``GET /jobs/{id}``. So the running worker writes the job's status as a small JSON file,
``<upload store>/.jobs/<id>.json``, when the job starts, after every committed batch and when
it ends, each time as a temporary file renamed over the old one (``os.replace``), so a reader
sees one whole status or the previous one, never a torn file. The file records the pid of the
worker running it: a ``running`` job whose worker is gone (killed, restarted) is reported as
``failed``, and no longer keeps new jobs from starting. Starting a job (the "one job at a
time" check, then the job's first file) holds an ``flock`` on ``.jobs/.lock``, so two workers
cannot both start one.

The files live in the upload store because a batch job needs that store anyway (its photos go
there) and it is the folder the server already writes; no status file grows past a few
hundred kB (the refusals reported are capped, see :mod:`~hashlab.service.ingest`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["JobFiles", "public_status", "stored_record"]

JOB_ID = re.compile(r"[0-9a-f]{12}")  # secrets.token_hex(6): anything else is no job of ours
#: fields of a status file that are the server's own, not part of the HTTP answer
PRIVATE = ("pid", "started", "finished")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def public_status(record: dict) -> dict:
    """The HTTP answer for a stored record (the same fields ``IngestJob.snapshot`` gives)."""
    finished = record.get("finished")
    answer = {key: value for key, value in record.items() if key not in PRIVATE}
    answer["seconds"] = round((finished or time.time()) - float(record["started"]), 3)
    return answer


class JobFiles:
    """The ``.jobs`` folder of one upload store."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_of(self, job_id: str) -> Path | None:
        return self.root / f"{job_id}.json" if JOB_ID.fullmatch(job_id) else None

    def write(self, record: dict) -> None:
        """Replace the job's status file atomically (temporary file + ``os.replace``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path_of(record["job"])
        if target is None:
            raise ValueError(f"not a job id: {record['job']!r}")
        temporary = self.root / f".{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            temporary.write_text(json.dumps(record), encoding="utf-8")
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def read(self, job_id: str, live_here: set[str] | None = None) -> dict | None:
        """The stored record of ``job_id`` (None when unknown); an orphaned run is failed.

        ``live_here``: ids of the jobs this process is running (a record that names this
        pid but is not among them was left by an earlier process with the same pid).
        """
        path = self.path_of(job_id)
        if path is None:
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # gone (forgotten), or not ours
        if not isinstance(record, dict) or record.get("job") != job_id:
            return None
        if record.get("state") == "running" and not self._alive(record, live_here or set()):
            record["state"] = "failed"
            record["error"] = "the server process running this job ended before it finished"
            record["finished"] = record.get("finished") or record["started"]
        return record

    @staticmethod
    def _alive(record: dict, live_here: set[str]) -> bool:
        pid = record.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        if pid == os.getpid():
            return record["job"] in live_here
        return _pid_alive(pid)

    def records(self, live_here: set[str]) -> Iterator[dict]:
        if not self.root.is_dir():
            return
        for path in self.root.glob("*.json"):
            record = self.read(path.stem, live_here)
            if record is not None:
                yield record

    @contextmanager
    def start_lock(self) -> Iterator[None]:
        """Held while one process checks that no job runs and registers its own."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def forget_old(self, keep: int, live_here: set[str]) -> None:
        """Remove all but the ``keep`` most recent finished jobs' files."""
        finished = [r for r in self.records(live_here) if r.get("state") != "running"]
        finished.sort(key=lambda r: float(r.get("started") or 0.0))
        for record in finished[: -keep or None]:
            path = self.path_of(record["job"])
            if path is not None:
                path.unlink(missing_ok=True)


def stored_record(snapshot: dict, started: float, finished: float | None) -> dict[str, Any]:
    """A status file's content: the public snapshot plus what a reader needs to age it."""
    record = {key: value for key, value in snapshot.items() if key != "seconds"}
    record.update(pid=os.getpid(), started=started, finished=finished)
    return record
