"""HammingIndex against brute force: random, clustered and adversarial codes, all engines."""

from __future__ import annotations

import numpy as np
import pytest

import hashlab.index.engines.native as native_engine_module
from hashlab.codes import hamming_distance_matrix, pack_bits
from hashlab.index import HammingIndex
from hashlab.index.multi_index import plan_tables
from hashlab.index.native import load_native


def clustered_codes(rng, n, n_bits, n_centres=20, flip=0.1):
    centres = rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8)
    bits = centres[rng.integers(0, n_centres, n)]
    return (bits ^ (rng.random(bits.shape) < flip)).astype(np.uint8)


def brute_knn(db_bits, ids, q_bits, k):
    dist = hamming_distance_matrix(q_bits, db_bits)
    out_ids = np.full((len(q_bits), k), -1, dtype=np.int64)
    out_d = np.full((len(q_bits), k), -1, dtype=np.int64)
    for i in range(len(q_bits)):
        order = np.lexsort((ids, dist[i]))[:k]
        out_ids[i, : len(order)] = ids[order]
        out_d[i, : len(order)] = dist[i, order]
    return out_ids, out_d


def brute_range(db_bits, ids, q_bits, radius):
    dist = hamming_distance_matrix(q_bits, db_bits)
    results = []
    for i in range(len(q_bits)):
        hit = np.nonzero(dist[i] <= radius)[0]
        order = np.lexsort((ids[hit], dist[i, hit]))
        results.append((ids[hit][order], dist[i, hit][order]))
    return results


def check_against_brute(index, db_bits, ids, q_bits, ks=(1, 10), radii=(0, 2, 5)):
    for k in ks:
        got_ids, got_d = index.search(q_bits, k)
        want_ids, want_d = brute_knn(db_bits, ids, q_bits, k)
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(got_ids, want_ids)
    for radius in radii:
        got = index.range_search(q_bits, radius)
        for (gi, gd), (wi, wd) in zip(got, brute_range(db_bits, ids, q_bits, radius), strict=True):
            np.testing.assert_array_equal(gd, wd)
            np.testing.assert_array_equal(gi, wi)


