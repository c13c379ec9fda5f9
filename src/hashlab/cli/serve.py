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
    from hashlab.service import build_service, create_app
    from hashlab.service.limits import RequestLimits, guarded_h11_protocol

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    for name in ("max_upload_mb", "max_archive_mb", "max_megapixels", "request_timeout"):
        if not getattr(args, name) > 0:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be positive, got {getattr(args, name)}")
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
    service = build_service(
        args.model,
        args.index,
        image_store=args.image_store,
        token=token,
        max_upload_bytes=limits.max_upload_bytes,
    )
    service.configure(
        upload_store=args.upload_store,
        ingest_root=args.ingest_root,
        limits=limits,
        max_pixels=int(args.max_megapixels * 1_000_000),
    )
    import uvicorn

    uvicorn.run(
        create_app(service),
        host=args.host,
        port=args.port,
        log_level="info",
        http=guarded_h11_protocol(limits.header_timeout_s),
        timeout_keep_alive=5,
    )
    return 0
