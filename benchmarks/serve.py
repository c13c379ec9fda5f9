"""Load test of the search service (``hashlab serve``) on loopback.

The script builds a deployment in a temporary folder, starts ``hashlab serve`` on it as a
user would (a subprocess on 127.0.0.1, one uvicorn worker) and drives it with N concurrent
clients (asyncio + httpx, one keep-alive connection each), one phase per query type, each
bounded by ``--seconds`` of wall clock:

* index: ``--n-items`` uniformly random ``--bits``-bit codes (default 1M x 64 bits), each
  with a small metadata record ({"title", "lat", "lon"}) in the index's SQLite store;
* model: ITQ fitted on ``--backbone`` features of scikit-learn digits (real images, real
  network: EfficientNet-Lite0 by default), so image queries pay the real decoding + CNN;
* hex-code queries: ``POST /search`` JSON {"code", "k"}, random codes (index search, metadata
  read and HTTP dominate);
* image queries: ``POST /search`` multipart PNG uploads of digits not used for fitting
  (decoding and the backbone dominate).

Reported per phase: completed requests, errors, QPS (completed / wall time of the phase),
client-side latency p50 / p99 (request sent to response read), and the CPU seconds the
server and the client process used per wall second (cores busy): client and server share
this machine's cores, so a load generator that needs a core of its own shows up there. The
code phase also reports the server's own search latency (``/stats``: index search + metadata read,
lock held, queueing excluded; last 2,000).

    python benchmarks/serve.py                      # 1M x 64 bits, k = 10, 8 clients, 20 s
    python benchmarks/serve.py --n-items 100000 --seconds 5 --out /tmp/serve.md   # quick

``--soak`` runs one bounded mixed phase instead (``--seconds`` long, ``--clients`` workers):
each request is drawn from a fixed mix (hex-code k-NN, filtered k-NN, radius pages, image
uploads, authorised adds, and hostile requests: broken and deeply nested JSON, oversized
bodies, ids past int64), and the report gives p50 / p99 per kind, the errors (a 5xx, or a
status other than the one that kind must get; an oversized body whose connection the
server closed mid-send counts as refused, since that is the early 413 working) and the
server's resident memory sampled every second, so a leak or a stall shows as a trend:

    python benchmarks/serve.py --soak --n-items 100000 --seconds 120 --out /tmp/soak.md

``--compare-workers 1,2`` measures ``hashlab serve --workers N`` for each N in the list, one
after the other on the same model and index in the same run: the hex-code phase only (each N
gets ``--seconds``, after a warm-up that reaches every worker), its QPS and the ratio of each
QPS to the first one's, written to ``benchmarks/serve_workers.md``. Server cores count the
supervisor and all its workers. On a machine shared with other jobs the ratio is indicative:

    python benchmarks/serve.py --compare-workers 1,2 --n-items 200000 --seconds 10 \
        --bits 32 --backbone small_cnn   # small_cnn: quick to start; 32 bits: its ITQ limit
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np

import hashlab
from hashlab.codes import codes_to_hex
from hashlab.data.digits import load_digits_dataset
from hashlab.index import HammingIndex

N_FIT_IMAGES = 500
N_QUERY_IMAGES = 200
N_QUERY_CODES = 10_000
ADD_BATCH = 200_000  # codes added per batch while building the index (bounds peak memory)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def fit_model(folder: Path, n_bits: int, backbone_name: str) -> tuple[Path, list[bytes]]:
    """ITQ on backbone features of digits PNGs; returns the model folder and query PNGs."""
    import torch

    from hashlab.backbones import create_backbone
    from hashlab.data.images import open_image  # the service's decoder

    digits = load_digits_dataset()
    backbone = create_backbone(backbone_name)
    fit_pngs = [png_bytes(a) for a in digits.images[:N_FIT_IMAGES]]
    features = []
    with torch.inference_mode():
        for start in range(0, len(fit_pngs), 50):
            images = [open_image(png) for png in fit_pngs[start : start + 50]]
            features.append(backbone.module(backbone.preprocess(images)).float().numpy())
    model = hashlab.create("itq", n_bits=n_bits).fit(np.concatenate(features))
    model.extra_config_ = {"backbone": backbone_name}
    model.save(folder / "model")
    stop = N_FIT_IMAGES + N_QUERY_IMAGES
    return folder / "model", [png_bytes(a) for a in digits.images[N_FIT_IMAGES:stop]]


def build_index(folder: Path, n_items: int, n_bits: int, seed: int) -> Path:
    """A durable index of ``n_items`` uniformly random codes with small metadata records."""
    rng = np.random.default_rng(seed)
    index = HammingIndex.create(folder / "index", n_bits)
    for start in range(0, n_items, ADD_BATCH):
        n = min(ADD_BATCH, n_items - start)
        packed = rng.integers(0, 256, (n, (n_bits + 7) // 8), dtype=np.uint8)
        if n_bits % 8:  # the unused low bits of the last byte must be zero
            packed[:, -1] &= np.uint8((0xFF << (8 - n_bits % 8)) & 0xFF)
        metadata = [
            {"title": f"photo {start + i}", "lat": 48.0 + (start + i) % 1000 / 1000, "lon": 2.3}
            for i in range(n)
        ]
        index.add(packed, metadata=metadata)
    index.close()
    return folder / "index"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    model: Path, index: Path, port: int, token: str | None = None, workers: int = 1
) -> subprocess.Popen:
    command = [sys.executable, "-m", "hashlab", "serve", "--model", str(model),
               "--index", str(index), "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "HASHLAB_TOKEN"}
    if token is not None:
        env["HASHLAB_TOKEN"] = token  # never on the command line (visible in ps)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
            return server
        except httpx.HTTPError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                message = server.stderr.read().decode()
                raise RuntimeError(f"the server did not start: {message}") from None
            time.sleep(0.5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its live children (Linux /proc; else None).

    The children count for ``--workers N``, where the server pid is the supervisor and the
    requests are served by its forked workers.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += cpu_seconds(int(child)) or 0.0
    return total


Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def load_phase(url: str, request: Request, clients: int, seconds: float) -> dict:
    """``clients`` workers send requests back to back until ``seconds`` have passed."""
    latencies: list[float] = []
    errors: list[str] = []
    by_worker: dict[str, int] = {}  # X-Hashlab-Worker -> requests it answered
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker(first: int) -> None:
            position = first
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await request(client, position)
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - sent)
                        pid = response.headers.get("x-hashlab-worker", "?")
                        by_worker[pid] = by_worker.get(pid, 0) + 1
                    else:
                        errors.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                position += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - started
    array = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "by_worker": by_worker,
        "seconds": elapsed,
        "qps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(array, 50)) if len(array) else float("nan"),
        "p99_ms": float(np.percentile(array, 99)) if len(array) else float("nan"),
    }


def run_phase(url: str, request: Request, clients: int, seconds: float, server_pid: int) -> dict:
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    result = asyncio.run(load_phase(url, request, clients, seconds))
    server_after = cpu_seconds(server_pid)
    wall = result["seconds"]
    result["clients"] = clients
    result["client_cores"] = (time.process_time() - client_cpu) / wall
    result["server_cores"] = (
        None if server_cpu is None or server_after is None else (server_after - server_cpu) / wall
    )
    return result


def table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| queries | clients | requests | errors | QPS | p50 ms | p99 ms | server cores "
        "| server CPU ms / request | client cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        cores = r["server_cores"]
        server = "n/a" if cores is None else f"{cores:.2f}"
        # CPU per request does not depend on how much of the machine the server was given
        per_request = (
            "n/a" if cores is None or not r["requests"]
            else f"{cores * r['seconds'] * 1000 / r['requests']:.1f}"
        )  # fmt: skip
        lines.append(
            f"| {name} | {r['clients']} | {r['requests']:,} | {r['errors']} | {r['qps']:,.1f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {server} | {per_request} "
            f"| {r['client_cores']:.2f} |"
        )
    return "\n".join(lines)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


SOAK_TOKEN = "soak-token"
#: (kind, weight, status it must get); hostile kinds must get their 4xx, never a 5xx
SOAK_MIX = [
    ("code k-NN", 40, 200),
    ("filtered k-NN", 10, 200),
    ("radius page", 10, 200),
    ("image upload", 10, 200),
    ("add (token)", 5, 201),
    ("broken JSON", 5, 400),
    ("nested JSON", 5, 400),
    ("oversized body", 5, 413),
    ("id past int64", 5, 400),
    ("health", 5, 200),
]


async def soak_phase(
    url: str, pid: int, clients: int, seconds: float, query_codes: list[str],
    query_pngs: list[bytes], k: int, seed: int,
) -> dict:  # fmt: skip
    """Mixed requests from ``clients`` workers for ``seconds``; RSS sampled every second."""
    kinds = [kind for kind, weight, _ in SOAK_MIX for _ in range(weight)]
    expected = {kind: status for kind, _, status in SOAK_MIX}
    latencies: dict[str, list[float]] = {kind: [] for kind, _, _ in SOAK_MIX}
    errors: dict[str, list[str]] = {kind: [] for kind, _, _ in SOAK_MIX}
    rss: list[tuple[float, float | None]] = []
    nested = b'{"code": ' + b"[" * 900 + b"]" * 900 + b"}"
    oversized = b"x" * (2 * 1024 * 1024)
    auth = {"X-Token": SOAK_TOKEN}

    async def send(client: httpx.AsyncClient, kind: str, i: int) -> httpx.Response:
        code = query_codes[i % len(query_codes)]
        if kind == "code k-NN":
            return await client.post("/search", json={"code": code, "k": k})
        if kind == "filtered k-NN":
            return await client.post(
                "/search", json={"code": code, "k": k, "filter": "lat >= 48.5 and lon < 3"}
            )
        if kind == "radius page":
            body = {"code": code, "radius": 2, "limit": 20, "offset": 20 * (i % 3)}
            return await client.post("/search", json=body)
        if kind in ("image upload", "add (token)"):
            png = query_pngs[i % len(query_pngs)]
            files = {"image": ("q.png", png, "image/png")}
            if kind == "image upload":
                return await client.post("/search", files=files, data={"k": str(k)})
            return await client.post(
                "/items", files=files, data={"metadata": f'{{"soak": {i}}}'}, headers=auth
            )
        if kind == "broken JSON":
            return await client.post(
                "/search", content=b'{"code": "' + b"A" * 5000, headers={"content-type":
                                                                          "application/json"}
            )  # fmt: skip
        if kind == "nested JSON":
            return await client.post(
                "/search", content=nested, headers={"content-type": "application/json"}
            )
        if kind == "oversized body":
            return await client.post(
                "/search", content=oversized, headers={"content-type": "application/json"}
            )
        if kind == "id past int64":
            return await client.get("/items/99999999999999999999")
        return await client.get("/health")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    deadline = started + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(w: int) -> None:
            rng = np.random.default_rng(seed + w)
            i = w
            while time.perf_counter() < deadline:
                kind = kinds[int(rng.integers(len(kinds)))]
                sent = time.perf_counter()
                try:
                    response = await send(client, kind, i)
                    if response.status_code == expected[kind]:
                        latencies[kind].append(time.perf_counter() - sent)
                    else:
                        errors[kind].append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as error:
                    if kind == "oversized body" and isinstance(error, httpx.TransportError):
                        # the server answered 413 and closed before the client had sent it
                        # all: the body was cut early, which is what must happen
                        latencies[kind].append(time.perf_counter() - sent)
                    else:
                        errors[kind].append(repr(error))
                i += clients

        async def sampler() -> None:
            while time.perf_counter() < deadline:
                rss.append((time.perf_counter() - started, rss_mb(pid)))
                await asyncio.sleep(1.0)

        await asyncio.gather(sampler(), *(worker(w) for w in range(clients)))
    return {"latencies": latencies, "errors": errors, "rss": rss,
            "seconds": time.perf_counter() - started}  # fmt: skip


def soak_report(result: dict, command: str, config: dict) -> str:
    lines = ["# Search service soak test", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in config.items()]
    lines += ["", "| request | expected | completed | errors | p50 ms | p99 ms |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for kind, _, status in SOAK_MIX:
        samples = np.asarray(result["latencies"][kind]) * 1000.0
        p50 = f"{np.percentile(samples, 50):.2f}" if len(samples) else "n/a"
        p99 = f"{np.percentile(samples, 99):.2f}" if len(samples) else "n/a"
        lines.append(
            f"| {kind} | {status} | {len(samples):,} | {len(result['errors'][kind])} "
            f"| {p50} | {p99} |"
        )
    lines += ["", "Server resident memory (MB) over the run:", "", "| second | RSS MB |",
              "|---|---|"]  # fmt: skip
    samples = result["rss"]
    step = max(1, len(samples) // 20)  # at most ~20 rows
    for second, value in samples[::step] + ([samples[-1]] if samples else []):
        lines.append(f"| {second:.0f} | {'n/a' if value is None else f'{value:.0f}'} |")
    for kind, found in result["errors"].items():
        if found:
            lines.append(f"\nFirst {kind} error: `{found[0]}`")
    return "\n".join(lines) + "\n"


def run_soak(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hashlab-soak-"))
    server = None
    try:
        model_dir, query_pngs = fit_model(folder, args.bits, args.backbone)
        index_dir = build_index(folder, args.n_items, args.bits, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        query_codes = codes_to_hex(rng.integers(0, 2, (N_QUERY_CODES, args.bits), dtype=np.uint8))
        port = free_port()
        server = start_server(model_dir, index_dir, port, token=SOAK_TOKEN)
        url = f"http://127.0.0.1:{port}"
        upload = {"image": ("query.png", query_pngs[0], "image/png")}
        httpx.post(f"{url}/search", files=upload, timeout=300).raise_for_status()  # warm-up
        load_average = os.getloadavg()
        result = asyncio.run(
            soak_phase(url, server.pid, args.clients, args.seconds, query_codes, query_pngs,
                       args.k, args.seed)
        )  # fmt: skip
        alive = server.poll() is None
        health = httpx.get(f"{url}/health", timeout=10).json() if alive else None
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    config = {
        "items": args.n_items,
        "bits": args.bits,
        "clients": args.clients,
        "seconds": round(result["seconds"], 1),
        "server": "hashlab serve (token from $HASHLAB_TOKEN), 1 uvicorn worker, 127.0.0.1",
        "load average before (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load_average),
        "server alive at the end": alive,
        "items at the end": None if health is None else health["items"],
    }
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    text = soak_report(result, command, config)
    print(text)
    Path(args.out).write_text(text)


def warm_every_worker(url: str, body: dict, workers: int) -> None:
    """Code searches on new connections until each of ``workers`` has answered two."""
    answered: dict[str, int] = {}
    deadline = time.monotonic() + 300
    while len(answered) < workers or min(answered.values()) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only workers {sorted(answered)} answered a search")
        response = httpx.post(f"{url}/search", json=body, timeout=300)
        response.raise_for_status()
        pid = response.headers.get("x-hashlab-worker", "?")
        answered[pid] = answered.get(pid, 0) + 1


def run_compare_workers(args: argparse.Namespace, counts: list[int]) -> None:
    """Hex-code QPS of ``--workers N`` for each N in ``counts``, same index, one run."""
    folder = Path(tempfile.mkdtemp(prefix="hashlab-serve-workers-"))
    results: list[tuple[int, dict, tuple[float, float, float]]] = []
    try:
        model_dir, _ = fit_model(folder, args.bits, args.backbone)
        index_dir = build_index(folder, args.n_items, args.bits, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        query_codes = codes_to_hex(rng.integers(0, 2, (N_QUERY_CODES, args.bits), dtype=np.uint8))

        async def code_query(client: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {"code": query_codes[i % len(query_codes)], "k": args.k}
            return await client.post("/search", json=body)

        for workers in counts:
            port = free_port()
            server = start_server(model_dir, index_dir, port, workers=workers)
            try:
                url = f"http://127.0.0.1:{port}"
                warm_every_worker(url, {"code": query_codes[0], "k": args.k}, workers)
                load_average = os.getloadavg()
                result = run_phase(url, code_query, args.clients, args.seconds, server.pid)
                results.append((workers, result, load_average))
            finally:
                server.terminate()
                server.wait(timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    base = results[0][1]["qps"]
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    lines = [
        "# Search service: QPS of 1 vs N workers, measured in one run",
        "",
        f"Command: `{command}`",
        "",
        f"- items: {args.n_items}",
        f"- bits: {args.bits}",
        f"- k: {args.k}",
        f"- seconds per worker count: {args.seconds}",
        f"- clients: {args.clients} (asyncio + httpx, one keep-alive connection each, "
        "same machine; the kernel gives each connection to one worker)",
        "- queries: POST /search with a random hex code",
        f"- cpu: {os.cpu_count()} logical CPUs ({affinity} usable), "
        f"{platform.processor() or platform.machine()}",
        "",
        "| workers | requests | errors | QPS | QPS / QPS of "
        f"{counts[0]} | p50 ms | p99 ms | server cores | client cores | requests per worker "
        "| load avg before (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, r, load in results:
        cores = "n/a" if r["server_cores"] is None else f"{r['server_cores']:.2f}"
        lines.append(
            f"| {workers} | {r['requests']:,} | {r['errors']} | {r['qps']:,.1f} "
            f"| {r['qps'] / base:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cores} "
            f"| {r['client_cores']:.2f} "
            f"| {' / '.join(str(n) for n in sorted(r['by_worker'].values(), reverse=True))} "
            f"| {load[0]:.2f} |"
        )
    lines += [
        "",
        "Requests per worker: how the answered requests split over the worker processes "
        "(by X-Hashlab-Worker); each keep-alive connection stays on the worker that accepted "
        "it. The load generator runs on the same machine and every process shares its cores with "
        "whatever else runs there (see the load average), so the ratio is indicative of this "
        "machine at that moment, not a property of the server.",
    ]
    for workers, r, _ in results:
        if r["first_error"]:
            lines.append(f"\nFirst error with {workers} workers: `{r['first_error']}`")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8, help="concurrent code-query clients")
    parser.add_argument(
        "--image-clients", type=int, default=None, help="concurrent image clients (default: same)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of each phase")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default=None,
        help="markdown report (default: benchmarks/serve_results.md; serve_soak.md with "
        "--soak, serve_workers.md with --compare-workers)",
    )
    parser.add_argument(
        "--soak", action="store_true", help="one bounded mixed phase (see the docstring)"
    )
    parser.add_argument(
        "--compare-workers",
        default=None,
        metavar="1,N",
        help="hex-code QPS of hashlab serve --workers N for each count, one run (docstring)",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = (
            "benchmarks/serve_soak.md" if args.soak
            else "benchmarks/serve_workers.md" if args.compare_workers
            else "benchmarks/serve_results.md"
        )  # fmt: skip
    for name in ("n_items", "bits", "k", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds <= 0 or args.seconds > 600:
        parser.error(f"--seconds must be in (0, 600], got {args.seconds}")
    image_clients = args.image_clients or args.clients
    if args.soak:
        run_soak(args)
        return
    if args.compare_workers is not None:
        try:
            counts = [int(part) for part in args.compare_workers.split(",")]
        except ValueError:
            parser.error(f"--compare-workers takes counts like 1,2, got {args.compare_workers}")
        if len(counts) < 2 or min(counts) < 1:
            parser.error("--compare-workers needs two or more counts, each at least 1")
        run_compare_workers(args, counts)
        return

    folder = Path(tempfile.mkdtemp(prefix="hashlab-serve-bench-"))
    server = None
    try:
        started = time.perf_counter()
        model_dir, query_pngs = fit_model(folder, args.bits, args.backbone)
        index_dir = build_index(folder, args.n_items, args.bits, args.seed)
        build_seconds = time.perf_counter() - started
        rng = np.random.default_rng(args.seed + 1)
        query_codes = codes_to_hex(rng.integers(0, 2, (N_QUERY_CODES, args.bits), dtype=np.uint8))
        port = free_port()
        server = start_server(model_dir, index_dir, port)
        url = f"http://127.0.0.1:{port}"

        async def code_query(client: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {"code": query_codes[i % len(query_codes)], "k": args.k}
            return await client.post("/search", json=body)

        async def image_query(client: httpx.AsyncClient, i: int) -> httpx.Response:
            upload = {"image": ("query.png", query_pngs[i % len(query_pngs)], "image/png")}
            return await client.post("/search", files=upload, data={"k": str(args.k)})

        # warm-up: the first code search builds the index's tables, the first upload the CNN
        for _ in range(3):
            httpx.post(f"{url}/search", json={"code": query_codes[0], "k": args.k}, timeout=300)
            upload = {"image": ("query.png", query_pngs[0], "image/png")}
            httpx.post(f"{url}/search", files=upload, timeout=300).raise_for_status()
        load_average = os.getloadavg()
        code_result = run_phase(url, code_query, args.clients, args.seconds, server.pid)
        stats = httpx.get(f"{url}/stats").json()
        image_result = run_phase(url, image_query, image_clients, args.seconds, server.pid)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    import torch
    import uvicorn

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    config = {
        "items": args.n_items,
        "bits": args.bits,
        "k": args.k,
        "seconds per phase": args.seconds,
        "model": f"itq on {args.backbone} features of {N_FIT_IMAGES} digits (32x32 RGB PNGs)",
        "server": "hashlab serve, 1 uvicorn worker, access log on, 127.0.0.1",
        "client": "asyncio + httpx, one keep-alive connection per client, same machine",
        "cpu": f"{os.cpu_count()} logical CPUs ({affinity} usable), "
        f"{platform.processor() or platform.machine()}",
        "load average before the phases (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load_average),
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"uvicorn {uvicorn.__version__}, httpx {httpx.__version__}",
        "build (model + index) seconds": round(build_seconds, 1),
    }
    search_ms = stats["search_latency_ms"]
    rows = [("hex code", code_result), ("image upload", image_result)]
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    report = [
        "# Search service load test",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {key}: {value}" for key, value in config.items()),
        "",
        table(rows),
        "",
        f"Server-side index search + metadata read, lock held (k = {args.k}, /stats, last "
        f"{min(code_result['requests'] + 3, 2000):,} code queries): p50 {search_ms['p50']} ms, "
        f"p99 {search_ms['p99']} ms.",
        "",
        "Cores: CPU seconds per wall second of the server process and of the load generator; "
        "both share this machine (and any other job on it), so their sum is bounded by the "
        "usable CPUs. Server CPU ms / request is the server's CPU time over the phase divided "
        "by the requests completed: the cost of one request whatever share of the machine the "
        "server got; usable CPUs x 1000 / that number estimates the QPS of an idle machine "
        "whose load generator runs elsewhere.",
    ]
    for name, result in rows:
        if result["first_error"]:
            report.append(f"\nFirst {name} error: `{result['first_error']}`")
    text = "\n".join(report) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(json.dumps({name: result for name, result in rows}, indent=1))


if __name__ == "__main__":
    main()
