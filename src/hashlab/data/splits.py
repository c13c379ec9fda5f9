"""Seeded query / train / validation / database splits, checked for leaks.

Protocols (see ``shared/specs/protocols.md``):

- ``dch``: the CIFAR-10 split of HashNet (Cao et al., ICCV 2017), DCH (Cao et al., CVPR 2018)
  and HashGAN: 100 queries and 500 training images per class; the database is every item but
  the queries (59,000 on CIFAR-10), so the training images are also in the database.
- ``deephash``: DeepHash-pytorch's ``cifar10-1``: 100 queries and 500 training images per
  class; the database is the rest (54,000), so query, train and database are disjoint.
- ``per-class``: any single-label set, ``n_query_per_class`` / ``n_train_per_class`` per class;
  database = all but the queries. On multi-label (or unlabeled) data there are no classes to
  stratify on, so queries and training items are drawn uniformly at random and the counts are
  totals (``n_query`` / ``n_train``; a per-class count given instead is read as a total).
- ``random``: uniform draws by total count on any data.
- ``listfile``: the data set's own list files (``hashlab.data.listfile.load_list_split``):
  their train / query / database items, not a draw. Items a list shares with the queries
  are removed from the training items and the database (a query must not be trained on nor
  find itself) and the removal is recorded in ``info`` and ``describe()``; the training
  items are in the database when the lists put them there. Validation is carved from the
  listed training items.

Validation (for checkpoint / hyper-parameter selection) is carved out of the training items:
by default 10% of them, per class where there are classes. It is never drawn from the
queries: selecting models on the test queries, common in public deep hashing code, inflates
the reported numbers. ``Split.train_all`` gives train + validation, the paper's training set,
for methods that do no model selection.

Every index array is a seeded random permutation, not sorted: retrieval breaks Hamming
distance ties by database order, and a class-sorted database would favour some classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.data.dataset import DataError, Dataset

# protocol -> (queries per class, train per class, training items also in the database)
PAPER_PROTOCOLS: dict[str, tuple[int, int, bool]] = {
    "dch": (100, 500, True),
    "deephash": (100, 500, False),
}
PROTOCOLS = ("dch", "deephash", "per-class", "random", "listfile")
DEFAULT_VALIDATION_FRACTION = 0.1


@dataclass
class Split:
    """Index arrays into one data set, plus how they were made."""

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    validation: np.ndarray | None = None
    protocol: str = "custom"
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.query = _as_index_array(self.query, "query")
        self.train = _as_index_array(self.train, "train")
        self.database = _as_index_array(self.database, "database")
        if self.validation is not None:
            self.validation = _as_index_array(self.validation, "validation")
        self.check()

    def check(self, n_items: int | None = None) -> None:
        """Raise ``DataError`` if any part repeats an item or leaks into another part."""
        parts = {"query": self.query, "train": self.train, "database": self.database}
        if self.validation is not None:
            parts["validation"] = self.validation
        for name, indices in parts.items():
            if len(np.unique(indices)) != len(indices):
                raise DataError(f"split {self.protocol!r}: the {name} indices repeat an item")
            if (
                n_items is not None
                and len(indices)
                and (indices.min() < 0 or indices.max() >= n_items)
            ):
                raise DataError(
                    f"split {self.protocol!r}: {name} indices fall outside 0..{n_items - 1}"
                )
        must_not_overlap = [("query", "train"), ("query", "database")]
        if self.validation is not None:
            must_not_overlap += [("validation", "query"), ("validation", "train")]
        if not self.train_in_database:
            must_not_overlap.append(("train", "database"))
        for a, b in must_not_overlap:
            shared = np.intersect1d(parts[a], parts[b])
            if len(shared):
                raise DataError(
                    f"split {self.protocol!r}: {len(shared)} items are in both {a} and {b} "
                    f"(e.g. item {int(shared[0])})"
                )

    @property
    def train_in_database(self) -> bool:
        """Whether training items are also database items (``dch``: yes; ``deephash``: no)."""
        default = PAPER_PROTOCOLS.get(self.protocol, (0, 0, True))[2]
        return bool(self.info.get("train_in_database", default))

    @property
    def train_all(self) -> np.ndarray:
        """Train plus validation items: the paper's training set, for fits without selection."""
        if self.validation is None:
            return self.train
        return np.concatenate([self.train, self.validation])

    @property
    def validation_database(self) -> np.ndarray:
        """The database without the validation items, to search with validation queries.

        Under ``dch`` the training (and so validation) items are in the database; a validation
        query would otherwise find itself at distance 0.
        """
        if self.validation is None:
            return self.database
        return self.database[~np.isin(self.database, self.validation)]

    def sizes(self) -> dict[str, int]:
        sizes = {"query": len(self.query), "train": len(self.train), "database": len(self.database)}
        sizes["validation"] = 0 if self.validation is None else len(self.validation)
        return sizes

    def describe(self) -> str:
        """One line for result tables: protocol, seed and the size of every part."""
        s = self.sizes()
        train = f"{s['train']:,} train"
        if s["validation"]:
            train += f" + {s['validation']:,} validation (carved from the training items)"
        where = "in" if self.train_in_database else "not in"
        sampling = self.info.get("sampling", "")
        return (
            f"{self.protocol} (seed {self.seed}{', ' + sampling if sampling else ''}): "
            f"{s['query']:,} queries, {train}, {s['database']:,} database "
            f"(training items {where} the database)"
        )

    def subsets(self, dataset: Dataset) -> dict[str, Dataset]:
        """The parts of ``dataset`` as Datasets, keyed query / train / database / validation."""
        self.check(len(dataset))
        parts = {"query": self.query, "train": self.train, "database": self.database}
        if self.validation is not None:
            parts["validation"] = self.validation
        return {k: dataset.subset(v, name=f"{dataset.name}-{k}") for k, v in parts.items()}

    def save(self, path: str | Path) -> None:
        """Write the split to a ``.npz`` file (indices plus protocol, seed and info as JSON)."""
        arrays = {"query": self.query, "train": self.train, "database": self.database}
        if self.validation is not None:
            arrays["validation"] = self.validation
        header = {"protocol": self.protocol, "seed": self.seed, "info": self.info}
        np.savez_compressed(path, header=np.asarray(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by ``save`` (and check it again)."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                header = json.loads(str(stored["header"]))
                validation = stored["validation"] if "validation" in stored.files else None
                return cls(
                    query=stored["query"],
                    train=stored["train"],
                    database=stored["database"],
                    validation=validation,
                    protocol=header["protocol"],
                    seed=header["seed"],
                    info=header["info"],
                )
        except (OSError, KeyError, ValueError) as error:
            raise DataError(f"{path} is not a hashlab split file: {error}") from None


def _as_index_array(indices: Any, name: str) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"split {name} must be a 1-D array of integer indices")
    return array.astype(np.int64)


def _labels_of(dataset_or_labels: Dataset | np.ndarray | int) -> tuple[np.ndarray | None, int]:
    """(labels or None, number of items) from whatever the caller has."""
    if isinstance(dataset_or_labels, Dataset):
        labels = dataset_or_labels.labels
        return (None if labels is None else np.asarray(labels)), len(dataset_or_labels)
    if isinstance(dataset_or_labels, (int, np.integer)):
        return None, int(dataset_or_labels)
    labels = np.asarray(dataset_or_labels)
    if labels.ndim not in (1, 2):
        raise DataError(f"labels must be (N,) class ids or (N, C) multi-hot, got {labels.shape}")
    return labels, len(labels)


def _is_index(value: Any, names: list[str]) -> bool:
    return isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names)


