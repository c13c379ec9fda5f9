"""List files, the format public deep hashing code distributes its splits in.

One line per image: a path relative to an image folder, then the label vector as
space-separated 0/1 values, e.g. (NUS-WIDE-21, 21 labels)::

    images/83796_799247112_276c55a843_m.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0

A data set is three such lists in one folder: ``train.txt`` (training items), ``test.txt``
(the queries; ``query.txt`` is accepted too) and ``database.txt`` (the retrieval set). This
is the layout of swuxyj/DeepHash-pytorch (``data/<name>/{train,test,database}.txt``, read by
its ``ImageList``: ``data_path + line.split()[0]``, labels ``line.split()[1:]``), whose
NUS-WIDE-21, MS-COCO and ImageNet lists copy thuml/HashNet's. Paths cannot contain spaces
(the format splits on whitespace); a leading ``./`` is ignored, and ``strip_prefix`` removes
a prefix that some copies carry (``./data/coco/``, an absolute ``/home/.../dataset/``).

``load_list_file(path, image_root)``: one list as a Dataset. ``load_list_split(root, name)``:
the three lists as one Dataset of the distinct images (identified by their path in the
lists: two lines naming the same file are one item; we do not hash file contents, so the
same picture saved under two names counts as two items), with the lists' own roles in
``info["list_split"]`` for ``make_split(dataset, "listfile")``. Overlaps between the lists are
reported, never silently accepted: counts and examples in ``info["overlaps"]`` and a
:class:`ListOverlapWarning`. The field's convention is queries disjoint from the training
items and from the database, with the training items drawn from the database (train ⊂
database, as in HashNet's and DeepHash-pytorch's NUS-WIDE, COCO and ImageNet lists); public
copies of these lists are known to break it, so the report says exactly what overlaps.

Labels: (N,) class ids when every line has exactly one 1 (ImageNet-100), else (N, C)
multi-hot (NUS-WIDE, COCO); relevance is sharing at least one label.

The named sets and their metric (DeepHash-pytorch ``config_dataset``'s ``topK``; HashNet's
protocol): NUS-WIDE-21 map@5000, MS-COCO map@5000, ImageNet-100 map@1000.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.data.dataset import DataError, Dataset

__all__ = [
    "LIST_SETS",
    "ListOverlapWarning",
    "ListSet",
    "load_list_file",
    "load_list_split",
    "read_list_file",
]

ROLES = ("train", "query", "database")
N_EXAMPLES = 3  # overlapping paths quoted per pair


@dataclass(frozen=True)
class ListSet:
    """A data set distributed as list files: its file names, label count and metric."""

    name: str
    title: str
    metric: str  # the field's headline metric for this set
    n_classes: int | None = None  # None: whatever the lists have
    files: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("train", ("train.txt",)),
        ("query", ("test.txt", "query.txt")),
        ("database", ("database.txt",)),
    )
    source: str = ""


LIST_SETS: dict[str, ListSet] = {
    "listfile": ListSet("listfile", "list files", "map@all",
                        source="any folder with train.txt, test.txt and database.txt"),
    "nuswide21": ListSet("nuswide21", "NUS-WIDE-21", "map@5000", 21,
                         source="DeepHash-pytorch data/nuswide_21 (21 most frequent concepts; "
                         "2,100 queries, 10,500 training images drawn from the database)"),
    "coco": ListSet("coco", "MS-COCO", "map@5000", 80,
                    source="HashNet / DeepHash-pytorch data/coco (80 categories)"),
    "imagenet100": ListSet("imagenet100", "ImageNet-100", "map@1000", 100,
                           source="HashNet / DeepHash-pytorch data/imagenet (100 classes; "
                           "queries from the ILSVRC 2012 validation images)"),
}  # fmt: skip


class ListOverlapWarning(UserWarning):
    """List files overlap in a way the field's convention does not allow (or in any way)."""


@dataclass(frozen=True)
class ListEntry:
    line: int  # 1-based line number in the list file
    path: str  # as written, normalised (no leading ./, prefix stripped)
    labels: np.ndarray  # (C,) uint8 0/1


def _normalise(raw: str, strip_prefix: str | None) -> str:
    path = raw
    if strip_prefix and path.startswith(strip_prefix):
        path = path[len(strip_prefix) :]
    while path.startswith("./"):
        path = path[2:]
    return path


