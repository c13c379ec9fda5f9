"""Encode a large image folder with several workers, resumably, then merge (one index).

The sorted file list of the folder (:func:`hashlab.pipeline.list_images`) is cut into shards
of ``shard_size`` images. Workers (``workers`` processes started here, or the ranks of a
``torchrun`` launch) take the shards that are not done yet, round robin, and encode them with
:func:`hashlab.pipeline.encode_images`. The work folder holds:

* ``plan.json``: what is being encoded (model, folder, a digest of the file list, shard size).
  A rerun with another plan is refused instead of mixing shards of two runs;
* per shard ``shard_00012.npz`` (the codes and the paths they belong to) and then
  ``shard_00012.done`` (image count, sha256 of the npz, the worker's pid and finishing time).
  Both are written under a temporary name, fsynced and renamed, so a killed worker leaves a
  shard either done or absent, never half-written. A shard counts as done only when its
  marker's digest and paths match, so a damaged shard is redone rather than trusted.

A killed worker (or any failure) loses only the shards it had not finished: the run stops
with :class:`ShardedEncodeIncomplete` naming what is left, and the same command resumes
where it stopped (done shards are read back, not recomputed). When every shard is done the
shards are merged in order (every image exactly once, checked against the plan) into a codes
file or a new index, with a record naming, per shard, the worker that encoded it; then the
work folder is removed. The parent shows one progress bar (images, rate, ETA) for all workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.errors import HashlabRuntimeError, HashlabValueError

__all__ = [
    "ShardedEncodeIncomplete",
    "ShardedResult",
    "build_index_sharded",
    "default_work_dir",
    "encode_folder_sharded",
    "write_codes",
]

PLAN_FILE = "plan.json"
DEFAULT_SHARD_SIZE = 256


class ShardedEncodeIncomplete(HashlabRuntimeError):
    """Some shards are not done (a worker died or failed); rerun the same command."""


@dataclass
class ShardedResult:
    """The merged outcome of a sharded encode."""

    codes: np.ndarray  # (N, K) uint8 0/1, in the sorted file order
    paths: list[str]  # absolute, sorted
    shards: list[dict[str, Any]]  # the done marker of every shard, in order
    shard_size: int
    reused: int  # shards that were already done when this run started
    encoded: int  # shards encoded by this run
    workers: int
    seconds: float
    work_dir: str = ""

    def record(self) -> dict[str, Any]:
        """JSON summary (no codes): shard counts and who encoded each shard."""
        return {
            "n_images": len(self.paths), "workers": self.workers,
            "shard_size": self.shard_size,
            "n_shards": len(self.shards), "shards_reused": self.reused,
            "shards_encoded": self.encoded, "seconds": round(self.seconds, 3),
            "shard_log": [{k: s[k] for k in ("shard", "n", "pid", "finished_at")}
                          for s in self.shards],
        }  # fmt: skip


# -- the work folder ------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _shard_name(shard: int) -> str:
    return f"shard_{shard:05d}"


def _plan(model_dir: Path, folder: Path, paths: list[str], shard_size: int) -> dict[str, Any]:
    digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()
    config = model_dir / "config.json"
    model_digest = hashlib.sha1(config.read_bytes()).hexdigest() if config.is_file() else None
    return {"version": 1, "model": str(model_dir), "model_config_sha1": model_digest,
            "images": str(folder), "n_images": len(paths), "paths_sha1": digest,
            "shard_size": shard_size}  # fmt: skip


def _prepare(work: Path, plan: dict[str, Any]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    plan_file = work / PLAN_FILE
    if plan_file.is_file():
        existing = json.loads(plan_file.read_text())
        if existing != plan:
            changed = sorted(k for k in plan if existing.get(k) != plan[k])
            raise HashlabValueError(
                f"work folder {work} holds shards of another run (its {', '.join(changed)} "
                "differ); remove it or choose another work folder"
            )
        return
    _atomic_write(plan_file, json.dumps(plan, indent=2).encode())


def _shard_paths(paths: list[str], shard_size: int, shard: int) -> list[str]:
    return paths[shard * shard_size : (shard + 1) * shard_size]


def _read_done(work: Path, shard: int, expected: list[str]) -> dict[str, Any] | None:
    """The shard's marker when the shard is done and intact, else None (to be redone)."""
    marker = work / f"{_shard_name(shard)}.done"
    data_file = work / f"{_shard_name(shard)}.npz"
    try:
        done = json.loads(marker.read_text())
        data = data_file.read_bytes()
    except (OSError, ValueError):
        return None
    if done.get("sha256") != hashlib.sha256(data).hexdigest() or done.get("paths") != expected:
        return None
    return done


