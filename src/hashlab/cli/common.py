"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from typing import Any


class UserError(Exception):
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
