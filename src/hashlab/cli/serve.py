"""``hashlab serve``: the HTTP search service over a saved model and index directory.

The write token comes from ``$HASHLAB_TOKEN`` or ``--token-file`` (first line of the file):
anything on the command line is visible to every user in ``ps``, so ``--token`` still works
but warns. Without a token the server is read-only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hashlab.cli.common import UserError

TOKEN_ENV = "HASHLAB_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve image search over HTTP (web page at /)",
        description=(
            "Serve Hamming search over HTTP: GET / (web page), /health, /stats, "
            "POST /search (image, hex code or text; k or radius; filter; paging; CSV), "
            "POST /items, POST /items/batch and DELETE /items/ID (token), GET /items/ID[/image], "
            "GET /jobs/ID. The write token is read from $HASHLAB_TOKEN or --token-file."
        ),
    )
    parser.add_argument("--model", required=True, help="model directory (hashlab.load)")
    parser.add_argument("--index", required=True, help="index directory (HammingIndex.open)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--token-file",
        default=None,
        help=f"file whose first line is the token for writes (default: ${TOKEN_ENV}; "
        "neither = read-only)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"deprecated: visible in ps to every user; use ${TOKEN_ENV} or --token-file",
    )
    parser.add_argument(
        "--image-store",
        default=None,
        help=(
            "folder of the indexed photos, served read-only (default: the folder the index "
            "was built from, if recorded)"
        ),
    )
    parser.add_argument(
        "--upload-store",
        default=None,
        help="folder where uploaded photos are stored (default: INDEX.uploads beside the index)",
    )
    parser.add_argument(
        "--ingest-root",
        default=None,
        help="server-side folder under which POST /items/batch may ingest folders "
        "(default: folder ingestion off; zip uploads always work with the token)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=10.0, help="upload size limit (default: 10 MB)"
    )
    parser.add_argument(
        "--max-archive-mb",
        type=float,
        default=256.0,
        help="zip upload limit for batch ingestion (default: 256 MB)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=25.0,
        help="largest image accepted, in decoded megapixels (default: 25)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=15.0,
        help="seconds a client may pause while sending a request head or body "
        "(default: 15; a whole body gets 4x that)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port and the index (default: 1). With more than "
        "one, each is a reader that follows the index's commits, and a write holds the "
        "index's writer lock only while it is written (a Milvus engine needs a server URI)",
    )
    parser.add_argument(
        "--write-wait",
        type=float,
        default=5.0,
        help="with --workers > 1: seconds a write waits for another worker's write before "
        "answering 503 with Retry-After (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def read_token(args: argparse.Namespace) -> str | None:
    """The write token from --token-file, $HASHLAB_TOKEN or (deprecated) --token."""
    if args.token_file is not None:
        path = Path(args.token_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--token-file {path} cannot be read: {error}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise UserError(f"--token-file {path} is empty; its first line must be the token")
        return token
    if args.token:
        print(
            f"warning: --token is visible to every user in ps; set ${TOKEN_ENV} or use "
            "--token-file instead (--token will be removed)",
            file=sys.stderr,
        )
        return args.token
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    from hashlab.service.limits import RequestLimits

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    for name in ("max_upload_mb", "max_archive_mb", "max_megapixels", "request_timeout"):
        if not getattr(args, name) > 0:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be positive, got {getattr(args, name)}")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if not args.write_wait > 0:
        raise UserError(f"--write-wait must be positive, got {args.write_wait}")
    if args.ingest_root is not None and not Path(args.ingest_root).is_dir():
        raise UserError(f"--ingest-root {args.ingest_root} is not a folder")
    token = read_token(args)
    limits = RequestLimits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_archive_bytes=int(args.max_archive_mb * 1024 * 1024),
        idle_timeout_s=args.request_timeout,
        header_timeout_s=args.request_timeout,
        body_timeout_s=4 * args.request_timeout,
    )
    if args.workers == 1:
        _serve(args, token, limits, shared_writes=False)
        return 0
    return _run_workers(args, token, limits)


def _serve(
    args: argparse.Namespace,
    token: str | None,
    limits: object,
    shared_writes: bool,
    sockets: list | None = None,
) -> None:
    """Build the service and serve it with uvicorn (on ``sockets`` when given)."""
    import uvicorn

    from hashlab.service import build_service, create_app
    from hashlab.service.limits import guarded_h11_protocol

    service = build_service(
        args.model,
        args.index,
        image_store=args.image_store,
        token=token,
        max_upload_bytes=limits.max_upload_bytes,  # type: ignore[attr-defined]
        shared_writes=shared_writes,
    )
    service.write_wait_s = float(args.write_wait)
    service.configure(
        upload_store=args.upload_store,
        ingest_root=args.ingest_root,
        limits=limits,  # type: ignore[arg-type]
        max_pixels=int(args.max_megapixels * 1_000_000),
    )
    config = uvicorn.Config(
        create_app(service),
        host=args.host,
        port=args.port,
        log_level="info",
        http=guarded_h11_protocol(limits.header_timeout_s),  # type: ignore[attr-defined]
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=sockets)


def check_workers_index(index_dir: str | Path, workers: int, token: str | None) -> None:
    """What must hold before N workers share ``index_dir`` (UserError otherwise).

    The directory's engine must be one several processes can open: milvus-lite (a local
    ``.db`` file) lets one process open its file, so N workers need a Milvus server URI.
    With a token, no other process may hold the writer lock now (it is another server).
    """
    from hashlab.index import storage
    from hashlab.index.engines.milvus import check_uri

    if not Path(index_dir).is_dir():
        raise UserError(f"index directory {index_dir} does not exist")
    store = storage.IndexStore.open(index_dir, mode="r", verify=False)
    try:
        record = store.header.get("backend") or {}
    finally:
        store.close()
    if record.get("name") == "milvus":
        uri = (record.get("params") or {}).get("uri")
        try:
            local = check_uri(uri)[1]
        except ValueError:
            local = False  # the workers' own open says what is wrong with it
        if local:
            raise UserError(
                f"--workers {workers} needs a Milvus server URI (http://host:19530): this "
                f"index's Milvus engine is the milvus-lite file {uri!r}, which one process "
                "at a time can open; serve it with --workers 1, or rebuild the index with "
                "--uri http://host:19530"
            )
    if token:
        # IndexLockedError names the pid of the server that holds it
        storage.IndexStore.open(index_dir, mode="w", verify=False).close()


def _run_workers(args: argparse.Namespace, token: str | None, limits: object) -> int:
    """``--workers N``: N forked uvicorn servers on one socket (hashlab.service.workers)."""
    from hashlab.service.workers import bind_socket, supervise

    if not Path(args.model).is_dir():
        raise UserError(f"model directory {args.model} does not exist")
    check_workers_index(args.index, args.workers, token)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None

    def run_worker(shared: object) -> None:
        _serve(args, token, limits, shared_writes=True, sockets=[shared])

    return supervise(args.workers, sock, run_worker)
