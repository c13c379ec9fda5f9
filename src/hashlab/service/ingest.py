"""Batch ingestion: a zip of photos or a server-side folder, added as a background job.

``POST /items/batch`` (token) takes a zip upload (field ``archive``) or JSON / a form field
``folder`` naming a folder under the server's ``--ingest-root`` (resolved, so ``..`` and
symlinks cannot leave it), plus optional ``metadata`` (a JSON object given to every item,
e.g. ``{"site": "A12", "date": "2024-05-01"}``). It answers 202 with a job id at once;
``GET /jobs/{id}`` reports progress (``done`` of ``total`` files), the ids added and, per
refused file, why (too large, not an image, a decompression bomb, ...). Photos are added in
small batches, each one index commit, so a crash or a full disk keeps every batch already
acknowledged in the job's report and nothing of the batch in flight. One job runs at a time
(across every worker of ``--workers N``). The status is also kept on disk (see
:mod:`~hashlab.service.jobs`), so any worker answers ``GET /jobs/{id}``, not only the one
running the job.

Zip members are read into memory one at a time, never extracted by name, each capped at the
upload limit (``file_size`` from the directory, then the bytes actually read), so neither
path traversal nor a zip bomb can reach the disk or the memory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashlab.service.errors import ServiceError
from hashlab.service.jobs import JobFiles, public_status, stored_record
from hashlab.service.limits import shown

__all__ = ["IngestJob", "job_status", "spool_archive", "start_job"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MAX_FILES = 20_000
BATCH = 16
MAX_REPORTED_REFUSALS = 1000
FINISHED_JOBS_KEPT = 20
_START_LOCK = threading.Lock()


@dataclass
class IngestJob:
    id: str
    source: str
    total: int = 0
    done: int = 0
    state: str = "running"  # running | done | failed
    added: list[int] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    n_refused: int = 0
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    #: reentrant: the end state is written to the status file and set here under one hold
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def refuse(self, name: str, reason: str) -> None:
        with self.lock:
            self.n_refused += 1
            if len(self.refused) < MAX_REPORTED_REFUSALS:
                self.refused.append({"file": name, "reason": reason})

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "job": self.id,
                "source": self.source,
                "state": self.state,
                "total": self.total,
                "done": self.done,
                "added": len(self.added),
                "ids": list(self.added),
                "refused": list(self.refused),
                "n_refused": self.n_refused,
                "error": self.error,
                "seconds": round((self.finished or time.time()) - self.started, 3),
            }

    def record(self, **final: Any) -> dict:
        """The status file's content (``final``: the end state, before it is set here)."""
        snapshot = {**self.snapshot(), **{k: v for k, v in final.items() if k != "finished"}}
        return stored_record(snapshot, self.started, final.get("finished", self.finished))


def _job_files(service: Any) -> JobFiles | None:
    """Where job status files live: ``.jobs`` in the upload store (None: no store)."""
    uploads = getattr(service, "uploads", None)
    return None if uploads is None else JobFiles(uploads.root / ".jobs")


def _running_here(service: Any) -> set[str]:
    return {job_id for job_id, job in list(service.jobs.items()) if job.state == "running"}


def _publish(service: Any, job: IngestJob, **final: Any) -> None:
    files = _job_files(service)
    if files is None:
        return
    try:
        files.write(job.record(**final))
    except OSError:
        pass  # a full disk fails the job's next add with 507; this worker still knows it


def job_status(service: Any, job_id: str) -> dict | None:
    """A job's report: from memory when this worker runs it, else from its status file."""
    job = service.jobs.get(job_id)
    if job is not None:
        return job.snapshot()
    files = _job_files(service)
    record = None if files is None else files.read(job_id, _running_here(service))
    return None if record is None else public_status(record)


async def spool_archive(service: Any, upload: Any, limit: int) -> Path:
    """Copy an uploaded zip to a temporary file in the upload store (chunk by chunk)."""
    store = service._require_uploads()
    store._ensure()
    path = store.tmp / f"{os.getpid()}-{secrets.token_hex(8)}.zip.part"
    written = 0
    try:
        with open(path, "xb") as stream:
            while chunk := await upload.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise ServiceError(
                        413, f"the archive is more than the limit of {limit:,} bytes"
                    )
                stream.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


Source = tuple[str, Callable[[], bytes]]