def _write_shard(work: Path, shard: int, paths: list[str], codes: np.ndarray) -> dict[str, Any]:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, codes=np.ascontiguousarray(codes, dtype=np.uint8), paths=np.array(paths))
    data = buffer.getvalue()
    _atomic_write(work / f"{_shard_name(shard)}.npz", data)
    done = {"shard": shard, "n": len(paths), "sha256": hashlib.sha256(data).hexdigest(),
            "pid": os.getpid(), "finished_at": time.time(), "paths": paths}  # fmt: skip
    # the marker last: a shard whose marker exists has its data on disk
    _atomic_write(work / f"{_shard_name(shard)}.done", json.dumps(done).encode())
    return done


def _encode_shards(
    model_dir: str, work: str, paths: list[str], shard_size: int, shards: Sequence[int],
    report: Any = None,
) -> None:  # fmt: skip
    """A worker's loop: encode each of ``shards``, write it, report its image count."""
    import hashlab
    from hashlab import pipeline
    from hashlab.backbones import create_backbone

    model = hashlab.load(model_dir)
    backbone = None
    if model.input_kind in ("features", "feature_maps", "paired_text"):
        backbone = create_backbone(pipeline.model_backbone(model))  # built once per worker
    for shard in shards:
        batch = _shard_paths(paths, shard_size, shard)
        codes = pipeline.encode_images(model, batch, backbone=backbone)
        _write_shard(Path(work), shard, batch, codes)
        if report is not None:
            report(len(batch))


def _worker_process(
    model_dir: str, work: str, paths: list[str], shard_size: int, shards: list[int],
    threads: int, events: Any,
) -> None:  # fmt: skip
    import torch

    torch.set_num_threads(threads)  # N workers share the cores instead of N x all of them
    try:
        _encode_shards(model_dir, work, paths, shard_size, shards,
                       report=lambda n: events.send(("images", n)))  # fmt: skip
    except BaseException as error:  # reported to the parent, which says what is left
        name = multiprocessing.current_process().name
        events.send(("error", f"worker {name} failed: {type(error).__name__}: {error}"))
        raise SystemExit(1) from None


# -- running the workers ------------------------------------------------------------------
def _run_processes(
    model_dir: Path, work: Path, paths: list[str], shard_size: int, pending: list[int],
    workers: int, bar: Any,
) -> list[str]:  # fmt: skip
    """Start the worker processes, feed the bar, return what went wrong (empty: nothing)."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # no forked torch / thread state
    threads = max(1, (os.cpu_count() or 1) // workers)
    processes, readers = [], []
    for worker in range(workers):
        mine = pending[worker::workers]
        if not mine:
            continue
        # one pipe per worker, not a shared queue: a worker killed while holding a shared
        # queue's lock would block the others forever
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_process, name=f"hashlab-encode-{worker}",
            args=(str(model_dir), str(work), paths, shard_size, mine, threads, writer),
        )  # fmt: skip
        process.start()
        writer.close()  # the worker holds the only writer: its death ends the pipe
        processes.append(process)
        readers.append(reader)
    problems: list[str] = []
    while readers:
        for reader in wait(readers, timeout=1.0):
            try:
                kind, value = reader.recv()
            except (EOFError, OSError):  # the worker is gone (finished or killed)
                readers.remove(reader)
                continue
            if kind == "images":
                bar.update(value)
            else:
                problems.append(value)
    for process in processes:
        process.join()
        if process.exitcode != 0 and not any(process.name in p for p in problems):
            how = (f"was killed by signal {-process.exitcode}" if process.exitcode < 0
                   else f"exited with status {process.exitcode}")  # fmt: skip
            problems.append(f"worker {process.name} (pid {process.pid}) {how}")
    return problems


def _run_rank(
    model_dir: Path, work: Path, paths: list[str], shard_size: int, pending: list[int], bar: Any,
) -> list[str]:  # fmt: skip
    """Under torchrun: this rank encodes its share, then waits for the others."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    problems: list[str] = []

    def report(_: int) -> None:  # rank 0's bar counts every rank's finished shards
        bar.n = min(len(paths), len(list(work.glob("shard_*.done"))) * shard_size)
        bar.refresh()

    try:
        _encode_shards(str(model_dir), str(work), paths, shard_size, pending[rank::world],
                       report=report)  # fmt: skip
        failed = 0
    except Exception as error:  # the other ranks must still reach the barrier
        problems.append(f"rank {rank}: {type(error).__name__}: {error}")
        failed = 1
    import torch

    flag = torch.tensor([failed])
    dist.all_reduce(flag)
    if int(flag) and not problems:
        problems.append(f"{int(flag)} other rank(s) failed")
    return problems


