"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hashlab.errors import HashlabError


class UserError(HashlabError):
    """Something the user asked for cannot be done; the message says what and why."""


def parse_int_list(text: str, what: str = "values") -> list[int]:
    """'16,32,48' -> [16, 32, 48], with a clear error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return values


def add_tag_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for image lists with tags (weakly supervised methods such as IDEA)."""
    parser.add_argument(
        "--csv",
        default=None,
        help="with --dataset folder: CSV listing the images (a 'file' column, paths relative "
        "to --root), with labels and / or tags columns",
    )
    parser.add_argument("--label-column", default=None, help="CSV column of class labels")
    parser.add_argument(
        "--tags-column", default=None, help="CSV column of user tags (separated by ; , or spaces)"
    )
    parser.add_argument(
        "--embedding",
        default="glove",
        help="tag word vectors for tag-supervised methods: glove (GloVe 6B 50-d), word2vec "
        "(trained on the training tags), or a word2vec file",
    )


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