def _zip_sources(path: Path, limit: int, job: IngestJob) -> tuple[list[Source], zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ServiceError(400, f"the archive is not a readable zip file ({error})") from None
    sources: list[Source] = []
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or name.startswith("__MACOSX/") or Path(name).name.startswith("."):
            continue
        if len(sources) >= MAX_FILES:
            job.refuse(name, f"the archive has more than {MAX_FILES:,} files")
            continue
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            job.refuse(name, "not an image file (by its name)")
            continue
        if info.file_size > limit:
            job.refuse(name, f"{info.file_size:,} bytes, more than the limit of {limit:,}")
            continue

        def read(info: zipfile.ZipInfo = info) -> bytes:
            with archive.open(info) as member:
                data = member.read(limit + 1)  # the directory's size may lie
            if len(data) > limit:
                raise ServiceError(413, f"more than the limit of {limit:,} bytes")
            return data

        sources.append((name, read))
    return sources, archive


def _folder_sources(root: Path, folder: Path, limit: int, job: IngestJob) -> list[Source]:
    sources: list[Source] = []
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        try:
            real = path.resolve()
        except (OSError, RuntimeError):
            continue
        if not real.is_relative_to(root):
            job.refuse(name, "a link that leaves the ingest root")
            continue
        if not real.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            job.refuse(name, "not an image file (by its name)")
            continue
        if len(sources) >= MAX_FILES:
            job.refuse(name, f"the folder has more than {MAX_FILES:,} files")
            continue

        def read(real: Path = real) -> bytes:
            size = real.stat().st_size
            if size > limit:
                raise ServiceError(413, f"{size:,} bytes, more than the limit of {limit:,}")
            return real.read_bytes()

        sources.append((str(real), read))
    return sources


def start_job(service: Any, fields: dict[str, Any], archive: Path | None) -> dict:
    """Validate the request, then run the ingestion in a background thread."""
    from hashlab.service.limits import parse_json
    from hashlab.service.search import validate_metadata

    try:
        text = fields.get("metadata")
        metadata: Any = text
        if isinstance(text, str):
            metadata = None if not text.strip() else parse_json(text, "metadata", 64)
        base = validate_metadata(metadata)
        folder_text = fields.get("folder")
        if archive is None and folder_text in (None, ""):
            raise ServiceError(400, "send a zip file (field 'archive') or a 'folder' to ingest")
        if archive is not None and folder_text not in (None, ""):
            raise ServiceError(400, "send either a zip file or a folder, not both")
        job = IngestJob(id=secrets.token_hex(6), source="")
        limit = service.max_upload_bytes
        if archive is not None:
            sources, handle = _zip_sources(archive, limit, job)
            job.source = "zip upload"
        else:
            folder = _resolve_folder(service, folder_text)
            sources, handle = _folder_sources(service.ingest_root, folder, limit, job), None
            job.source = str(folder)
        service._require_uploads()
    except BaseException:
        if archive is not None:
            archive.unlink(missing_ok=True)
        raise
    job.total = len(sources) + job.n_refused
    job.done = job.n_refused
    files = _job_files(service)
    # the check and the registration are one step, across threads (_START_LOCK) and across
    # the workers of --workers N (the .jobs folder's flock): one job at a time
    with _START_LOCK, files.start_lock() if files is not None else _no_lock():
        here = _running_here(service)
        elsewhere = files is not None and any(
            record.get("state") == "running" for record in files.records(here)
        )
        if here or elsewhere:
            if handle is not None:
                handle.close()
            if archive is not None:
                archive.unlink(missing_ok=True)
            raise ServiceError(409, "a batch job is already running; wait for it to finish")
        _forget_old_jobs(service)
        if files is not None:
            files.forget_old(FINISHED_JOBS_KEPT, here)
        service.jobs[job.id] = job
        _publish(service, job)
    thread = threading.Thread(
        target=_run, args=(service, job, sources, base, handle, archive), daemon=True,
        name=f"hashlab-ingest-{job.id}",
    )  # fmt: skip
    thread.start()
    return {"job": job.id, "status_url": f"/jobs/{job.id}", "total": job.total}


def _resolve_folder(service: Any, text: Any) -> Path:
    if service.ingest_root is None:
        raise ServiceError(403, "folder ingestion is off: start the server with --ingest-root DIR")
    if not isinstance(text, str) or "\x00" in text:
        raise ServiceError(400, "folder must be a path (a string)")
    root = service.ingest_root
    folder = (root / text).resolve()  # an absolute text replaces root: checked just below
    if not folder.is_relative_to(root):
        raise ServiceError(403, f"folder {shown(text)} is outside the ingest root {root}")
    if not folder.is_dir():
        raise ServiceError(404, f"folder {shown(text)} does not exist under the ingest root")
    return folder


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _forget_old_jobs(service: Any) -> None:
    finished = [job for job in service.jobs.values() if job.state != "running"]
    for job in sorted(finished, key=lambda j: j.started)[: -FINISHED_JOBS_KEPT or None]:
        service.jobs.pop(job.id, None)


def _batches(sources: list[Source]) -> Iterator[list[Source]]:
    for start in range(0, len(sources), BATCH):
        yield sources[start : start + BATCH]


def _run(
    service: Any,
    job: IngestJob,
    sources: list[Source],
    base: dict,
    handle: zipfile.ZipFile | None,
    archive: Path | None,
) -> None:
    # what a BaseException (the server stopping) leaves the job as
    state, error_text = "failed", "the server stopped before the job finished"
    try:
        for batch in _batches(sources):
            photos, images, metas = [], [], []
            for name, read in batch:
                try:
                    data = read()
                    images.append(service.decode(data, what="file"))
                except ServiceError as error:
                    job.refuse(name, error.message)
                    with job.lock:
                        job.done += 1
                    continue
                except OSError as error:
                    job.refuse(name, f"cannot be read ({error.strerror or error})")
                    with job.lock:
                        job.done += 1
                    continue
                photos.append(data)
                metas.append({**base, "source": name})
            if photos:
                codes = service.encode_images(images)
                new_ids = service.add_encoded(codes, photos, metas)
                with job.lock:
                    job.added.extend(new_ids)
                    job.done += len(photos)
            _publish(service, job)  # other workers see the progress batch by batch
        state, error_text = "done", None
    except ServiceError as error:
        state, error_text = "failed", error.message
    except Exception as error:  # noqa: BLE001 - the report says it; the server goes on
        state = "failed"
        error_text = f"internal error ({type(error).__name__}: {shown(str(error), 200)})"
    finally:
        finished = time.time()
        # file and memory change under one hold of the lock this worker's answers take: no
        # worker reports "running" after any worker said the job ended
        with job.lock:
            _publish(service, job, state=state, error=error_text, finished=finished)
            job.error, job.state, job.finished = error_text, state, finished
        if handle is not None:
            handle.close()
        if archive is not None:
            archive.unlink(missing_ok=True)