# -- the public entry points ----------------------------------------------------------------
def encode_folder_sharded(
    model_dir: str | Path,
    images: str | Path,
    work_dir: str | Path,
    workers: int = 2,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
) -> ShardedResult | None:
    """Codes of every image under ``images``, encoded by ``workers`` processes in shards.

    Under torchrun the ranks are the workers (``workers`` is ignored) and rank 0 returns the
    result, the other ranks None. Raises :class:`ShardedEncodeIncomplete` when a worker died
    or failed: the shards it finished are kept and the same call resumes from them.
    """
    from tqdm.auto import tqdm

    from hashlab import pipeline
    from hashlab.train.distributed import init_process_group

    if workers < 1:
        raise HashlabValueError(f"workers must be at least 1, got {workers}")
    if shard_size < 1:
        raise HashlabValueError(f"shard size must be positive, got {shard_size}")
    started = time.perf_counter()
    model_dir, folder, work = Path(model_dir).resolve(), Path(images).resolve(), Path(work_dir)
    if not (model_dir / "config.json").is_file():
        raise HashlabValueError(f"{model_dir} is not a saved model directory (no config.json)")
    paths = [str(p) for p in pipeline.list_images(folder)]
    if not paths:
        raise HashlabValueError(f"no images ({', '.join(pipeline.IMAGE_SUFFIXES)}) under {folder}")
    plan = _plan(model_dir, folder, paths, shard_size)
    env = init_process_group()
    if env is None or env.rank == 0:
        _prepare(work, plan)
    if env is not None:
        import torch.distributed as dist

        dist.barrier()  # the plan exists before any rank reads the folder
        _prepare(work, plan)  # the same check on every rank

    n_shards = -(-len(paths) // shard_size)
    expected = [_shard_paths(paths, shard_size, s) for s in range(n_shards)]
    done = {s: d for s in range(n_shards) if (d := _read_done(work, s, expected[s])) is not None}
    pending = [s for s in range(n_shards) if s not in done]
    n_workers = env.world_size if env is not None else workers
    show = progress and (env is None or env.rank == 0)
    with tqdm(total=len(paths), initial=sum(len(expected[s]) for s in done), unit="img",
              desc=f"encoding ({n_workers} workers)", disable=not show,
              smoothing=0.1) as bar:  # fmt: skip
        if not pending:
            problems: list[str] = []
        elif env is not None:
            problems = _run_rank(model_dir, work, paths, shard_size, pending, bar)
        elif workers == 1:  # in this process: still sharded, so still resumable
            _encode_shards(str(model_dir), str(work), paths, shard_size, pending, bar.update)
            problems = []
        else:
            problems = _run_processes(model_dir, work, paths, shard_size, pending, workers, bar)
    if env is not None and env.rank != 0:
        if problems:
            raise ShardedEncodeIncomplete("; ".join(problems))
        return None
    markers = [_read_done(work, s, expected[s]) for s in range(n_shards)]
    left = [s for s, m in enumerate(markers) if m is None]
    if problems or left:
        raise ShardedEncodeIncomplete(
            f"{len(left)} of {n_shards} shards are not encoded ({'; '.join(problems) or 'unknown'}"
            f"); the {n_shards - len(left)} done are kept in {work}: run the same command again "
            "to encode the rest"
        )
    codes, merged = [], []
    for shard in range(n_shards):
        with np.load(work / f"{_shard_name(shard)}.npz", allow_pickle=False) as data:
            codes.append(data["codes"])
            merged.extend(str(p) for p in data["paths"])
    if merged != paths:  # every image exactly once, in the sorted order
        raise HashlabRuntimeError(f"the shards in {work} do not cover {folder} exactly once")
    return ShardedResult(
        codes=np.concatenate(codes), paths=paths, shards=[m for m in markers if m],
        shard_size=shard_size, reused=len(done), encoded=len(pending), workers=n_workers,
        seconds=time.perf_counter() - started, work_dir=str(work),
    )  # fmt: skip


def default_work_dir(out: str | Path) -> Path:
    """``.NAME.shards`` beside the output: where the shards of an encode of ``out`` live."""
    out = Path(out)
    return out.with_name(f".{out.name}.shards")


def write_codes(result: ShardedResult, out: str | Path) -> Path:
    """``out`` (.npy codes), ``out``'s ``.paths.txt`` and ``.shards.json``; atomic each."""
    import io

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, result.codes)
    _atomic_write(out, buffer.getvalue())
    _atomic_write(out.with_suffix(".paths.txt"), "".join(f"{p}\n" for p in result.paths).encode())
    _atomic_write(out.with_suffix(".shards.json"), json.dumps(result.record(), indent=2).encode())
    return out