@pytest.fixture(params=["native", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(native_engine_module, "load_native", lambda: None)
    elif load_native() is None:
        pytest.skip("no C compiler on this machine: the native engine cannot be built")
    return request.param


@pytest.mark.parametrize("n_bits", [12, 32, 64, 128])
@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_matches_brute_force(engine, n_bits, kind):
    rng = np.random.default_rng(n_bits)
    n = 6000
    if kind == "uniform":
        db = rng.integers(0, 2, (n, n_bits), dtype=np.uint8)
    else:
        db = clustered_codes(rng, n, n_bits)
    ids = rng.permutation(10 * n)[:n]  # ids unrelated to row order: ties must follow ids
    queries = np.concatenate([db[:15], rng.integers(0, 2, (15, n_bits), dtype=np.uint8)])
    index = HammingIndex(n_bits)
    index.add(db, ids=ids)
    check_against_brute(index, db, ids, queries)


@pytest.mark.parametrize("n_bits", [32, 64, 128])
def test_multi_table_layout_matches_brute_force(n_bits):
    """Several MIH tables (memory cap lifted, m as the paper recommends) stay exact."""
    if load_native() is None:
        pytest.skip("no C compiler on this machine: multi-index tables are native only")
    rng = np.random.default_rng(7)
    db = clustered_codes(rng, 8000, n_bits, flip=0.05)
    ids = np.arange(len(db)) * 3 + 1
    index = HammingIndex(n_bits, max_memory_ratio=None)
    index.add(db, ids=ids)
    queries = np.concatenate([db[:20], clustered_codes(rng, 20, n_bits)])
    check_against_brute(index, db, ids, queries, ks=(1, 5, 50), radii=(0, 1, 3, 7))
    tables = index.info()["engine"]["tables"]
    assert tables["n_tables"] == tables["paper_tables"] > 1


def test_tail_rows_added_after_tables_are_found(engine):
    rng = np.random.default_rng(3)
    first = rng.integers(0, 2, (5000, 64), dtype=np.uint8)
    index = HammingIndex(64)
    index.add(first)
    index.search(first[:2], 3)  # builds the tables over the first batch
    second = first[:50].copy()  # exact duplicates of indexed codes, added later
    index.add(second)
    all_bits = np.concatenate([first, second])
    ids = np.arange(len(all_bits))
    check_against_brute(index, all_bits, ids, first[:10], ks=(3,), radii=(0, 4))


def test_adversarial_all_codes_equal(engine):
    codes = np.ones((3000, 32), dtype=np.uint8)
    ids = np.arange(3000)[::-1].copy()
    index = HammingIndex(32)
    index.add(codes, ids=ids)
    got_ids, got_d = index.search(codes[:2], 5)
    np.testing.assert_array_equal(got_ids, [[0, 1, 2, 3, 4]] * 2)  # ties broken by id
    np.testing.assert_array_equal(got_d, 0)
    ((hit_ids, hit_d),) = index.range_search(codes[:1], 0)
    np.testing.assert_array_equal(hit_ids, np.arange(3000))
    far = np.zeros((1, 32), dtype=np.uint8)
    assert index.range_search(far, 31)[0][0].size == 0
    assert index.range_search(far, 32)[0][0].size == 3000


def test_many_ties_radius_zero_and_full_radius(engine):
    rng = np.random.default_rng(5)
    # only 4 distinct codes, so every distance is heavily tied
    palette = rng.integers(0, 2, (4, 64), dtype=np.uint8)
    db = palette[rng.integers(0, 4, 4000)]
    ids = rng.permutation(4000)
    index = HammingIndex(64)
    index.add(db, ids=ids)
    check_against_brute(index, db, ids, palette, ks=(1, 100), radii=(0, 64))
    full = index.range_search(palette[:1], 64)[0][0]
    assert full.size == 4000


def test_empty_index_and_k_beyond_size():
    index = HammingIndex(16)
    ids, dists = index.search(np.zeros((2, 16), dtype=np.uint8), 3)
    assert ids.shape == (2, 3) and (ids == -1).all() and (dists == -1).all()
    assert index.range_search(np.zeros((1, 16), dtype=np.uint8), 16)[0][0].size == 0
    index.add(np.eye(16, dtype=np.uint8)[:2])
    ids, dists = index.search(np.zeros((1, 16), dtype=np.uint8), 4)
    np.testing.assert_array_equal(ids, [[0, 1, -1, -1]])
    np.testing.assert_array_equal(dists, [[1, 1, -1, -1]])


def test_packed_and_unpacked_input_agree():
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2, (500, 40), dtype=np.uint8)
    a, b = HammingIndex(40), HammingIndex(40)
    a.add(bits)
    b.add(pack_bits(bits))
    for x, y in zip(a.search(bits[:5], 7), b.search(pack_bits(bits[:5]), 7), strict=True):
        np.testing.assert_array_equal(x, y)


def test_duplicate_and_bad_ids_are_rejected():
    index = HammingIndex(8)
    index.add(np.zeros((3, 8), dtype=np.uint8), ids=[5, 6, 7])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.zeros((2, 8), dtype=np.uint8), ids=[1, 6])
    with pytest.raises(ValueError, match="duplicate ids within the batch"):
        index.add(np.zeros((2, 8), dtype=np.uint8), ids=[9, 9])
    with pytest.raises(ValueError, match="non-negative"):
        index.add(np.zeros((1, 8), dtype=np.uint8), ids=[-2])
    with pytest.raises(ValueError, match="2 ids for 1 codes"):
        index.add(np.zeros((1, 8), dtype=np.uint8), ids=[10, 11])
    assert len(index) == 3  # nothing half-added
    with pytest.raises(ValueError, match="bits"):
        index.add(np.zeros((1, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        index.add(np.full((1, 8), 2, dtype=np.uint8))


def test_remove_then_search_and_readd(engine):
    rng = np.random.default_rng(2)
    db = rng.integers(0, 2, (3000, 32), dtype=np.uint8)
    index = HammingIndex(32)
    index.add(db, metadata=[{"n": i} for i in range(3000)])
    index.search(db[:1], 1)  # tables exist before the removal
    gone = np.arange(0, 3000, 3)
    assert index.remove(gone) == len(gone)
    assert len(index) == 2000
    # membership follows removal; ids never added, negative ids and non-ints are not members
    assert 1 in index and np.int64(2) in index and 0 not in index and 2997 not in index
    assert 3000 not in index and -1 not in index and "1" not in index and True not in index
    keep = np.setdiff1d(np.arange(3000), gone)
    check_against_brute(index, db[keep], keep, db[:8], ks=(4,), radii=(3,))
    with pytest.raises(KeyError, match="not in the index"):
        index.remove([0])
    index.add(db[:1], ids=[0], metadata=[{"n": "again"}])  # a removed id may come back
    assert index.search(db[:1], 1)[0][0, 0] == 0 and 0 in index
    assert index.metadata([0, 1, 3]) == [{"n": "again"}, {"n": 1}, None]


def test_metadata_comes_back_with_results():
    index = HammingIndex(8)
    codes = np.unpackbits(np.array([[0], [1], [3]], dtype=np.uint8), axis=1)
    index.add(codes, ids=[10, 20, 30], metadata=[{"path": "a.jpg", "xy": [1, 2]}, None, {}])
    ids, dists, meta = index.search(codes[:1], 3, with_metadata=True)
    assert ids.tolist() == [[10, 20, 30]] and dists.tolist() == [[0, 1, 2]]
    assert meta == [[{"path": "a.jpg", "xy": [1, 2]}, None, {}]]
    ((hit_ids, hit_d, hit_meta),) = index.range_search(codes[:1], 1, with_metadata=True)
    assert hit_ids.tolist() == [10, 20] and hit_meta == [{"path": "a.jpg", "xy": [1, 2]}, None]
    with pytest.raises(ValueError, match="JSON"):
        index.add(codes[:1], metadata=[{"bad": object()}])


def test_plan_follows_paper_and_memory_budget():
    # m ~= K / log2 N (Norouzi et al.): 64 bits, 2^16 items -> 4 tables of 16-bit keys
    free = plan_tables(64, 1 << 16, 8, max_memory_ratio=None)
    assert free.paper_tables == 4 and free.n_tables == 4
    capped = plan_tables(64, 10_000_000, 8, max_memory_ratio=1.2)
    assert capped.paper_tables == 3 and capped.n_tables == 1


def test_index_memory_within_budget():
    if load_native() is None:
        pytest.skip("no C compiler on this machine: multi-index tables are native only")
    rng = np.random.default_rng(4)
    n = 200_000
    index = HammingIndex(64)
    index.add(rng.integers(0, 256, (n, 8), dtype=np.uint8))
    index.range_search(rng.integers(0, 256, (4, 8), dtype=np.uint8), 2)
    info = index.info()
    assert info["engine"]["tables"]["rows"] == n
    assert info["memory_bytes"] <= 1.2 * n * (8 + 8)


@pytest.mark.parametrize("backend", ["faiss-flat", "faiss-multihash", "faiss-hnsw"])
def test_faiss_backends(backend):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(9)
    db = clustered_codes(rng, 3000, 64)
    ids = rng.permutation(3000) + 100
    index = HammingIndex(64, backend=backend, backend_params={"efSearch": 256})
    index.add(db, ids=ids)
    queries = db[:10]
    want_ids, want_d = brute_knn(db, ids, queries, 5)
    got_ids, got_d = index.search(queries, 5)
    if backend == "faiss-flat":
        np.testing.assert_array_equal(got_d, want_d)  # exact distances; tie order is faiss's
    else:
        assert (got_d[:, 0] == 0).all()
    if backend == "faiss-hnsw":
        with pytest.raises(ValueError, match="no range search"):
            index.range_search(queries, 2)
        return
    expected = brute_range(db, ids, queries, 3)
    for (gi, gd), (wi, wd) in zip(index.range_search(queries, 3), expected, strict=True):
        np.testing.assert_array_equal(gi, wi)  # inclusive radius, like the native engine
        np.testing.assert_array_equal(gd, wd)