def _fraction(n: int, fraction: float) -> int:
    return int(np.floor(n * fraction + 0.5))


def make_split(
    dataset_or_labels: Dataset | np.ndarray | int,
    protocol: str = "dch",
    seed: int = 0,
    n_query_per_class: int | None = None,
    n_train_per_class: int | None = None,
    n_validation_per_class: int | None = None,
    n_query: int | None = None,
    n_train: int | None = None,
    n_validation: int | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    train_in_database: bool | None = None,
) -> Split:
    """A seeded split of a Dataset, a label array, or N unlabeled items (see module docs).

    Per-class counts default to the protocol's (``dch``/``deephash``: 100 / 500) or, for
    ``per-class``, to 10% / 50% of the smallest class capped at 100 / 500. Uniform draws
    default to 10% / 50% of the items capped at 2,000 / 10,000 (the MIRFlickr-25K protocol
    of DCMH). Validation defaults to ``validation_fraction`` of the training items; pass 0
    for none. The same arguments and seed always give the same split.
    """
    name = protocol.lower().replace("_", "-")
    if name not in PROTOCOLS:
        raise DataError(f"unknown split protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    labels, n_items = _labels_of(dataset_or_labels)
    class_names = dataset_or_labels.class_names if isinstance(dataset_or_labels, Dataset) else None
    if n_items == 0:
        raise DataError("cannot split an empty data set")
    for arg_name, value in [
        ("n_query_per_class", n_query_per_class),
        ("n_train_per_class", n_train_per_class),
        ("n_validation_per_class", n_validation_per_class),
        ("n_query", n_query),
        ("n_train", n_train),
        ("n_validation", n_validation),
    ]:
        if value is not None and value < 0:
            raise DataError(f"{arg_name} must be 0 or more, got {value}")
    if not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    rng = np.random.default_rng(seed)
    if name == "listfile":
        return _list_split(dataset_or_labels, rng, seed, validation_fraction, n_validation)
    single_label = labels is not None and labels.ndim == 1

    if name in PAPER_PROTOCOLS or (name == "per-class" and single_label):
        if not single_label:
            raise DataError(
                f"protocol {name!r} samples per class and needs single-label data; "
                "use protocol='per-class' or 'random' for multi-label or unlabeled data"
            )
        if n_query is not None or n_train is not None or n_validation is not None:
            raise DataError(
                f"protocol {name!r} takes per-class counts (n_query_per_class, ...), not totals"
            )
        if name in PAPER_PROTOCOLS:
            default_query, default_train, default_in_db = PAPER_PROTOCOLS[name]
        else:
            smallest = min(int((labels == c).sum()) for c in np.unique(labels))
            default_query = min(100, max(1, _fraction(smallest, 0.1)))
            default_train = min(500, max(1, _fraction(smallest, 0.5)))
            default_in_db = True
        query, train, validation = _per_class_draw(
            labels,
            name,
            rng,
            default_query if n_query_per_class is None else n_query_per_class,
            default_train if n_train_per_class is None else n_train_per_class,
            n_validation_per_class,
            validation_fraction,
            class_names,
        )
        sampling = "stratified per class"
    else:
        if n_query is None and n_query_per_class is not None:
            n_query = n_query_per_class  # multi-label: no classes to stratify; counts are totals
        if n_train is None and n_train_per_class is not None:
            n_train = n_train_per_class
        if n_validation is None and n_validation_per_class is not None:
            n_validation = n_validation_per_class
        query, train, validation = _uniform_draw(
            n_items,
            name,
            rng,
            min(2000, max(1, _fraction(n_items, 0.1))) if n_query is None else n_query,
            min(10000, max(1, _fraction(n_items, 0.5))) if n_train is None else n_train,
            n_validation,
            validation_fraction,
        )
        sampling = "uniform by count"
        default_in_db = True

    in_db = default_in_db if train_in_database is None else train_in_database
    excluded = query if in_db else np.concatenate([query, train, validation])
    keep = np.ones(n_items, dtype=bool)
    keep[excluded] = False
    database = rng.permutation(np.flatnonzero(keep))
    if len(database) == 0:
        raise DataError(f"protocol {name!r} leaves no items for the database ({n_items} items)")
    return Split(
        query=query,
        train=train,
        database=database,
        validation=validation if len(validation) else None,
        protocol=name,
        seed=seed,
        info={"train_in_database": in_db, "sampling": sampling, "n_items": n_items},
    )


def _list_split(
    dataset: Dataset | np.ndarray | int,
    rng: np.random.Generator,
    seed: int,
    fraction: float,
    n_validation: int | None,
) -> Split:
    """The ``listfile`` protocol: the list files' own parts, queries kept apart (module docs)."""
    roles = dataset.info.get("list_split") if isinstance(dataset, Dataset) else None
    if roles is None:
        raise DataError(
            "protocol 'listfile' uses a data set's own list files; load one with "
            "hashlab.data.listfile.load_list_split (--dataset listfile, nuswide21, coco, ...)"
        )
    query, train, database = (np.asarray(roles[r], dtype=np.int64)
                              for r in ("query", "train", "database"))  # fmt: skip
    removed = {}
    for part_name, part in (("train", train), ("database", database)):
        leaked = np.isin(part, query)
        if leaked.any():
            removed[part_name] = int(leaked.sum())
    train, database = train[~np.isin(train, query)], database[~np.isin(database, query)]
    if not len(train) or not len(database):
        raise DataError("the list files leave no training or no database items apart from "
                        "the queries")  # fmt: skip
    in_db = bool(np.isin(train, database).any())
    labels = np.asarray(dataset.labels) if dataset.labels is not None else np.zeros(len(dataset))
    if n_validation is not None:
        fraction = n_validation / len(train)
    keep, held = carve_validation(labels[train], fraction, rng)
    sampling = "fixed by the list files"
    if removed:
        what = " and ".join(f"{n} {part}" for part, n in removed.items())
        sampling += f"; {what} items that are also queries removed"
    info = {"train_in_database": in_db, "sampling": sampling, "n_items": len(dataset),
            "removed_query_overlap": removed}  # fmt: skip
    if in_db and not np.isin(train, database).all():
        info["train_partly_in_database"] = int(np.isin(train, database).sum())
    # permuted like every other protocol's parts: list files are often sorted by class
    return Split(query=rng.permutation(query), train=train[keep],
                 database=rng.permutation(database),
                 validation=train[held] if len(held) else None, protocol="listfile", seed=seed,
                 info=info)  # fmt: skip


def _validation_count(n_train: int, requested: int | None, fraction: float, what: str) -> int:
    n_validation = _fraction(n_train, fraction) if requested is None else requested
    if n_validation and n_validation >= n_train:
        raise DataError(
            f"validation ({n_validation}{what}) would leave no training items out of {n_train}"
        )
    return n_validation


def _per_class_draw(
    labels: np.ndarray,
    protocol: str,
    rng: np.random.Generator,
    n_query: int,
    n_train: int,
    n_validation: int | None,
    fraction: float,
    class_names: list[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_val = _validation_count(n_train, n_validation, fraction, " per class")
    queries, trains, validations = [], [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        needed = n_query + n_train
        if len(members) < needed:
            named = (
                f" ({class_names[int(cls)]})" if class_names and _is_index(cls, class_names) else ""
            )
            raise DataError(
                f"class {cls}{named} has {len(members)} items but protocol {protocol!r} "
                f"needs {needed} per class ({n_query} queries + {n_train} train)"
            )
        drawn = rng.permutation(members)
        queries.append(drawn[:n_query])
        # validation is the first n_val of this class's training draw, train the rest
        validations.append(drawn[n_query : n_query + n_val])
        trains.append(drawn[n_query + n_val : needed])
    return (
        rng.permutation(np.concatenate(queries)),
        rng.permutation(np.concatenate(trains)),
        rng.permutation(np.concatenate(validations)),
    )


def _uniform_draw(
    n_items: int,
    protocol: str,
    rng: np.random.Generator,
    n_query: int,
    n_train: int,
    n_validation: int | None,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n_query + n_train > n_items:
        raise DataError(
            f"protocol {protocol!r} needs {n_query} queries + {n_train} train items but the "
            f"data set has only {n_items}"
        )
    n_val = _validation_count(n_train, n_validation, fraction, "")
    drawn = rng.permutation(n_items)
    query = drawn[:n_query]
    validation = drawn[n_query : n_query + n_val]
    train = drawn[n_query + n_val : n_query + n_train]
    return query, train, validation


def carve_validation(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions: ``fraction`` of each class (uniform for multi-label).

    Returns no validation when there are too few items to hold out at least two.
    """
    n = len(labels)
    if fraction <= 0 or int(n * fraction) < 2:
        return np.arange(n), np.empty(0, dtype=np.int64)
    if labels.ndim == 1:
        held = []
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            count = int(round(len(members) * fraction))
            held.append(members[: min(count, len(members) - 1)])
        validation = np.concatenate(held)
    else:
        validation = rng.permutation(n)[: int(n * fraction)]
    train = np.setdiff1d(np.arange(n), validation)
    return rng.permutation(train), np.sort(validation)