def build_index_sharded(
    model_dir: str | Path,
    images: str | Path,
    out: str | Path,
    metadata_csv: str | Path | None = None,
    workers: int = 2,
    shard_size: int = DEFAULT_SHARD_SIZE,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[Any, ShardedResult] | None:
    """:func:`hashlab.pipeline.build_index` with the encoding done by sharded workers.

    The index is built from the merged codes under ``.NAME.partial`` and renamed when
    complete; ``build.json`` gains a ``sharded`` entry (shard counts, who encoded each).
    Returns (build record, sharded result) on rank 0 / a single process, else None.
    """
    import hashlab
    from hashlab import pipeline
    from hashlab.index import HammingIndex

    out = Path(out)
    if out.exists():
        raise HashlabValueError(f"{out} already exists: choose a new index directory")
    folder = Path(images).resolve()
    extra = pipeline.read_metadata_csv(metadata_csv, folder) if metadata_csv else {}
    work = Path(work_dir) if work_dir else default_work_dir(out)
    result = encode_folder_sharded(model_dir, folder, work, workers, shard_size, progress)
    if result is None:
        return None
    model = hashlab.load(model_dir)
    record = pipeline.BuildRecord(
        model=str(Path(model_dir).resolve()), images=str(folder), n_images=len(result.paths),
        n_bits=model.n_bits, method=model.name, backbone=pipeline.model_backbone(model),
        metadata_csv=None if metadata_csv is None else str(Path(metadata_csv).resolve()),
        seconds=round(result.seconds, 3),
    )  # fmt: skip
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier merge that was interrupted
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        index = HammingIndex.create(partial, model.n_bits)
        try:
            for start in range(0, len(result.paths), 10_000):
                rows = result.paths[start : start + 10_000]
                metadata = [{"path": p} | extra.get(str(Path(p).resolve()), {}) for p in rows]
                index.add(result.codes[start : start + len(rows)], metadata=metadata)
        finally:
            index.close()
        build = {**record.to_json(), "sharded": result.record()}
        (partial / pipeline.BUILD_RECORD).write_text(json.dumps(build, indent=2))
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)  # merged: the shards are no longer needed
    return record, result