def read_list_file(
    path: str | Path, n_classes: int | None = None, strip_prefix: str | None = None
) -> list[ListEntry]:
    """The lines of a list file, checked: every line a path and ``C`` labels, each 0 or 1.

    ``C`` is ``n_classes`` when given, else the first line's. Blank lines are skipped. Errors
    name the file and line (``train.txt:12: ...``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"list file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"list file {path} is not UTF-8 text") from None
    entries: list[ListEntry] = []
    first_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{number}"
        values = tokens[1:]
        if not values:
            raise DataError(f"{where}: {tokens[0]!r} has no label vector (expected a path "
                            "followed by space-separated 0/1 labels)")  # fmt: skip
        bad = next((v for v in values if v not in ("0", "1")), None)
        if bad is not None:
            raise DataError(f"{where}: label value {bad!r} is not 0 or 1")
        if n_classes is None:
            n_classes, first_line = len(values), number
        if len(values) != n_classes:
            expected = f"as on line {first_line}" if first_line else "for this data set"
            raise DataError(f"{where}: {len(values)} labels, expected {n_classes} ({expected})")
        labels = np.fromiter((v == "1" for v in values), dtype=np.uint8, count=len(values))
        entries.append(ListEntry(number, _normalise(tokens[0], strip_prefix), labels))
    if not entries:
        raise DataError(f"list file {path} lists no images")
    return entries


def _resolve(entry: ListEntry, list_path: Path, image_root: Path) -> Path:
    where = f"{list_path}:{entry.line}"
    relative = Path(entry.path)
    if relative.is_absolute() or ".." in relative.parts:
        raise DataError(f"{where}: image path {entry.path!r} is not relative to the image folder "
                        f"{image_root} (pass strip_prefix= the part to remove)")  # fmt: skip
    return image_root / relative


def _check_images(found: list[tuple[Path, ListEntry, Path]], image_root: Path) -> None:
    """Raise naming the first missing image, its list file and line, and how many are missing."""
    missing = [(list_path, entry) for list_path, entry, image in found if not image.is_file()]
    if missing:
        list_path, entry = missing[0]
        more = f" ({len(missing)} of {len(found)} listed images are missing)"
        more = more if len(missing) > 1 else ""
        raise DataError(f"{list_path}:{entry.line}: image {entry.path!r} not found under "
                        f"{image_root}{more}")  # fmt: skip


def _labels(matrix: np.ndarray) -> np.ndarray:
    """(N,) class ids when every row has exactly one label, else the (N, C) multi-hot rows."""
    if len(matrix) and np.all(matrix.sum(axis=1) == 1):
        return matrix.argmax(axis=1).astype(np.int64)
    return matrix.astype(np.uint8)


def _label_info(matrix: np.ndarray) -> dict[str, Any]:
    info: dict[str, Any] = {"n_classes": int(matrix.shape[1])}
    unlabelled = int((matrix.sum(axis=1) == 0).sum())
    if unlabelled:  # relevant to no query: they only ever lower a query's precision
        info["items_without_labels"] = unlabelled
    return info


def _unique(
    entries: list[ListEntry], list_path: Path
) -> tuple[list[ListEntry], list[tuple[int, int, str]]]:
    """Entries with repeated paths removed (first kept), and the repeats (first, again, path).

    A path listed twice with different labels is an error: which labels are right is unknown.
    """
    first: dict[str, ListEntry] = {}
    repeats = []
    for entry in entries:
        seen = first.get(entry.path)
        if seen is None:
            first[entry.path] = entry
            continue
        if not np.array_equal(seen.labels, entry.labels):
            raise DataError(f"{list_path}:{entry.line}: {entry.path!r} is listed again with "
                            f"other labels than on line {seen.line}")  # fmt: skip
        repeats.append((seen.line, entry.line, entry.path))
    return list(first.values()), repeats


def load_list_file(
    path: str | Path,
    image_root: str | Path,
    name: str | None = None,
    n_classes: int | None = None,
    strip_prefix: str | None = None,
) -> Dataset:
    """The images of one list file (paths under ``image_root``) with their labels.

    A path listed twice is one item (the repeat is reported in ``info["repeats"]`` and by a
    :class:`ListOverlapWarning`); a missing image is a ``DataError`` naming the list file,
    the line and the image.
    """
    list_path = Path(path).expanduser()
    root = Path(image_root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    entries, repeats = _unique(read_list_file(list_path, n_classes, strip_prefix), list_path)
    found = [(list_path, e, _resolve(e, list_path, root)) for e in entries]
    _check_images(found, root)
    matrix = np.stack([e.labels for e in entries])
    info: dict[str, Any] = {"source": str(list_path), "root": str(root), "layout": "list file",
                            **_label_info(matrix)}  # fmt: skip
    if repeats:
        info["repeats"] = _repeat_report(repeats)
        _warn(f"{list_path} lists {len(repeats)} images twice (e.g. {repeats[0][2]!r} on lines "
              f"{repeats[0][0]} and {repeats[0][1]}); each is one item", stacklevel=3)  # fmt: skip
    return Dataset(
        name=name or list_path.stem,
        image_paths=[str(image) for _, _, image in found],
        labels=_labels(matrix),
        info=info,
    )


def _repeat_report(repeats: list[tuple[int, int, str]]) -> dict[str, Any]:
    examples = [{"path": p, "lines": [a, b]} for a, b, p in repeats[:N_EXAMPLES]]
    return {"count": len(repeats), "examples": examples}


def _warn(message: str, stacklevel: int) -> None:
    """A ListOverlapWarning pointed at the caller of the public loader (``stacklevel``)."""
    warnings.warn(message, ListOverlapWarning, stacklevel=stacklevel)


def _find_list(root: Path, role: str, candidates: tuple[str, ...]) -> Path:
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    raise DataError(f"{root} has no {role} list ({' or '.join(candidates)})")


def load_list_split(
    root: str | Path,
    name: str = "listfile",
    image_root: str | Path | None = None,
    strip_prefix: str | None = None,
) -> Dataset:
    """The train / query / database lists in ``root`` as one Dataset of distinct images.

    ``name`` is a key of :data:`LIST_SETS` (``nuswide21``, ``coco``, ``imagenet100``, or
    ``listfile`` for any set in this format); images are under ``image_root`` (default:
    ``root``). Items are in list order (train, then query, then database; an image in
    several lists appears once). ``info``: ``list_split`` (role -> item indices in list
    order), ``overlaps`` (per pair of lists and within each list: count and example paths),
    ``metric`` (the set's headline metric) and ``list_files``.
    """
    if name not in LIST_SETS:
        raise DataError(f"unknown list-file data set {name!r}; known: {', '.join(LIST_SETS)}")
    spec = LIST_SETS[name]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"list folder {root} does not exist or is not a folder")
    images = root if image_root is None else Path(image_root).expanduser()
    if not images.is_dir():
        raise DataError(f"image folder {images} does not exist or is not a folder")

    files = {role: _find_list(root, role, candidates) for role, candidates in spec.files}
    n_classes = spec.n_classes
    item_of: dict[str, int] = {}  # normalised path -> item number
    where: list[tuple[Path, ListEntry]] = []  # per item: where it was first listed
    rows: dict[str, list[int]] = {}
    overlaps: dict[str, Any] = {}
    for role in ROLES:
        entries = read_list_file(files[role], n_classes, strip_prefix)
        n_classes = len(entries[0].labels)  # every list must agree with the first
        entries, repeats = _unique(entries, files[role])
        if repeats:
            overlaps[f"{role} repeats"] = _repeat_report(repeats)
        indices = []
        for entry in entries:
            item = item_of.get(entry.path)
            if item is None:
                item = item_of[entry.path] = len(where)
                where.append((files[role], entry))
            else:
                first_file, first = where[item]
                if not np.array_equal(first.labels, entry.labels):
                    raise DataError(f"{files[role]}:{entry.line}: {entry.path!r} has other "
                                    f"labels than in {first_file}:{first.line}")  # fmt: skip
            indices.append(item)
        rows[role] = indices

    found = [(list_path, entry, _resolve(entry, list_path, images)) for list_path, entry in where]
    _check_images(found, images)
    paths = [entry.path for _, entry in where]
    sets = {role: set(indices) for role, indices in rows.items()}
    for a, b in (("query", "train"), ("query", "database"), ("train", "database")):
        shared = [i for i in rows[a] if i in sets[b]]
        overlaps[f"{a}&{b}"] = {"count": len(shared),
                                "examples": [paths[i] for i in shared[:N_EXAMPLES]]}  # fmt: skip
    _report(spec.title if name != "listfile" else f"the lists in {root}", files, rows, overlaps)

    matrix = np.stack([entry.labels for _, entry in where])
    return Dataset(
        name=name if name != "listfile" else root.name,
        image_paths=[str(image) for _, _, image in found],
        labels=_labels(matrix),
        info={
            "source": str(root),
            "root": str(images),
            "layout": "list files (train / query / database)",
            "list_set": spec.title,
            "metric": spec.metric,
            "list_files": {role: str(path) for role, path in files.items()},
            "list_split": {role: np.asarray(r, dtype=np.int64) for role, r in rows.items()},
            "overlaps": overlaps,
            **_label_info(matrix),
        },
    )


def _report(
    title: str, files: dict[str, Path], rows: dict[str, list[int]], overlaps: dict[str, Any]
) -> None:
    """Warn about every overlap but the convention's train ⊂ database."""
    names = {role: files[role].name for role in ROLES}
    problems = []
    for key, report in overlaps.items():
        if report["count"] == 0:
            continue
        if key == "train&database" and report["count"] == len(rows["train"]):
            continue  # the convention: training items drawn from the database
        if key.endswith(" repeats"):
            role = key.split()[0]
            problems.append(f"{names[role]} lists {report['count']} images twice")
            continue
        a, b = key.split("&")
        partly = " (the other training images are not)" if key == "train&database" else ""
        problems.append(f"{report['count']} images are in both {names[a]} and {names[b]}"
                        f"{partly} (e.g. {report['examples'][0]!r})")  # fmt: skip
    if problems:
        what = title if title.startswith("the lists") else f"the {title} lists"
        _warn(f"{what} overlap: {'; '.join(problems)}", stacklevel=4)
