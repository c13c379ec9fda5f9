"""Hash tables on bit substrings: bucket hashing (one table) and multi-index hashing (m tables).

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012
/ TPAMI 2014. ``m`` tables each key every code by ``b`` of its bits, the tables' bits
disjoint. If ``||q - x||_H <= r`` then some table's key of ``x`` is within ``floor(r / m)``
of the query's key (pigeonhole, Prop. 1), so probing every table at that key radius and
verifying candidates with the full distance is exact. With ``m = 1`` this is bucket hashing
with ``r`` flips (what faiss's ``IndexBinaryHash`` does with ``nflip``), made exact.

Which bits: learned codes have skewed and correlated bits, and a key of low-entropy bits
puts most codes in a few buckets. Key bits are chosen greedily on a sample of rows, each
step adding the bit that most raises the joint entropy of that table's key (tables take
turns, so their bits stay disjoint), instead of taking bit positions in order.

Layout (not the paper's hash maps): table 0 is the rows themselves, sorted by key 0 (the
owner reorders its rows once, when the tables are built), plus a CSR directory of
``2^b + 1`` bucket offsets; tables 1..m-1 are a ``uint32`` row permutation sorted by their
key plus a directory. Memory per item: ``4 * 2^b / N`` bytes for each directory and 4 bytes
for each extra table: :func:`plan_tables` lowers ``m`` until the tables fit
``max_memory_ratio`` of the raw code + id bytes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from hashlab.index.native import Kernels

__all__ = ["MihPlan", "plan_tables", "HashTables", "choose_key_bits", "table_bytes_per_item"]

#: largest key: a directory of 2^24 offsets is 64 MiB, beyond any sensible table here
MAX_KEY_BITS = 24
#: rows sampled to choose key bits by entropy
ENTROPY_SAMPLE = 1 << 16


@dataclass(frozen=True)
class MihPlan:
    """How many tables of how many key bits, and why."""

    n_tables: int
    key_bits: int
    paper_tables: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_bytes_per_item(n_tables: int, key_bits: int, n_rows: int) -> float:
    """Bytes per item the tables add: directories, and a permutation per table after the first."""
    directory = 4 * ((1 << key_bits) + 1)
    return (n_tables * directory + (n_tables - 1) * 4 * n_rows) / max(n_rows, 1)


def plan_tables(
    n_bits: int,
    n_rows: int,
    n_bytes: int,
    max_memory_ratio: float | None = 1.2,
    n_tables: int | None = None,
) -> MihPlan:
    """Number of tables and key length for ``n_rows`` codes of ``n_bits`` bits.

    Keys of ``floor(log2 N) - 2`` bits (about 4-8 items per bucket when bits are balanced);
    ``m`` as the paper recommends (``m ~= K / log2 N``, Sec. 3.2), lowered until the tables
    fit ``max_memory_ratio`` x (code bytes + 8-byte ids); ``n_tables`` forces ``m``.
    """
    log2_n = math.log2(max(n_rows, 2))
    paper = max(1, min(n_bits, 64, round(n_bits / log2_n)))
    base_bits = max(1, min(MAX_KEY_BITS, n_bits, int(math.floor(log2_n)) - 2))
    if n_tables is not None:
        m = max(1, min(int(n_tables), n_bits, 64))
        return MihPlan(m, max(1, min(base_bits, n_bits // m)), paper, f"forced: m = {m}")
    allowed = math.inf if max_memory_ratio is None else (max_memory_ratio - 1.0) * (n_bytes + 8)
    m, reason = paper, "paper: m = round(K / log2 N)"
    while m > 1:
        # shorter keys (smaller directories, fuller buckets) before fewer tables: one bit
        # halves a directory, a table less loses the pigeonhole's reach
        for b in range(base_bits, max(base_bits - 4, 0), -1):
            b = max(1, min(b, n_bits // m))
            if table_bytes_per_item(m, b, n_rows) <= allowed:
                if m < paper or b < base_bits:
                    reason = (
                        f"memory: m = {m} of the paper's {paper}, keys of {b} bits: each table "
                        f"after the first costs a 4-byte row permutation per item, and "
                        f"{max_memory_ratio}x raw allows {allowed:.1f} bytes per item"
                    )
                return MihPlan(m, b, paper, reason)
        m -= 1
        reason = (
            f"memory: m lowered from {paper} to {m}: each table after the first costs a 4-byte "
            f"row permutation per item, and {max_memory_ratio}x raw allows "
            f"{allowed:.1f} bytes per item"
        )
    return MihPlan(m, max(1, min(base_bits, n_bits // m)), paper, reason)


def _entropy(labels: np.ndarray, n_labels: int) -> float:
    counts = np.bincount(labels, minlength=n_labels)
    p = counts[counts > 0] / labels.size
    return float(-(p * np.log2(p)).sum())


def choose_key_bits(bits: np.ndarray, n_tables: int, key_bits: int) -> np.ndarray:
    """(n_tables, key_bits) disjoint bit positions, greedily maximising each key's entropy.

    ``bits``: a sample of unpacked (S, K) 0/1 codes. Ties (the joint entropy saturates at
    log2 S) go to the bit with the higher marginal entropy, then the lower position.
    """
    n_sample, n_bits = bits.shape
    mean = bits.mean(axis=0) if n_sample else np.full(n_bits, 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        marginal = -(mean * np.log2(mean) + (1 - mean) * np.log2(1 - mean))
    marginal = np.nan_to_num(marginal)
    free = np.ones(n_bits, dtype=bool)
    labels = np.zeros((n_tables, n_sample), dtype=np.int64)
    n_labels = np.ones(n_tables, dtype=np.int64)
    chosen = np.zeros((n_tables, key_bits), dtype=np.int32)
    for step in range(key_bits):
        for table in range(n_tables):
            best, best_score = -1, (-1.0, -1.0)
            for bit in np.nonzero(free)[0]:
                joint = _entropy(labels[table] * 2 + bits[:, bit], 2 * int(n_labels[table]))
                score = (round(joint, 9), float(marginal[bit]))
                if score > best_score:
                    best, best_score = int(bit), score
            free[best] = False
            chosen[table, step] = best
            # relabel densely so the next step's labels stay below 2 * S
            _, inverse = np.unique(labels[table] * 2 + bits[:, best], return_inverse=True)
            labels[table] = inverse.ravel()
            n_labels[table] = int(inverse.max()) + 1 if n_sample else 1
    return chosen


@lru_cache(maxsize=64)
def flip_masks(key_bits: int, rho: int) -> np.ndarray:
    """Every key XOR mask with at most ``rho`` set bits (the probes of a key radius ``rho``)."""
    masks = [0]
    for flips in range(1, rho + 1):
        for combo in itertools.combinations(range(key_bits), flips):
            masks.append(sum(1 << b for b in combo))
    return np.asarray(masks, dtype=np.int64)


def n_probes(key_bits: int, rho: int) -> int:
    return sum(math.comb(key_bits, i) for i in range(min(rho, key_bits) + 1))


@dataclass
class HashTables:
    """Built tables over rows ``[0, n_rows)`` of a code array sorted by key 0."""

    plan: MihPlan
    n_rows: int
    n_bits: int
    positions: np.ndarray  # (m, b) int32
    masks: np.ndarray  # (m, n_bytes) uint8
    dirs: list[np.ndarray]
    perms: list[np.ndarray | None]
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        kernels: Kernels,
        codes: np.ndarray,
        n_rows: int,
        n_bits: int,
        plan: MihPlan,
        reorder,
        seed: int = 0,
    ) -> HashTables:
        """Choose key bits, have ``reorder(perm)`` sort the rows by key 0, build the rest.

        ``reorder(perm)`` must make row ``i`` hold what row ``perm[i]`` held and return the
        codes array afterwards; ``perm`` is ``None`` when the rows are in order already.
        """
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(n_rows, min(n_rows, ENTROPY_SAMPLE), replace=False))
        sample = np.unpackbits(np.asarray(codes[take]), axis=1)[:, :n_bits]
        positions = choose_key_bits(sample, plan.n_tables, plan.key_bits)
        n_buckets = 1 << plan.key_bits
        key0 = kernels.gather_keys(codes, n_rows, positions[0])
        directory, perm = kernels.counting_sort(key0, n_buckets)
        in_order = n_rows < 2 or not np.any(key0[1:] < key0[:-1])
        codes = reorder(None if in_order else perm.astype(np.int64))
        dirs, perms = [directory], [None]
        for table in range(1, plan.n_tables):
            keys = kernels.gather_keys(codes, n_rows, positions[table])
            directory, perm = kernels.counting_sort(keys, n_buckets)
            dirs.append(directory)
            perms.append(perm)
        n_bytes = codes.shape[1]
        masks = np.zeros((plan.n_tables, n_bytes * 8), dtype=np.uint8)
        for table in range(plan.n_tables):
            masks[table, positions[table]] = 1
        tables = cls(
            plan, n_rows, n_bits, positions, np.packbits(masks, axis=1), dirs, perms
        )
        tables.stats = tables.occupancy()
        return tables

    def occupancy(self) -> dict[str, Any]:
        """Bucket statistics kept from the build: what the planner's estimates start from."""
        out = []
        for directory in self.dirs:
            counts = np.diff(directory.astype(np.int64))
            out.append(
                {
                    "mean": float(counts.mean()),
                    # the bucket a random item (and so a query like it) falls in, on average
                    "size_biased_mean": float((counts**2).sum() / max(self.n_rows, 1)),
                    "max": int(counts.max()),
                    "nonempty_share": float((counts > 0).mean()),
                }
            )
        return {"tables": out}

    def as_kernel_tables(self, n_tables: int | None = None) -> tuple:
        """The tuple the kernel reads; ``n_tables=1`` gives the bucket-hash plan on table 0."""
        m = self.plan.n_tables if n_tables is None else n_tables
        return (
            self.plan.key_bits,
            np.ascontiguousarray(self.positions[:m]),
            np.ascontiguousarray(self.masks[:m]),
            self.dirs[:m],
            self.perms[:m],
        )

    @property
    def memory_bytes(self) -> int:
        total = sum(d.nbytes for d in self.dirs)
        return total + sum(p.nbytes for p in self.perms if p is not None)

    def query_keys(self, queries: np.ndarray, table: int) -> np.ndarray:
        bits = np.unpackbits(queries, axis=1)[:, self.positions[table]].astype(np.int64)
        weights = 1 << np.arange(self.plan.key_bits - 1, -1, -1, dtype=np.int64)
        return bits @ weights

    def candidates(self, queries: np.ndarray, rho: int, n_tables: int) -> float | None:
        """Mean rows probed per query at key radius ``rho`` in the first ``n_tables`` tables,
        measured on the directories; ``None`` when the probes are too many to count."""
        b = self.plan.key_bits
        if n_probes(b, rho) * len(queries) > 4_000_000:
            return None
        masks = flip_masks(b, min(rho, b))
        total = 0
        for table in range(n_tables):
            keys = self.query_keys(queries, table)[:, None] ^ masks[None, :]
            directory = self.dirs[table]  # uint32; only the probed entries are widened
            total += int((directory[keys + 1].astype(np.int64) - directory[keys]).sum())
        return total / max(len(queries), 1)
