"""Users' own images: a folder per class, or a folder plus a CSV describing each file.

``load_image_folder(root)``: ``root/<class>/<image>``, the torchvision ``ImageFolder`` layout;
classes are the sub-folder names sorted, files sorted by name, so the item order (and every
seeded split and feature cache built on it) is reproducible. A flat folder (images directly
in ``root``, no sub-folders) is an *unlabelled* collection: the images, sorted by name, with
``labels=None`` (for the unsupervised methods; a supervised one is refused downstream).

``load_image_csv(root, csv_path)``: one row per image with a file column (relative to
``root``), optional labels (one or several per row, ``"dog;outdoor"``), optional tags
(``"beach sunset"`` or ``"beach;sunset"``) and any other columns kept as per-item metadata
(numbers where a whole column parses as numbers, e.g. latitude / longitude).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.data.dataset import DataError, Dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def load_image_folder(root: str | Path, name: str | None = None) -> Dataset:
    """Images in ``root/<class>/`` with their class from the folder name; a flat folder of
    images (no sub-folders) gives them without labels."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = _image_files(root)
        if not loose:
            raise DataError(
                f"{root} holds no images: expected images in it (unlabelled) or in "
                "root/<class>/ sub-folders (labelled)"
            )
        return Dataset(
            name=name or root.name,
            image_paths=[str(p) for p in loose],
            info={"source": str(root), "layout": "flat folder, no labels"},
        )
    paths: list[str] = []
    labels: list[int] = []
    for class_id, class_dir in enumerate(class_dirs):
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"class folder {class_dir} holds no images")
        paths.extend(str(p) for p in files)
        labels.extend([class_id] * len(files))
    return Dataset(
        name=name or root.name,
        image_paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=[p.name for p in class_dirs],
        info={"source": str(root), "layout": "folder per class"},
    )


def _split_values(cell: str, separator: str | None) -> list[str]:
    """Non-empty stripped parts of a cell; ``separator=None`` splits on ; , and whitespace."""
    parts = re.split(r"[;,\s]+", cell) if separator is None else cell.split(separator)
    return [p.strip() for p in parts if p.strip()]


# plain decimal numbers only: Python's int()/float() also accept "1_000", "nan" and "inf",
# which in a CSV are far more likely to be identifiers or words than numbers
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_number(text: str) -> int | float | None:
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return None


def _typed_columns(rows: list[dict[str, str]], columns: list[str]) -> list[dict[str, Any]]:
    """Metadata dicts; a column becomes numbers only if every non-empty cell parses as one.

    A column is int if every cell is an integer, else float throughout (a latitude of "40"
    next to "48.85" is 40.0, so the column has one type); empty cells are None.
    """
    kinds: dict[str, type | None] = {}
    for column in columns:
        cells = [row[column].strip() for row in rows if row[column].strip()]
        parsed = [_as_number(c) for c in cells]
        if not cells or any(v is None for v in parsed):
            kinds[column] = None
        else:
            kinds[column] = int if all(isinstance(v, int) for v in parsed) else float
    metadata = []
    for row in rows:
        item: dict[str, Any] = {}
        for column in columns:
            cell = row[column].strip()
            kind = kinds[column]
            if not cell:
                item[column] = None
            else:
                item[column] = cell if kind is None else kind(_as_number(cell))
        metadata.append(item)
    return metadata


