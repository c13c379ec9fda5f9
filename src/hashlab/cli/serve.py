"""``hashlab serve``: the HTTP search service over a saved model and index directory."""

from __future__ import annotations

import argparse
import os

from hashlab.cli.common import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve image search over HTTP (web page at /)",
        description=(
            "Serve Hamming search over HTTP: GET / (web page), /health, /stats, "
            "POST /search, POST /items and DELETE /items/ID (token), GET /items/ID[/image]."
        ),
    )
    parser.add_argument("--model", required=True, help="model directory (hashlab.load)")
    parser.add_argument("--index", required=True, help="index directory (HammingIndex.open)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--token",
        default=None,
        help="token required to add/delete items (default: $HASHLAB_TOKEN; none = read-only)",
    )
    parser.add_argument(
        "--image-store",
        default=None,
        help=(
            "folder for uploaded images, the only place images are served from "
            "(default: the folder the index was built from, if recorded)"
        ),
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=10.0, help="upload size limit (default: 10 MB)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hashlab.service import build_service, create_app

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    token = args.token or os.environ.get("HASHLAB_TOKEN") or None
    service = build_service(
        args.model,
        args.index,
        image_store=args.image_store,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )
    import uvicorn

    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="info")
    return 0
