"""``--workers N`` of ``hashlab encode`` and ``hashlab index build``: sharded, resumable
encoding by N worker processes (or the ranks of a torchrun launch), see
:mod:`hashlab.sharded_encode`. A run that loses a worker exits 1 with one line saying how
many shards are left; the same command resumes from the shards already done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hashlab.cli.common import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hashlab.sharded_encode import DEFAULT_SHARD_SIZE

    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="encode in N worker processes, in resumable shards (under "
                        "torchrun the ranks are the workers)")  # fmt: skip
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help="images per shard (the unit a rerun does not redo)")
    parser.add_argument("--work-dir", default=None,
                        help="folder of the shards (default: .OUT.shards beside OUT)")


def wanted(args: argparse.Namespace) -> bool:
    """True when the command should run sharded: --workers given, or under torchrun."""
    from hashlab.train.distributed import distributed_env

    return args.workers is not None or distributed_env() is not None


def _check(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    if args.shard_size < 1:
        raise UserError(f"--shard-size must be a positive integer, got {args.shard_size}")


def run_encode(args: argparse.Namespace) -> int:
    from hashlab.sharded_encode import (
        ShardedEncodeIncomplete,
        default_work_dir,
        encode_folder_sharded,
        write_codes,
    )

    _check(args)
    if not Path(args.images).is_dir():
        raise UserError(f"--images {args.images} is not a folder")
    work = args.work_dir or default_work_dir(args.out)
    try:
        result = encode_folder_sharded(args.model, args.images, work, args.workers or 1,
                                       args.shard_size)  # fmt: skip
    except ShardedEncodeIncomplete as error:
        print(f"hashlab encode: {error}", file=sys.stderr)
        return 1
    if result is None:  # a torchrun rank other than 0: rank 0 merges and reports
        return 0
    out = write_codes(result, args.out)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    print(f"encoded {len(result.paths)} images into {result.codes.shape[1]}-bit codes: {out} "
          f"({result.workers} workers, {result.encoded} shards encoded, {result.reused} reused)")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from hashlab.sharded_encode import ShardedEncodeIncomplete, build_index_sharded

    _check(args)
    try:
        built = build_index_sharded(args.model, args.images, args.out, args.metadata,
                                    args.workers or 1, args.shard_size, args.work_dir)  # fmt: skip
    except ShardedEncodeIncomplete as error:
        print(f"hashlab index build: {error}", file=sys.stderr)
        return 1
    if built is None:
        return 0
    record, result = built
    print(f"indexed {record.n_images} images ({record.n_bits} bits) into {args.out} "
          f"({result.workers} workers, {result.encoded} shards encoded, {result.reused} reused)")
    return 0
