"""Engines against brute force: every plan of the native engine forced, every CPU level of the
compiled kernel, skewed and duplicated codes, and the protocol every engine shares."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from hashlab.codes import hamming_distance_matrix
from hashlab.index import HammingIndex
from hashlab.index.engines import Engine, RangeResult, create_engine, list_engines
from hashlab.index.engines.native import NativeEngine
from hashlab.index.multi_index import choose_key_bits
from hashlab.index.native import compiler_available, load_native

PLANS = ["scan", "hash", "mih"]
needs_kernel = pytest.mark.skipif(load_native() is None, reason="compiled kernel not built")


def skewed_codes(rng, n, n_bits):
    """Learned-code-like bits: most bits nearly constant, a few balanced, some correlated."""
    p_one = np.where(np.arange(n_bits) % 4 == 0, 0.5, 0.03)
    bits = (rng.random((n, n_bits)) < p_one).astype(np.uint8)
    bits[:, 1::8] = bits[:, 0::8][:, : bits[:, 1::8].shape[1]]  # exact copies of other bits
    return bits


def duplicated_codes(rng, n, n_bits):
    """Many exact duplicates: 40 distinct codes, some of them 1 bit apart."""
    palette = rng.integers(0, 2, (40, n_bits), dtype=np.uint8)
    palette[20:] = palette[:20]
    palette[20:, 0] ^= 1
    return palette[rng.integers(0, 40, n)]


def clustered_codes(rng, n, n_bits, n_centres=30, flip=0.04):
    centres = rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8)
    bits = centres[rng.integers(0, n_centres, n)]
    return (bits ^ (rng.random(bits.shape) < flip)).astype(np.uint8)


MAKERS = {"skewed": skewed_codes, "duplicates": duplicated_codes, "clustered": clustered_codes}


def brute(db_bits, keys, q_bits, k=None, radius=None):
    dist = hamming_distance_matrix(q_bits, db_bits)
    out = []
    for i in range(len(q_bits)):
        order = np.lexsort((keys, dist[i]))
        if radius is not None:
            order = order[dist[i, order] <= radius]
        else:
            order = order[:k]
        out.append((keys[order], dist[i, order]))
    return out


@needs_kernel
@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("n_bits", [32, 64, 100])
def test_every_plan_matches_brute_force(plan, kind, n_bits):
    rng = np.random.default_rng(n_bits + len(kind))
    n = 3000
    db = MAKERS[kind](rng, n, n_bits)
    ids = rng.permutation(5 * n)[:n]  # ids unrelated to rows: ties must follow ids
    queries = np.concatenate([db[:12], MAKERS[kind](rng, 8, n_bits)])
    index = HammingIndex(n_bits, backend_params={"plan": plan})
    index.add(db, ids=ids)
    for radius in range(4):
        got = index.range_search(queries, radius)
        assert index.engine.last_plan["plan"] == plan
        for (gi, gd), (wi, wd) in zip(got, brute(db, ids, queries, radius=radius), strict=True):
            np.testing.assert_array_equal(gd, wd)
            np.testing.assert_array_equal(gi, wi)
    for k in (1, 10, 64):
        got_ids, got_d = index.search(queries, k)
        for i, (wi, wd) in enumerate(brute(db, ids, queries, k=k)):
            np.testing.assert_array_equal(got_d[i], wd)
            np.testing.assert_array_equal(got_ids[i], wi)
    tables = index.info()["engine"]["tables"]
    if plan == "mih":
        assert tables["n_tables"] >= 2
    if plan != "scan":
        assert tables["built"] and tables["rows"] == n


@needs_kernel
@pytest.mark.parametrize("plan", PLANS)
def test_plans_after_adds_removes_and_a_filter(plan):
    """Tail rows (added after the build), tombstones and an allowed set, per plan."""
    rng = np.random.default_rng(1)
    db = clustered_codes(rng, 4000, 64)
    index = HammingIndex(64, backend_params={"plan": plan})
    index.add(db[:3000], metadata=[{"even": i % 2 == 0} for i in range(3000)])
    index.search(db[:2], 3)  # tables over the first 3000 rows
    index.add(db[3000:3100], metadata=[{"even": i % 2 == 0} for i in range(3000, 3100)])
    gone = np.arange(0, 3100, 7)
    index.remove(gone)
    keep = np.setdiff1d(np.arange(3100), gone)
    queries = db[:10]
    for radius in (0, 3):
        got = index.range_search(queries, radius)
        for (gi, gd), (wi, wd) in zip(got, brute(db[keep], keep, queries, radius=radius),
                                      strict=True):  # fmt: skip
            np.testing.assert_array_equal(gi, wi)
            np.testing.assert_array_equal(gd, wd)
    got_ids, got_d = index.search(queries, 20)
    for i, (wi, wd) in enumerate(brute(db[keep], keep, queries, k=20)):
        np.testing.assert_array_equal(got_ids[i], wi)
        np.testing.assert_array_equal(got_d[i], wd)
    even = keep[keep % 2 == 0]
    got_ids, got_d = index.search(queries, 5, filter="even == true")
    for i, (wi, wd) in enumerate(brute(db[even], even, queries, k=5)):
        np.testing.assert_array_equal(got_ids[i], wi)
        np.testing.assert_array_equal(got_d[i], wd)


@needs_kernel
@pytest.mark.parametrize("level", ["plain", "popcnt", "avx2", "avx512"])
def test_every_cpu_level_gives_the_same_answers(level):
    kernels = load_native()
    rng = np.random.default_rng(3)
    try:
        for n_bits in (32, 64, 128, 72):
            db = clustered_codes(rng, 5000, n_bits, flip=0.1)
            ids = rng.permutation(5000)
            queries = np.concatenate([db[:5], rng.integers(0, 2, (5, n_bits), dtype=np.uint8)])
            kernels.set_cpu_level("best")
            index = HammingIndex(n_bits, backend_params={"plan": "scan"})
            index.add(db, ids=ids)
            want_knn = index.search(queries, 17)
            want_range = index.range_search(queries, n_bits // 4)
            used = kernels.set_cpu_level(level)
            assert used.startswith(level) or level != "plain"  # unsupported levels fall back
            got_knn = index.search(queries, 17)
            got_range = index.range_search(queries, n_bits // 4)
            for a, b in zip(got_knn, want_knn, strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got_range.ids, want_range.ids)
            np.testing.assert_array_equal(got_range.distances, want_range.distances)
            np.testing.assert_array_equal(got_range.offsets, want_range.offsets)
    finally:
        kernels.set_cpu_level("best")


def test_compiled_kernel_is_present_where_a_compiler_exists():
    """Fails loudly if the install skipped the extension although a C compiler is here."""
    if not compiler_available():
        pytest.skip("no C compiler on this machine: the numpy fallback is expected")
    assert load_native() is not None, (
        "a C compiler exists but hashlab.index._hamming is not built: run `pip install -e .`"
    )
    assert load_native().cpu_level in ("plain", "popcnt", "avx2", "avx512-vpopcntdq")


def test_numpy_fallback_warns_once_and_says_how_much_slower():
    code = (
        "import warnings, numpy as np\n"
        "warnings.simplefilter('always')\n"
        "import hashlab.index.native as n\n"
        "n._import_extension = lambda: None\n"
        "from hashlab.index import HammingIndex\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    index = HammingIndex(16); index.add(np.eye(16, dtype=np.uint8))\n"
        "    a = index.search(np.eye(16, dtype=np.uint8)[:2], 2)\n"
        "    b = index.range_search(np.eye(16, dtype=np.uint8)[:2], 2)\n"
        "messages = [str(w.message) for w in caught if 'numpy' in str(w.message)]\n"
        "assert len(messages) == 1, messages\n"
        "assert 'x slower' in messages[0], messages\n"
        "assert a[0][0].tolist() == [0, 1] and b[0][0].tolist()[:1] == [0]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


@needs_kernel
def test_key_bits_are_chosen_by_entropy_not_position():
    rng = np.random.default_rng(0)
    bits = np.zeros((4000, 32), dtype=np.uint8)
    bits[:, 20:] = rng.integers(0, 2, (4000, 12))  # only the last 12 bits carry information
    bits[:, 31] = bits[:, 30]  # ... and bit 31 repeats bit 30
    chosen = choose_key_bits(bits, 1, 11)[0]
    assert sorted(chosen.tolist()) == list(range(20, 31))
    # on such codes the table's buckets are balanced: the query's bucket is ~n / 2^11
    db = np.tile(bits, (2, 1))
    engine = NativeEngine(32, plan="hash", min_table_rows=0)
    engine.add(np.packbits(db, axis=1))
    engine.knn(np.packbits(db[:1], axis=1), 1)
    stats = engine.info()["tables"]["occupancy"][0]
    assert stats["size_biased_mean"] < 20


@needs_kernel
def test_planner_reasons_from_measured_occupancy():
    rng = np.random.default_rng(2)
    uniform = HammingIndex(64)
    uniform.add(rng.integers(0, 2, (40000, 64), dtype=np.uint8))
    q = rng.integers(0, 2, (50, 64), dtype=np.uint8)
    plan = uniform.explain(q, radius=1)
    assert plan["plan"] == "hash" and plan["costs"]["hash"]["candidates_measured"]
    assert plan["costs"]["hash"]["cost"] < plan["costs"]["scan"]["cost"]
    # two distinct codes 2 bits apart: a radius-3 probe reaches both buckets, that is every
    # row, at a random-access price: the scan wins
    pair = rng.integers(0, 2, (2, 64), dtype=np.uint8)
    pair[1, :2] = 1 - pair[0, :2]
    pair[1, 2:] = pair[0, 2:]
    crowded = HammingIndex(64)
    crowded.add(pair[rng.integers(0, 2, 40000)])
    plan = crowded.explain(pair, radius=3)
    assert plan["plan"] == "scan", plan
    assert plan["costs"]["hash"]["candidates"] == 40000
    # 40 distinct codes: an entropy-chosen key separates them, so probing is cheaper again
    spread = HammingIndex(64)
    spread.add(duplicated_codes(rng, 40000, 64))
    plan = spread.explain(duplicated_codes(rng, 50, 64), radius=3)
    assert plan["plan"] == "hash" and plan["costs"]["hash"]["candidates"] < 0.2 * 40000
    forced = HammingIndex(64, backend_params={"plan": "hash"})
    forced.add(duplicated_codes(rng, 4000, 64))
    assert "forced" in forced.explain(q, radius=3)["reason"]
    assert "bytes_per_item" in forced.info()["engine"]


@needs_kernel
def test_memory_of_each_plan_is_reported_and_within_budget():
    rng = np.random.default_rng(4)
    n = 100_000
    index = HammingIndex(64)
    index.add(rng.integers(0, 2, (n, 64), dtype=np.uint8))
    index.range_search(rng.integers(0, 2, (3, 64), dtype=np.uint8), 2)
    info = index.info()
    per_item = info["engine"]["bytes_per_item"]
    assert per_item["scan"] == 0 and per_item["hash"] < 1.0
    assert info["memory_bytes"] <= 1.2 * n * (8 + 8)
    # the paper's m = 4 tables would need three 4-byte permutations per item: over the cap,
    # so one table is built, and the report says what the paper's m would cost
    ratios = info["engine"]["memory_ratio_by_plan"]
    assert ratios["mih (m=4)"] > 1.2 and info["engine"]["tables"]["n_tables"] == 1


def test_range_result_is_flat_with_a_lazy_view():
    result = RangeResult(np.array([0, 2, 2, 3]), np.array([7, 5, 9]), np.array([0, 1, 2], np.int32))
    assert len(result) == 3 and result.counts.tolist() == [2, 0, 1]
    rows, distances = result[0]
    assert rows.base is not None  # a view into the flat arrays, not a copy
    assert rows.tolist() == [7, 5] and result[-1][0].tolist() == [9]
    assert [len(r) for r, _ in result] == [2, 0, 1]
    with pytest.raises(IndexError, match="out of range"):
        result[3]


ENGINES = [name for name in list_engines() if name != "milvus"]


@pytest.mark.parametrize("name", ENGINES)
def test_every_engine_follows_the_protocol(name):
    if name.startswith("faiss"):
        pytest.importorskip("faiss")
    rng = np.random.default_rng(6)
    db = clustered_codes(rng, 2500, 64)
    packed = np.packbits(db, axis=1)
    keys = rng.permutation(2500).astype(np.int64)
    engine = create_engine(name, 64)
    assert isinstance(engine, Engine) and engine.name == name
    engine.add(packed[:2000], keys[:2000])
    engine.add(packed[2000:], keys[2000:])
    engine.remove(np.array([0, 5]))
    d, rows = engine.knn(packed[:4], 6)
    assert d.shape == rows.shape == (4, 6)
    assert not np.isin(rows, [0, 5]).any()
    true = hamming_distance_matrix(db[:4], db)
    found = rows >= 0
    np.testing.assert_array_equal(d[found], true[np.nonzero(found)[0], rows[found]])
    assert (np.diff(d, axis=1) >= 0).all()
    if engine.exact:
        live = np.setdiff1d(np.arange(2500), [0, 5])
        for i, (wk, wd) in enumerate(brute(db[live], keys[live], db[:4], k=6)):
            np.testing.assert_array_equal(keys[rows[i]], wk)
            np.testing.assert_array_equal(d[i], wd)
    allowed = np.arange(1, 2500, 2)
    _, rows = engine.knn(packed[:4], 3, allowed=allowed)
    assert np.isin(rows[rows >= 0], allowed).all()
    if getattr(engine, "has_range", True):
        result = engine.range(packed[:4], 3)
        live = np.setdiff1d(np.arange(2500), [0, 5])
        for i, (wk, wd) in enumerate(brute(db[live], keys[live], db[:4], radius=3)):
            np.testing.assert_array_equal(keys[result[i][0]], wk)
            np.testing.assert_array_equal(result[i][1], wd)
    assert engine.memory_bytes() >= 0 and isinstance(engine.info(), dict)


@needs_kernel
def test_standalone_native_engine_keeps_caller_rows_through_reordering():
    """Without an owner the engine sorts a copy and maps positions back to rows."""
    rng = np.random.default_rng(8)
    db = clustered_codes(rng, 5000, 64)
    packed = np.packbits(db, axis=1)
    engine = NativeEngine(64, plan="hash")
    engine.add(packed[:4000])
    first = engine.range(packed[:3], 2)
    engine.add(packed[4000:])
    engine.remove(np.array([1, 4001]))
    live = np.setdiff1d(np.arange(5000), [1, 4001])
    for i, (want, wd) in enumerate(brute(db[live], live, db[:3], radius=2)):
        rows, d = engine.range(packed[:3], 2)[i]
        np.testing.assert_array_equal(rows, want)
        np.testing.assert_array_equal(d, wd)
    assert len(first) == 3


@needs_kernel
def test_index_saved_in_place_and_refreshed_keeps_searching_its_own_rows(tmp_path):
    rng = np.random.default_rng(9)
    db = clustered_codes(rng, 6000, 64)
    index = HammingIndex.create(tmp_path / "idx", 64)
    index.add(db[:5000])
    index.search(db[:1], 1)  # tables built: rows reordered in memory
    index.remove(np.arange(0, 5000, 3))
    index.save(tmp_path / "idx")  # compacts in place and takes over the reloaded state
    index.add(db[5000:], ids=np.arange(5000, 6000))
    live = np.setdiff1d(np.arange(6000), np.arange(0, 5000, 3))
    got_ids, got_d = index.search(db[:5], 8)
    for i, (wi, wd) in enumerate(brute(db[live], live, db[:5], k=8)):
        np.testing.assert_array_equal(got_ids[i], wi)
        np.testing.assert_array_equal(got_d[i], wd)
    index.close()


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="no C compiler")  # fmt: skip
def test_extension_source_compiles_without_march_flags(tmp_path):
    """The kernel builds with the baseline flags setup.py uses (no -march=native)."""
    import sysconfig

    compiler = shutil.which("gcc") or shutil.which("cc")
    from pathlib import Path

    source = Path(__file__).parents[1] / "src" / "hashlab" / "index" / "hamming_kernels.c"
    done = subprocess.run(
        [compiler, "-O2", "-std=c11", "-fopenmp", "-fPIC", "-shared", "-Werror=implicit",
         f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(tmp_path / "k.so")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_memory_cap_shortens_keys_before_dropping_tables():
    from hashlab.index.multi_index import plan_tables, table_bytes_per_item

    # 128-bit codes: 4.8 bytes per item allowed; two tables fit once keys are 16 bits
    plan = plan_tables(128, 1_000_000, 16, max_memory_ratio=1.2)
    assert plan.n_tables == 2 and plan.key_bits == 16 and plan.paper_tables == 6
    assert table_bytes_per_item(2, 16, 1_000_000) <= 0.2 * (16 + 8)
    # 64-bit codes: one permutation (4 bytes) exceeds 3.2 bytes: one table, full-length key
    plan = plan_tables(64, 1_000_000, 8, max_memory_ratio=1.2)
    assert plan.n_tables == 1 and plan.key_bits == 17


@needs_kernel
def test_two_table_plan_under_the_cap_is_exact_and_within_budget():
    rng = np.random.default_rng(12)
    n = 40_000
    db = rng.integers(0, 2, (n, 128), dtype=np.uint8)
    index = HammingIndex(128)
    index.add(db)
    queries = np.concatenate([db[:5], db[5:10] ^ (rng.random((5, 128)) < 0.02)])
    got = index.range_search(queries, 3)
    assert index.engine.last_plan["plan"] == "mih"
    for (gi, gd), (wi, wd) in zip(got, brute(db, np.arange(n), queries, radius=3), strict=True):
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gd, wd)
    assert index.info()["memory_bytes"] <= 1.2 * n * (16 + 8)
