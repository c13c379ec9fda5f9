"""The ``hashlab`` command: a thin layer over the Python API.

Each sub-area lives in its own module exposing ``register(subparsers)``, which adds its
commands and sets ``func`` on them. User errors (bad paths, unknown names, bad values) are
:class:`~hashlab.errors.HashlabError` s (``UserError`` is one) or an ``OSError`` about a path
the user named; they become one line on stderr with exit code 2. Anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hashlab._version import __version__
from hashlab.errors import HashlabError

_COMMAND_MODULES = (
    "hashlab.cli.demo",
    "hashlab.cli.features",
    "hashlab.cli.bench",
    "hashlab.cli.train",
    "hashlab.cli.index",
    "hashlab.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashlab", description="Learn binary hash codes for images and search them."
    )
    parser.add_argument("--version", action="version", version=f"hashlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("hashlab: interrupted", file=sys.stderr)
        return 130
    except (HashlabError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError, FileExistsError) as error:  # fmt: skip
        print(f"hashlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