def _read_rows(csv_path: Path, delimiter: str) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """Header, the non-blank rows as dicts, and each row's line number in the file."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise DataError(f"CSV file {csv_path} is empty (no header row)")
            header = [h.strip() for h in header]
            duplicates = sorted({h for h in header if header.count(h) > 1})
            if duplicates:
                raise DataError(f"CSV file {csv_path} repeats the column {duplicates[0]!r}")
            rows, line_numbers = [], []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # blank lines are not items
                if len(record) != len(header):
                    raise DataError(
                        f"line {reader.line_num} of {csv_path} has {len(record)} fields but the "
                        f"header has {len(header)}"
                    )
                rows.append(dict(zip(header, record, strict=True)))
                line_numbers.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"CSV file {csv_path} is not UTF-8 text") from None
    except csv.Error as error:
        raise DataError(f"CSV file {csv_path} is malformed: {error}") from None
    return header, rows, line_numbers


def load_image_csv(
    root: str | Path,
    csv_path: str | Path,
    file_column: str = "file",
    label_column: str | None = None,
    tags_column: str | None = None,
    separator: str = ";",
    tag_separator: str | None = None,
    delimiter: str = ",",
    name: str | None = None,
) -> Dataset:
    """Images listed in a CSV, with labels, tags and the other columns as metadata.

    ``separator`` splits several labels in one cell; ``tag_separator`` splits tags (default:
    any of ``;``, ``,`` and whitespace); ``delimiter`` separates the CSV's fields. Labels are
    (N,) class ids when every row has exactly one label, else (N, C) multi-hot; class names and
    the tag vocabulary are sorted.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    csv_file = Path(csv_path).expanduser()
    if not csv_file.is_file() and not csv_file.is_absolute() and (root / csv_file).is_file():
        csv_file = root / csv_file
    if not csv_file.is_file():
        raise DataError(f"CSV file {csv_path} does not exist")
    header, rows, line_numbers = _read_rows(csv_file, delimiter)
    for role, column in [("file", file_column), ("label", label_column), ("tags", tags_column)]:
        if column is not None and column not in header:
            raise DataError(
                f"CSV file {csv_file} has no {role} column {column!r}; its columns are "
                f"{', '.join(repr(h) for h in header)}"
            )
    if not rows:
        raise DataError(f"CSV file {csv_file} lists no images")

    root_resolved = root.resolve()
    paths: list[str] = []
    missing: list[str] = []
    first_line: dict[str, int] = {}
    for line, row in zip(line_numbers, rows, strict=True):
        relative = row[file_column].strip()
        if not relative:
            raise DataError(f"line {line} of {csv_file} has an empty {file_column!r} cell")
        path = (root / relative).resolve()
        # refuse paths that climb out of root: a CSV must not reach files elsewhere
        if Path(relative).is_absolute() or not path.is_relative_to(root_resolved):
            raise DataError(f"file {relative!r} in {csv_file} is not inside {root}")
        if relative in first_line:
            raise DataError(
                f"CSV file {csv_file} lists {relative!r} twice (lines {first_line[relative]} "
                f"and {line})"
            )
        first_line[relative] = line
        if not path.is_file():
            missing.append(relative)
        paths.append(str(root / relative))
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(rows)} files listed in {csv_file} are missing under "
            f"{root} (first: {missing[0]!r})"
        )

    labels = class_names = None
    if label_column is not None:
        per_row = [_split_values(row[label_column], separator) for row in rows]
        class_names = sorted({label for row_labels in per_row for label in row_labels})
        if not class_names:
            raise DataError(f"the label column {label_column!r} of {csv_file} is empty")
        class_id = {label: i for i, label in enumerate(class_names)}
        if all(len(row_labels) == 1 for row_labels in per_row):
            labels = np.asarray([class_id[r[0]] for r in per_row], dtype=np.int64)
        else:
            labels = np.zeros((len(rows), len(class_names)), dtype=np.uint8)
            for i, row_labels in enumerate(per_row):
                labels[i, [class_id[label] for label in row_labels]] = 1

    tags = tag_vocab = None
    if tags_column is not None:
        per_row = [_split_values(row[tags_column], tag_separator) for row in rows]
        tag_vocab = sorted({tag for row_tags in per_row for tag in row_tags})
        tag_id = {tag: i for i, tag in enumerate(tag_vocab)}
        tags = np.zeros((len(rows), len(tag_vocab)), dtype=np.uint8)
        for i, row_tags in enumerate(per_row):
            tags[i, [tag_id[tag] for tag in row_tags]] = 1

    other_columns = [h for h in header if h not in (file_column, label_column, tags_column)]
    return Dataset(
        name=name or csv_file.stem,
        image_paths=paths,
        labels=labels,
        tags=tags,
        tag_vocab=tag_vocab,
        metadata=_typed_columns(rows, other_columns),
        class_names=class_names,
        info={"source": str(csv_file), "root": str(root), "layout": "folder + CSV"},
    )
