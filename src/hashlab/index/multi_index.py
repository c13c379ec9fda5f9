"""Multi-index hashing (MIH) for exact radius and k-NN search in Hamming space.

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012
/ "Fast Exact Search in Hamming Space with Multi-Index Hashing", TPAMI 2014.

The code is cut into ``m`` disjoint keys. If ``||q - x||_H <= r`` then some key of ``x`` is
within ``floor(r / m)`` of the same key of ``q`` (pigeonhole, Prop. 1), so probing every
table at that radius and verifying the candidates with the full distance is exact. k-NN
grows the probe radius ``rho`` and stops once the k-th distance found is at most
``m (rho + 1) - 1`` (Sec. 4.1): no unseen item can be closer.

How we lay out the tables (not the paper's hash maps): table 0 is the database itself, kept
sorted by key 0, plus a CSR directory of ``2^b + 1`` bucket offsets; tables 1..m-1 are a
``uint32`` row permutation sorted by their key plus a directory. That keeps the index
within ``max_memory_ratio`` (default 1.2) of the raw codes + ids, and the plan below
lowers ``m`` from the paper's recommendation ``m ~= K / log2 N`` (Sec. 3.2) until the
permutations fit. Keys are ``b = floor(log2 N) - 2`` bits (about 4-8 items per bucket) so a
directory costs at most about one byte per item. A cost model picks the linear scan instead
whenever probing would touch more than the scan (large radius, small N).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hashlab.index.native import NativeKernels

__all__ = ["MihPlan", "plan_tables", "MultiIndexTables", "PROBE_COST", "VERIFY_COST"]

#: cost of one probe / one verified candidate, in rows of a linear scan (same constants as
#: the C kernel: a probe is a random directory access, a candidate a random row access)
PROBE_COST = 24.0
VERIFY_COST = 4.0
#: largest key: a directory of 2^28 offsets is 1 GiB, beyond any sensible table
MAX_KEY_BITS = 28


@dataclass(frozen=True)
class MihPlan:
    n_tables: int
    key_bits: int
    paper_tables: int
    key_offsets: tuple[int, ...]
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def plan_tables(
    n_bits: int, n_rows: int, n_bytes: int, max_memory_ratio: float | None = 1.2
) -> MihPlan:
    """Number of tables and key length for ``n_rows`` codes of ``n_bits`` bits."""
    log2_n = math.log2(max(n_rows, 2))
    # the kernel keeps one query key per table on the stack: at most 64 tables
    paper_tables = max(1, min(n_bits, 64, round(n_bits / log2_n)))
    base_key_bits = max(1, min(MAX_KEY_BITS, int(math.floor(log2_n)) - 2))
    raw = n_rows * (n_bytes + 8)
    allowed = math.inf if max_memory_ratio is None else (max_memory_ratio - 1.0) * raw
    n_tables = paper_tables
    reason = "paper: m = round(K / log2 N)"
    while n_tables > 1:
        key_bits = min(base_key_bits, n_bits // n_tables)
        directory = 4 * ((1 << key_bits) + 1)
        cost = n_tables * directory + (n_tables - 1) * 4 * n_rows
        if cost <= allowed:
            break
        n_tables -= 1
        reason = f"memory: m lowered from {paper_tables} to fit {max_memory_ratio}x raw bytes"
    key_bits = max(1, min(base_key_bits, n_bits // n_tables))
    stride = n_bits // n_tables
    offsets = tuple(j * stride for j in range(n_tables))
    return MihPlan(n_tables, key_bits, paper_tables, offsets, reason)


class MultiIndexTables:
    """Built tables over rows ``[0, n_rows)`` of a code array sorted by key 0."""

    def __init__(
        self, native: NativeKernels, codes: np.ndarray, n_rows: int, n_bits: int, plan: MihPlan
    ) -> None:
        self.native = native
        self.codes = codes
        self.n_rows = n_rows
        self.n_bits = n_bits
        self.plan = plan
        self.n_tables = plan.n_tables
        self.key_bits = plan.key_bits
        self.key_offsets = np.asarray(plan.key_offsets, dtype=np.int32)
        n_buckets = 1 << plan.key_bits
        self.dirs: list[np.ndarray] = []
        self.perms: list[np.ndarray | None] = []
        for table, offset in enumerate(plan.key_offsets):
            keys = native.extract_keys(codes, n_rows, offset, plan.key_bits)
            directory, perm = native.counting_sort(keys, n_buckets)
            if table == 0:
                if n_rows > 1 and np.any(keys[1:] < keys[:-1]):
                    raise ValueError("rows must be sorted by key 0 before building tables")
                perm = None  # the rows are the table
            self.dirs.append(directory)
            self.perms.append(perm)
        self.perm_addresses = np.array(
            [0 if p is None else p.ctypes.data for p in self.perms], dtype=np.uint64
        )
        self.dir_addresses = np.array([d.ctypes.data for d in self.dirs], dtype=np.uint64)

    @staticmethod
    def sort_order(native: NativeKernels, codes: np.ndarray, n_rows: int, plan: MihPlan):
        """Stable permutation that sorts rows by key 0, or ``None`` if already sorted."""
        keys = native.extract_keys(codes, n_rows, plan.key_offsets[0], plan.key_bits)
        if n_rows < 2 or not np.any(keys[1:] < keys[:-1]):
            return None
        _, perm = native.counting_sort(keys, 1 << plan.key_bits)
        return perm

    @property
    def memory_bytes(self) -> int:
        total = sum(d.nbytes for d in self.dirs)
        return total + sum(p.nbytes for p in self.perms if p is not None)

    def probes_for_radius(self, radius: int) -> float:
        rho = min(radius // self.n_tables, self.key_bits)
        return self.n_tables * sum(math.comb(self.key_bits, i) for i in range(rho + 1))

    def range_cost(self, radius: int) -> float:
        """Expected work of a radius query in rows-of-a-scan (uniform codes)."""
        mean_bucket = self.n_rows / (1 << self.key_bits)
        return self.probes_for_radius(radius) * (PROBE_COST + VERIFY_COST * mean_bucket)

    def range_search(self, dead, queries: np.ndarray, radius: int):
        return self.native.mih_range(self, dead, queries, radius)

    def knn_search(self, dead, ids: np.ndarray, queries: np.ndarray, k: int, budget: float):
        return self.native.mih_knn(self, dead, ids, queries, k, budget)
