"""The native engine: exact search by the cheapest of three plans, picked per query batch.

Plans (all exact, all ranked by (distance, tie key)):

* ``scan``: XOR + popcount over every row (the compiled kernel, AVX-512 where present),
  top-k by partial selection;
* ``hash``: bucket hashing on table 0's ``b``-bit key, probing every key within
  ``min(r, b)`` flips (faiss's ``IndexBinaryHash`` with ``nflip = r``): exact because a
  key's distance is at most the code's;
* ``mih``: multi-index hashing over all ``m`` tables at key radius ``floor(r / m)``
  (Norouzi et al.); k-NN grows the radius until the k-th distance is proven.

Planner (:meth:`NativeEngine.explain`): the scan costs one unit per row; a probe plan costs
``PROBE_COST`` per bucket probed plus ``VERIFY_COST`` per candidate row, and the number of
candidates is *measured*: the directories (bucket occupancy, kept from the build) are
looked up for up to ``PLANNER_SAMPLE`` queries of the batch, which is exact for those
queries, not a uniform-bits guess. k-NN starts with a pilot of queries under a work budget
(a fraction of a scan) and scans the queries whose probing would exceed it. ``plan=`` forces
a plan (tests run every plan against brute force).

Memory: ``scan`` adds nothing; ``hash`` adds table 0's directory (``4 * 2^b`` bytes, under
one byte per item); ``mih`` adds a directory and a 4-byte row permutation per extra table
(:func:`~hashlab.index.multi_index.plan_tables` keeps ``m`` within ``max_memory_ratio``).

Row order: table 0 is the rows themselves sorted by their key, so that bucket probes read
codes sequentially and need no permutation. Given ``rows_source`` and ``reorder`` (what
``HammingIndex`` passes), the engine reads its owner's code and id arrays without copying
them and asks the owner to reorder its rows once per build; standalone, it keeps its own
copy and maps its sorted positions back to the caller's rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from hashlab.index import scan as numpy_scan
from hashlab.index.engines import RangeResult, register_engine
from hashlab.index.multi_index import (
    HashTables,
    MihPlan,
    n_probes,
    plan_tables,
    table_bytes_per_item,
)
from hashlab.index.native import load_native, n_threads

__all__ = ["NativeEngine", "PLANS"]

PLANS = ("auto", "scan", "hash", "mih")
#: below this many rows a scan is always cheaper than building tables
MIN_TABLE_ROWS = 2048
#: rows appended after the tables were built are scanned until they exceed this share
TAIL_REBUILD_FRACTION = 0.05
#: costs in units of one scanned row (calibrated on the README's machine, AVX-512 scan)
PROBE_COST = 40.0
VERIFY_COST = 6.0
#: queries of a batch whose candidates are counted to cost the probe plans
PLANNER_SAMPLE = 16
#: a k-NN query may spend this share of a scan probing before it falls back to the scan
KNN_PROBE_BUDGET = 0.25
#: queries tried by probing before deciding whether the rest of the batch should be scanned
KNN_PILOT_QUERIES = 32
#: after a failed k-NN pilot, this many calls (at that k or larger) skip probing
KNN_SKIP_CALLS = 16
#: a filtered search over fewer allowed rows than this share gathers them and scans those
ALLOWED_GATHER_SHARE = 1 / 16


def _bitmask(flags: np.ndarray) -> np.ndarray:
    return np.packbits(flags, bitorder="little")


@register_engine("native")
class NativeEngine:
    """Exact Hamming search over packed codes: scan, bucket hashing or multi-index hashing."""

    name: ClassVar[str] = "native"
    exact: ClassVar[bool] = True

    def __init__(
        self,
        n_bits: int,
        plan: str = "auto",
        max_memory_ratio: float | None = 1.2,
        n_tables: int | None = None,
        min_table_rows: int = MIN_TABLE_ROWS,
        rows_source: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        reorder: Callable[[np.ndarray], None] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ValueError(f"unknown native engine parameters: {sorted(unknown)}")
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; expected one of {PLANS}")
        if (rows_source is None) != (reorder is None):
            raise ValueError("rows_source and reorder are given together (or neither)")
        self.n_bits = int(n_bits)
        self.n_bytes = (self.n_bits + 7) // 8
        self.plan = plan
        self.max_memory_ratio = max_memory_ratio
        self.n_tables = n_tables
        self.min_table_rows = min_table_rows
        self._source = rows_source
        self._reorder = reorder
        self._n = 0
        self._dead = np.zeros(0, dtype=np.uint8)  # bit-packed, little bit order, by row
        self._n_dead = 0
        # standalone storage: codes and keys in position order, position -> caller's row
        self._codes = np.zeros((0, self.n_bytes), dtype=np.uint8)
        self._keys = np.zeros(0, dtype=np.int64)
        self._row_of: np.ndarray | None = None
        self._pos_of: np.ndarray | None = None
        self.tables: HashTables | None = None
        self.last_plan: dict[str, Any] = {}
        self._knn_memory: dict[str, int] = {}

    # ------------------------------------------------------------------ contents -------
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._source is not None:
            codes, keys = self._source()
            return codes[: self._n], keys[: self._n]
        return self._codes[: self._n], self._keys[: self._n]

    def add(self, codes: np.ndarray, keys: np.ndarray | None = None) -> None:
        m = len(codes)
        if self._source is None:
            if keys is None:
                keys = np.arange(self._n, self._n + m, dtype=np.int64)
            self._codes = np.concatenate([self._codes[: self._n], np.asarray(codes, np.uint8)])
            self._keys = np.concatenate([self._keys[: self._n], np.asarray(keys, np.int64)])
            if self._row_of is not None:
                new = np.arange(self._n, self._n + m, dtype=np.int64)
                self._row_of = np.concatenate([self._row_of, new])
                self._pos_of = np.concatenate([self._pos_of, new])
        self._n += m
        grown = np.zeros((self._n + 7) // 8, dtype=np.uint8)
        grown[: len(self._dead)] = self._dead
        self._dead = grown

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if self._pos_of is not None:
            rows = self._pos_of[rows]
        flags = np.unpackbits(self._dead, bitorder="little", count=self._n).astype(bool)
        self._n_dead += int((~flags[rows]).sum())
        flags[rows] = True
        self._dead = _bitmask(flags)

    def __len__(self) -> int:
        return self._n - self._n_dead

    # ------------------------------------------------------------------ tables ---------
    def _table_plan(self) -> MihPlan:
        n_tables = self.n_tables
        if n_tables is None and self.plan == "mih":
            n_tables = max(2, plan_tables(self.n_bits, self._n, self.n_bytes, None).n_tables)
        return plan_tables(self.n_bits, self._n, self.n_bytes, self.max_memory_ratio, n_tables)

    def _apply_order(self, perm: np.ndarray | None) -> np.ndarray:
        """Sort rows by key 0: the owner's rows (callback) or our own positions."""
        if perm is not None:
            if self._reorder is not None:
                self._reorder(perm)
            else:
                self._codes = np.ascontiguousarray(self._codes[: self._n][perm])
                self._keys = self._keys[: self._n][perm]
                row_of = perm if self._row_of is None else self._row_of[perm]
                self._row_of = row_of
                self._pos_of = np.empty_like(row_of)
                self._pos_of[row_of] = np.arange(self._n, dtype=np.int64)
            flags = np.unpackbits(self._dead, bitorder="little", count=self._n).astype(bool)
            self._dead = _bitmask(flags[perm])
        return self._arrays()[0]

    def _ensure_tables(self, kernels) -> HashTables | None:
        forced = self.plan in ("hash", "mih")
        if kernels is None or self.n_bits > 2048 or self._n < 2:
            return None
        if self._n < self.min_table_rows and not forced:
            return None
        tables = self.tables
        if tables is not None and self._n - tables.n_rows <= TAIL_REBUILD_FRACTION * tables.n_rows:
            return tables
        codes = self._arrays()[0]
        self.tables = HashTables.build(
            kernels, codes, self._n, self.n_bits, self._table_plan(), self._apply_order
        )
        return self.tables

    def prepare(self) -> None:
        """Build (or rebuild) the tables now: the owner's rows may be reordered here, so a
        caller that computes row numbers (a filter's allowed rows) calls this first."""
        self._ensure_tables(load_native())

    # ------------------------------------------------------------------ planning -------
    def _skip(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return self._dead if self._n_dead else None
        flags = np.ones(self._n, dtype=bool)
        positions = allowed if self._pos_of is None else self._pos_of[allowed]
        flags[positions] = False
        return _bitmask(flags) | self._dead

    def explain(self, queries: np.ndarray, radius: int | None = None, k: int | None = None):
        """The plan a batch would get, with every plan's estimated cost and the reason."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        kernels = load_native()
        tables = self._ensure_tables(kernels)
        if radius is not None:
            return self._plan_range(tables, queries, radius)
        return self._plan_knn_estimate(tables, queries, k or 1)

    def _plan_range(self, tables: HashTables | None, queries: np.ndarray, radius: int):
        n_tail = self._n - (tables.n_rows if tables else 0)
        costs: dict[str, Any] = {"scan": {"cost": float(self._n)}}
        if tables is not None:
            sample = queries[:: max(1, len(queries) // PLANNER_SAMPLE)][:PLANNER_SAMPLE]
            b, m = tables.plan.key_bits, tables.plan.n_tables
            for name, n_tab, rho in (("hash", 1, radius), ("mih", m, radius // m)):
                if name == "mih" and m < 2:
                    continue
                probes = n_tab * n_probes(b, rho)
                candidates = tables.candidates(sample, rho, n_tab)
                measured = candidates is not None
                if candidates is None:  # too many probes to count: assume mean occupancy
                    candidates = probes * tables.n_rows / (1 << b)
                costs[name] = {
                    "cost": probes * PROBE_COST + candidates * VERIFY_COST + n_tail,
                    "probes": probes,
                    "candidates": candidates,
                    "candidates_measured": measured,
                    "key_radius": min(rho, b),
                }
        forced = self.plan != "auto"
        if forced and self.plan in costs:
            chosen, why = self.plan, f"forced by plan={self.plan!r}"
        else:
            chosen = min(costs, key=lambda name: costs[name]["cost"])
            why = (
                f"cheapest estimated cost ({costs[chosen]['cost']:.3g} scan-row units)"
                if tables is not None
                else f"no tables ({self._n} rows < {self.min_table_rows}, or no kernel)"
            )
            if forced:
                why += f"; plan={self.plan!r} not available"
        return {"query": "range", "radius": radius, "plan": chosen, "reason": why, "costs": costs}

    def _plan_knn_estimate(self, tables, queries: np.ndarray, k: int):
        if tables is None:
            return {"query": "knn", "k": k, "plan": "scan", "reason": "no tables"}
        if self.plan != "auto":
            why = f"forced by plan={self.plan!r}"
            return {"query": "knn", "k": k, "plan": self.plan, "reason": why}
        probe = "mih" if tables.plan.n_tables > 1 else "hash"
        return {
            "query": "knn",
            "k": k,
            "plan": f"{probe} (pilot of {KNN_PILOT_QUERIES} queries), scan fallback",
            "reason": (
                f"probe with a budget of {KNN_PROBE_BUDGET} x a scan per query; if half the "
                "pilot queries exceed it, the batch is scanned"
            ),
        }

    # ------------------------------------------------------------------ search ---------
    def _to_rows(self, positions: np.ndarray) -> np.ndarray:
        if self._row_of is None:
            return positions
        return np.where(positions >= 0, self._row_of[np.clip(positions, 0, None)], -1)

    def knn(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        nq = len(queries)
        if self._n == 0 or nq == 0:
            return np.full((nq, k), -1, np.int32), np.full((nq, k), -1, np.int64)
        if allowed is not None and len(allowed) < ALLOWED_GATHER_SHARE * self._n:
            return self._knn_gathered(queries, k, allowed)
        kernels = load_native()
        tables = self._ensure_tables(kernels)
        codes, keys = self._arrays()
        skip = self._skip(allowed)
        if kernels is None:
            d, pos = numpy_scan.knn_scan(codes, keys, skip, queries, (0, self._n), self.n_bits, k)
            self.last_plan = {"query": "knn", "plan": "scan (numpy)"}
            return d, self._to_rows(pos)
        if tables is None or self.plan == "scan":
            self.last_plan = {"query": "knn", "plan": "scan"}
            d, pos = kernels.knn_scan(codes, keys, skip, queries, (0, self._n), self.n_bits, k)
            return d, self._to_rows(pos)
        d, pos = self._knn_probe(kernels, tables, codes, keys, skip, queries, k)
        if tables.n_rows < self._n:  # rows added since the build: scan them and merge
            tail = kernels.knn_scan(codes, keys, skip, queries, (tables.n_rows, self._n),
                                    self.n_bits, k)  # fmt: skip
            d, pos = merge_topk([(d, pos), tail], keys, k)
        return d, self._to_rows(pos)

    def _knn_probe(self, kernels, tables, codes, keys, skip, queries, k):
        nq = len(queries)
        n_tab = 1 if self.plan == "hash" else tables.plan.n_tables
        kt = tables.as_kernel_tables(n_tab)
        forced = self.plan in ("hash", "mih")
        budget = math.inf if forced else KNN_PROBE_BUDGET * tables.n_rows
        n_rows = tables.n_rows
        d = np.full((nq, k), -1, dtype=np.int32)
        pos = np.full((nq, k), -1, dtype=np.int64)
        failed = np.ones(nq, dtype=bool)
        probed = "hash" if n_tab == 1 else "mih"
        memory = self._knn_memory
        if not forced and memory.get("k", -1) >= k and memory.get("skip_calls", 0) > 0:
            # recent pilots at this k or less failed: small batches (single queries) go
            # straight to the scan instead of paying a failing pilot each call
            memory["skip_calls"] -= 1
            self.last_plan = {"query": "knn", "plan": "scan", "reason": "recent pilots failed"}
            return kernels.knn_scan(codes, keys, skip, queries, (0, n_rows), self.n_bits, k)
        pilot = nq if forced else min(nq, KNN_PILOT_QUERIES)
        d[:pilot], pos[:pilot], failed[:pilot] = kernels.mih_knn(
            codes, keys, skip, queries[:pilot], n_rows, self.n_bits, k, budget, kt
        )
        if not forced:
            pilot_failed = failed[:pilot].mean() >= 0.5
            self._knn_memory = {"k": k, "skip_calls": KNN_SKIP_CALLS} if pilot_failed else {}
        if pilot < nq and failed[:pilot].mean() < 0.5:
            d[pilot:], pos[pilot:], failed[pilot:] = kernels.mih_knn(
                codes, keys, skip, queries[pilot:], n_rows, self.n_bits, k, budget, kt
            )
        n_failed = int(failed.sum())
        if n_failed:
            where = np.nonzero(failed)[0]
            d[where], pos[where] = kernels.knn_scan(
                codes, keys, skip, queries[where], (0, n_rows), self.n_bits, k
            )
        self.last_plan = {
            "query": "knn",
            "plan": probed if n_failed == 0 else ("scan" if n_failed == nq else f"{probed}+scan"),
            "probed_queries": nq - n_failed,
            "scanned_queries": n_failed,
        }
        return d, pos

    def _knn_gathered(self, queries, k, allowed):
        """A filter that leaves few rows: compute their distances only."""
        codes, keys = self._arrays()
        positions = np.asarray(allowed if self._pos_of is None else self._pos_of[allowed])
        positions = positions[~numpy_scan.skipped_rows(self._dead, positions)]
        sub_codes, sub_keys = np.ascontiguousarray(codes[positions]), keys[positions]
        kernels = load_native()
        scan = kernels.knn_scan if kernels is not None else numpy_scan.knn_scan
        d, local = scan(sub_codes, sub_keys, None, queries, (0, len(positions)), self.n_bits, k)
        pos = np.where(local >= 0, positions[np.clip(local, 0, None)], -1)
        self.last_plan = {"query": "knn", "plan": f"gathered scan of {len(positions)} allowed rows"}
        return d, self._to_rows(pos)

    def range(
        self, queries: np.ndarray, radius: int, allowed: np.ndarray | None = None
    ) -> RangeResult:
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        radius = int(min(radius, self.n_bits))
        nq = len(queries)
        if self._n == 0 or nq == 0:
            return RangeResult.empty(nq)
        kernels = load_native()
        if allowed is not None and len(allowed) < ALLOWED_GATHER_SHARE * self._n:
            return self._range_gathered(kernels, queries, radius, allowed)
        tables = self._ensure_tables(kernels)
        codes, keys = self._arrays()
        skip = self._skip(allowed)
        if kernels is None:
            self.last_plan = {"query": "range", "plan": "scan (numpy)"}
            out = numpy_scan.range_scan(codes, keys, skip, queries, (0, self._n), self.n_bits,
                                        radius)  # fmt: skip
            return self._range_result(*out)
        decision = self._plan_range(tables, queries, radius)
        self.last_plan = decision
        if decision["plan"] == "scan":
            out = kernels.range_scan(codes, keys, skip, queries, (0, self._n), self.n_bits, radius)
            return self._range_result(*out)
        n_tab = 1 if decision["plan"] == "hash" else tables.plan.n_tables
        work = decision["costs"].get(decision["plan"], {}).get("cost", tables.n_rows) * nq
        out = kernels.mih_range(codes, keys, skip, queries, tables.n_rows, self.n_bits, radius,
                                tables.as_kernel_tables(n_tab), work)  # fmt: skip
        if tables.n_rows < self._n:
            tail = kernels.range_scan(codes, keys, skip, queries, (tables.n_rows, self._n),
                                      self.n_bits, radius)  # fmt: skip
            out = merge_ranges(out, tail, keys)
        return self._range_result(*out)

    def _range_gathered(self, kernels, queries, radius, allowed):
        codes, keys = self._arrays()
        positions = np.asarray(allowed if self._pos_of is None else self._pos_of[allowed])
        positions = positions[~numpy_scan.skipped_rows(self._dead, positions)]
        sub_codes, sub_keys = np.ascontiguousarray(codes[positions]), keys[positions]
        scan = kernels.range_scan if kernels is not None else numpy_scan.range_scan
        offsets, local, d = scan(sub_codes, sub_keys, None, queries, (0, len(positions)),
                                 self.n_bits, radius)  # fmt: skip
        self.last_plan = {"query": "range", "plan": f"gathered scan of {len(positions)} rows"}
        return self._range_result(offsets, positions[local], d)

    def _range_result(self, offsets, positions, distances) -> RangeResult:
        rows = positions if self._row_of is None else self._row_of[positions]
        return RangeResult(offsets, rows, distances)

    # ------------------------------------------------------------------ info -----------
    def memory_bytes(self) -> int:
        total = self._dead.nbytes + (0 if self.tables is None else self.tables.memory_bytes)
        if self._source is None:
            total += self._codes.nbytes + self._keys.nbytes
            for extra in (self._row_of, self._pos_of):
                total += 0 if extra is None else extra.nbytes
        return int(total)

    def info(self) -> dict[str, Any]:
        kernels = load_native()
        info: dict[str, Any] = {
            "engine": self.name,
            "kernel": f"compiled ({kernels.cpu_level}, {n_threads()} threads)"
            if kernels is not None
            else "numpy fallback",
            "plan": self.plan,
            "max_memory_ratio": self.max_memory_ratio,
            "memory_bytes": self.memory_bytes(),
        }
        n = max(self._n, 2)
        raw = n * (self.n_bytes + 8)
        tables = self.tables
        plan = tables.plan if tables is not None else self._table_plan()
        dir_bytes = 4 * ((1 << plan.key_bits) + 1)
        # mih as built, or (when the memory cap kept one table) at the paper's m: what it
        # would cost, which is why it was not built
        mih = plan if plan.n_tables > 1 else plan_tables(self.n_bits, n, self.n_bytes, None)
        info["bytes_per_item"] = {
            "raw_codes_and_ids": self.n_bytes + 8,
            "scan": 0.0,
            "hash": dir_bytes / n,
            f"mih (m={mih.n_tables})": table_bytes_per_item(mih.n_tables, mih.key_bits, n),
        }
        info["memory_ratio_by_plan"] = {
            name: (raw + value * n) / raw
            for name, value in info["bytes_per_item"].items()
            if name != "raw_codes_and_ids"
        }
        info["tables"] = plan.to_dict() | {
            "built": tables is not None,
            "rows": 0 if tables is None else tables.n_rows,
        }
        if tables is not None:
            info["tables"]["key_bit_positions"] = tables.positions.tolist()
            info["tables"]["occupancy"] = tables.stats["tables"]
        if self.last_plan:
            info["last_plan"] = self.last_plan
        return info


def merge_topk(partials, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge (distances, rows) top-k lists of the same queries by (distance, key)."""
    d = np.concatenate([p[0] for p in partials], axis=1)
    rows = np.concatenate([p[1] for p in partials], axis=1)
    sort_d = np.where(d < 0, np.iinfo(np.int32).max, d).astype(np.int64)
    sort_key = np.where(rows >= 0, keys[np.clip(rows, 0, None)], np.iinfo(np.int64).max)
    order = np.lexsort((sort_key, sort_d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(rows, order, axis=1)


def merge_ranges(a, b, keys: np.ndarray):
    """Join two (offsets, rows, distances) results of the same queries, re-sorted."""
    (off_a, rows_a, d_a), (off_b, rows_b, d_b) = a, b
    nq = len(off_a) - 1
    q_of = np.concatenate([np.repeat(np.arange(nq), np.diff(off_a)),
                           np.repeat(np.arange(nq), np.diff(off_b))])  # fmt: skip
    rows = np.concatenate([rows_a, rows_b])
    d = np.concatenate([d_a, d_b])
    order = np.lexsort((keys[rows], d, q_of))
    return off_a + off_b, rows[order], d[order]
