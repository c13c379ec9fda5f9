"""Sharded, resumable encoding by several worker processes (hashlab.sharded_encode).

Real images: MIRFlickr thumbnails (48 of them); a small real model: ITQ on the small CNN
backbone's features. The kill test runs ``hashlab index build --workers 2`` as a real
subprocess, freezes both workers as soon as the first shard is done, SIGKILLs the one that
has done less, lets the other finish, and checks that the run fails with one line saying how
much is left; the rerun must then build an index holding every image exactly once, with the
codes of a one-process encode, and must not have recomputed the shards done before the kill
(their done markers, worker pid and finishing time, are the ones in the final record).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from hashlab.cli import main

THUMBS = SHARED_DATA / "mirflickr25k" / "thumbs"
N_IMAGES = 48


@pytest.fixture(scope="module")
def images_and_model(tmp_path_factory):
    if not THUMBS.is_dir():
        pytest.skip(f"MIRFlickr thumbnails not found at {THUMBS}")
    import hashlab
    from hashlab import pipeline
    from hashlab.backbones.features import image_features

    root = tmp_path_factory.mktemp("sharded")
    folder = root / "images"
    (folder / "b").mkdir(parents=True)
    names = sorted(os.listdir(THUMBS))[:N_IMAGES]
    for i, name in enumerate(names):  # a sub-folder too: the file list is recursive
        shutil.copy(THUMBS / name, folder / ("b" if i % 3 == 0 else "") / name)
    paths = pipeline.list_images(folder)
    model = hashlab.create("itq", n_bits=16).fit(image_features(paths, "small_cnn"))
    model.extra_config_ = {"backbone": "small_cnn"}
    model.save(root / "model")
    return folder, root / "model", paths


def _expected_codes(model_dir: Path, paths: list[Path]) -> np.ndarray:
    import hashlab
    from hashlab import pipeline

    return pipeline.encode_images(hashlab.load(model_dir), paths)


def _markers(work: Path) -> dict[int, dict]:
    found = {}
    for marker in work.glob("shard_*.done"):
        done = json.loads(marker.read_text())
        found[done["shard"]] = {k: done[k] for k in ("shard", "n", "pid", "finished_at")}
    return found


def _workers_of(pid: int) -> list[int]:
    """The encode worker processes (multiprocessing spawn children) of ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return workers


def test_encode_workers_in_process_match_the_plain_encode(images_and_model, tmp_path, capsys):
    folder, model_dir, paths = images_and_model
    assert main(["encode", str(model_dir), "--images", str(folder),
                 "--out", str(tmp_path / "plain.npy")]) == 0  # fmt: skip
    out = tmp_path / "sharded.npy"
    assert main(["encode", str(model_dir), "--images", str(folder), "--out", str(out),
                 "--workers", "1", "--shard-size", "5"]) == 0  # fmt: skip
    assert np.array_equal(np.load(out), np.load(tmp_path / "plain.npy"))
    listed = out.with_suffix(".paths.txt").read_text().split()
    assert listed == [str(p.resolve()) for p in paths] and len(set(listed)) == N_IMAGES
    record = json.loads(out.with_suffix(".shards.json").read_text())
    assert (record["n_shards"], record["shards_encoded"], record["shards_reused"]) == (10, 10, 0)
    assert not (tmp_path / ".sharded.npy.shards").exists()  # merged, then removed


def test_a_killed_worker_loses_only_its_unfinished_shards(images_and_model, tmp_path, capsys,
                                                          monkeypatch):
    folder, model_dir, paths = images_and_model
    out, work = tmp_path / "index", tmp_path / ".index.shards"
    command = [sys.executable, "-m", "hashlab", "index", "build", "--model", str(model_dir),
               "--images", str(folder), "--out", str(out), "--workers", "2",
               "--shard-size", "2"]  # fmt: skip
    env = {**os.environ, "HASHLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("HASHLAB_CACHE", env["HASHLAB_CACHE"])
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list(work.glob("shard_*.done")):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no shard was finished in time"
            time.sleep(0.002)
        workers = _workers_of(run.pid)
        assert len(workers) == 2, workers
        for pid in workers:  # freeze both, then look: nothing changes while we decide
            os.kill(pid, signal.SIGSTOP)
        frozen = _markers(work)
        per_worker = {pid: sum(m["pid"] == pid for m in frozen.values()) for pid in workers}
        victim = min(workers, key=per_worker.get)
        os.kill(victim, signal.SIGKILL)
        for pid in workers:
            if pid != victim:
                os.kill(pid, signal.SIGCONT)
        stdout, stderr = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, (stdout, stderr)
    assert "killed by signal 9" in stderr and "run the same command again" in stderr, stderr
    assert not out.exists()  # no half index
    before = _markers(work)
    n_shards = N_IMAGES // 2
    assert 0 < len(before) < n_shards  # the survivor's shards are done, the victim's are not
    assert all(m["pid"] != victim for s, m in before.items() if s not in frozen)

    # the rerun in this process (one worker: no process start-up to wait for)
    assert main([*command[3:-4], "--workers", "1", "--shard-size", "2"]) == 0
    assert f"{n_shards - len(before)} shards encoded, {len(before)} reused" in (
        capsys.readouterr().out)

    from hashlab.index import HammingIndex

    index = HammingIndex.open(out)
    try:
        assert len(index) == N_IMAGES
        ids = np.arange(N_IMAGES)
        indexed = [m["path"] for m in index.metadata(ids)]
        assert sorted(indexed) == [str(p.resolve()) for p in paths]  # each image exactly once
        expected = _expected_codes(model_dir, paths)
        found, distances = index.search(expected, N_IMAGES)
        for row, image in enumerate(paths):  # each image's own code, under its own path
            own = ids[np.array(indexed) == str(image.resolve())][0]
            assert distances[row][list(found[row]).index(own)] == 0
        build = json.loads((out / "build.json").read_text())["sharded"]
    finally:
        index.close()
    log = {entry["shard"]: entry for entry in build["shard_log"]}
    for shard, marker in before.items():  # done before the rerun: the very same results
        assert log[shard] == marker
    rerun_pids = {log[s]["pid"] for s in log if s not in before}
    assert rerun_pids == {os.getpid()}  # the rerun encoded exactly the missing shards
    assert (build["shards_reused"], build["shards_encoded"]) == (len(before),
                                                                 n_shards - len(before))
    assert not work.exists()


def test_a_work_folder_of_another_run_is_refused(images_and_model, tmp_path, capsys):
    folder, model_dir, _ = images_and_model
    out = tmp_path / "codes.npy"
    work = tmp_path / "work"
    (work).mkdir()
    (work / "plan.json").write_text(json.dumps({"version": 1, "shard_size": 7}))
    code = main(["encode", str(model_dir), "--images", str(folder), "--out", str(out),
                 "--workers", "1", "--work-dir", str(work)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "holds shards of another run" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["encode", str(model_dir), "--images", str(folder), "--out", str(out),
                 "--workers", "0"]) == 2  # fmt: skip
    assert "--workers must be a positive integer, got 0" in capsys.readouterr().err
