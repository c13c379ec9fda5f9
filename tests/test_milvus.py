"""The Milvus engine against brute force on the same codes (milvus-lite, embedded).

Exact top-k (ties by tie key) and radius search must give identical rows and distances to a
numpy scan, after adds, removes and a reopen of the collection; filtered search must select
exactly what :meth:`Filter.matches` selects; Milvus's 16,384 limits must not truncate; bad
URIs, an unreachable server, a collection of another code length and a filter syntax error
are one clear error each, with nothing written.

Codes are drawn from few distinct values so that distance ties are everywhere: Milvus breaks
them in no fixed order, which is what the engine has to repair.
"""

from __future__ import annotations

import socket
import time
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    pymilvus = pytest.importorskip(
        "pymilvus", reason="pymilvus 2.4 + milvus-lite not installed: pip install -e '.[milvus]'"
    )

from hashlab.errors import HashlabError  # noqa: E402
from hashlab.index.engines import create_engine  # noqa: E402
from hashlab.index.engines.milvus import (  # noqa: E402
    MILVUS_MAX_TOPK,
    MilvusConnectionError,
    MilvusEngine,
    MilvusSchemaError,
)
from hashlab.index.filters import FilterError, parse_filter  # noqa: E402

N_BITS = 16


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("milvus") / "codes.db"
    try:
        engine = MilvusEngine(N_BITS, uri=str(path), collection="probe")
    except MilvusConnectionError as error:  # the only reason to skip: milvus-lite cannot start
        pytest.skip(f"milvus-lite cannot start here: {error}")
    engine.drop()
    engine.close()
    return str(path)


def tie_heavy_codes(rng: np.random.Generator, n: int, n_bits: int = N_BITS) -> np.ndarray:
    """Packed codes with only 6 free bits: every distance is shared by many rows."""
    bits = np.zeros((n, n_bits), dtype=np.uint8)
    bits[:, :6] = rng.integers(0, 2, size=(n, 6))
    return np.packbits(bits, axis=1)


def distances(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    q = np.unpackbits(queries, axis=1)[:, None, :]
    return (q != np.unpackbits(codes, axis=1)[None]).sum(-1)


def brute_knn(queries, codes, keys, alive, k):
    d = distances(queries, codes)
    rows = np.flatnonzero(alive)
    out_d = np.full((len(queries), k), -1)
    out_r = np.full((len(queries), k), -1)
    for i in range(len(queries)):
        order = rows[np.lexsort((keys[rows], d[i, rows]))][:k]
        out_d[i, : len(order)] = d[i, order]
        out_r[i, : len(order)] = order
    return out_d, out_r


def brute_range(queries, codes, keys, alive, radius):
    d = distances(queries, codes)
    result = []
    for i in range(len(queries)):
        rows = np.flatnonzero(alive & (d[i] <= radius))
        order = rows[np.lexsort((keys[rows], d[i, rows]))]
        result.append((order, d[i, order]))
    return result


def assert_parity(engine, queries, codes, keys, alive) -> None:
    for k in (1, 7, 40):
        got_d, got_r = engine.knn(queries, k)
        want_d, want_r = brute_knn(queries, codes, keys, alive, k)
        np.testing.assert_array_equal(got_r, want_r, err_msg=f"k={k} rows")
        np.testing.assert_array_equal(got_d, want_d, err_msg=f"k={k} distances")
    for radius in (0, 1, 3):
        got = engine.range(queries, radius)
        want = brute_range(queries, codes, keys, alive, radius)
        for i, (rows, dists) in enumerate(want):
            np.testing.assert_array_equal(got[i][0], rows, err_msg=f"r={radius} query {i}")
            np.testing.assert_array_equal(got[i][1], dists, err_msg=f"r={radius} query {i}")


def test_exact_parity_after_adds_removes_and_reopen(uri: str) -> None:
    rng = np.random.default_rng(0)
    codes = tie_heavy_codes(rng, 3000)
    keys = rng.permutation(10_000)[:3000].astype(np.int64)  # ties go by key, not by row
    queries = tie_heavy_codes(rng, 25)
    alive = np.ones(len(codes), dtype=bool)

    engine = create_engine("milvus", N_BITS, uri=uri, collection="parity")
    for part in np.array_split(np.arange(len(codes)), 3):
        engine.add(codes[part], keys[part])
    assert_parity(engine, queries, codes, keys, alive)

    removed = rng.choice(len(codes), size=700, replace=False)
    engine.remove(removed)
    alive[removed] = False
    assert_parity(engine, queries, codes, keys, alive)
    engine.close()

    # reopen: the owner replays its adds and removes; nothing is written again
    reopened = MilvusEngine(N_BITS, uri=uri, collection="parity")
    live_before = reopened.info()["milvus_live_rows"]
    assert live_before == alive.sum()
    reopened.add(codes, keys)
    reopened.remove(removed)
    assert reopened.info()["milvus_live_rows"] == live_before
    assert_parity(reopened, queries, codes, keys, alive)

    # and it goes on taking adds after the replay
    more = tie_heavy_codes(rng, 200)
    more_keys = np.arange(20_000, 20_200, dtype=np.int64)
    reopened.add(more, more_keys)
    codes = np.concatenate([codes, more])
    keys = np.concatenate([keys, more_keys])
    alive = np.concatenate([alive, np.ones(200, dtype=bool)])
    assert_parity(reopened, queries, codes, keys, alive)
    reopened.drop()
    reopened.close()


def test_reopen_repairs_a_collection_that_disagrees_with_the_owner(uri: str) -> None:
    rng = np.random.default_rng(1)
    codes = tie_heavy_codes(rng, 500)
    engine = MilvusEngine(N_BITS, uri=uri, collection="torn")
    engine.add(codes)
    engine.close()
    # the owner knows only the first 300 rows (an add torn by a crash), then adds other codes
    other = tie_heavy_codes(rng, 100)
    reopened = MilvusEngine(N_BITS, uri=uri, collection="torn")
    reopened.add(codes[:300])
    queries = codes[:10]
    alive = np.ones(300, dtype=bool)
    keys = np.arange(300)
    assert_parity(reopened, queries, codes[:300], keys, alive)  # rows 300.. stay hidden
    reopened.add(other)
    all_codes = np.concatenate([codes[:300], other])
    assert_parity(reopened, queries, all_codes, np.arange(400), np.ones(400, dtype=bool))
    reopened.drop()
    reopened.close()


def test_results_beyond_milvus_topk_and_nq_limits(uri: str, monkeypatch) -> None:
    """Answers larger than Milvus's topK (16,384) and more queries than its nq (16,384).

    The limits are lowered to 256 (the code reads them at call time), so that splitting a
    full answer by distance and then by row range is exercised on a small collection; the
    real limit is checked against Milvus itself in ``test_milvus_refuses_topk_over_limit``.
    """
    import hashlab.index.engines.milvus as milvus_engine

    monkeypatch.setattr(milvus_engine, "MILVUS_MAX_TOPK", 256)
    monkeypatch.setattr(milvus_engine, "MILVUS_MAX_NQ", 256)
    rng = np.random.default_rng(2)
    n = 1500  # 6 free bits: ~23 rows per code, far more than 256 per distance
    codes = tie_heavy_codes(rng, n)
    keys = rng.permutation(n).astype(np.int64)
    engine = MilvusEngine(N_BITS, uri=uri, collection="limits")
    engine.add(codes, keys)
    alive = np.ones(n, dtype=bool)
    queries = codes[:2]
    got = engine.range(queries, 6)  # every row: more than one Milvus answer may hold
    assert got.counts.tolist() == [n, n]
    want = brute_range(queries, codes, keys, alive, 6)
    for i, (rows, dists) in enumerate(want):
        np.testing.assert_array_equal(got[i][0], rows)
        np.testing.assert_array_equal(got[i][1], dists)
    k = 600
    got_d, got_r = engine.knn(queries, k)
    want_d, want_r = brute_knn(queries, codes, keys, alive, k)
    np.testing.assert_array_equal(got_r, want_r)
    np.testing.assert_array_equal(got_d, want_d)
    many = tie_heavy_codes(rng, 600)  # three requests' worth of queries
    got_d, got_r = engine.knn(many, 3)
    want_d, want_r = brute_knn(many, codes, keys, alive, 3)
    np.testing.assert_array_equal(got_r, want_r)
    engine.drop()
    engine.close()


def test_milvus_refuses_topk_over_limit(uri: str) -> None:
    """The limit the engine batches by is Milvus's own: one more is refused there."""
    engine = MilvusEngine(N_BITS, uri=uri, collection="topk")
    engine.add(tie_heavy_codes(np.random.default_rng(7), 10))
    q = [engine_codes.tobytes() for engine_codes in tie_heavy_codes(np.random.default_rng(8), 1)]
    search = dict(collection_name="topk", data=q, search_params={"metric_type": "HAMMING"})
    assert len(engine._client.search(limit=MILVUS_MAX_TOPK, **search)[0]) == 10
    with pytest.raises(pymilvus.MilvusException):
        engine._client.search(limit=MILVUS_MAX_TOPK + 1, **search)
    engine.drop()
    engine.close()


FILTERS = [
    "x == 3",
    "x != 3",
    "x > 2 and x <= 4",
    "x < 'b'",
    "x == 'A12'",
    "x in [3, 'a12', true]",
    "x in [3, 2.5]",
    "x not in [3, 4]",
    "x == true",
    "x != false",
    "name like 'pole%'",
    "x.site == 'A'",
    "x['site'] != 'A'",
    "y >= '2024-01-01' and y < '2025-01-01'",
    "x == 3 or y == 'A12'",
    "not (x == 3)",
    "not (x != 3) or name like 'pole%'",
    "not (x > 2 or y == 3)",
    "x in []",
]


def test_filtered_search_selects_what_filter_matches_selects(uri: str) -> None:
    rng = np.random.default_rng(3)
    n = 600
    values = [3, 3.0, 4, 2.5, -1.5, "3", "a12", "A12", "2024-05-01", "pole7", True, False]
    values += [{"site": "A"}, {"site": "B"}, [1, 2], None]
    metadata = []
    for _ in range(n):
        item = {}
        for field in ("x", "y", "name"):
            if rng.random() < 0.8:
                item[field] = values[rng.integers(len(values))]
        metadata.append(None if rng.random() < 0.05 else item)
    codes = tie_heavy_codes(rng, n)
    keys = np.arange(n, dtype=np.int64)
    engine = MilvusEngine(N_BITS, uri=uri, collection="filtered")
    engine.add(codes, keys, metadata)
    queries = codes[:3]
    for text in FILTERS:
        parsed = parse_filter(text)
        mask = np.array([parsed.matches(m) for m in metadata])
        got = engine.range(queries, N_BITS, filter=text)
        want = brute_range(queries, codes, keys, mask, N_BITS)
        for i, (rows, _) in enumerate(want):
            np.testing.assert_array_equal(got[i][0], rows, err_msg=text)
        got_d, got_r = engine.knn(queries, 15, filter=text)
        want_d, want_r = brute_knn(queries, codes, keys, mask, 15)
        np.testing.assert_array_equal(got_r, want_r, err_msg=text)
        np.testing.assert_array_equal(got_d, want_d, err_msg=text)
    # an owner's allowed rows combine with a filter
    allowed = np.arange(0, n, 3)
    parsed = parse_filter("x != 3")
    mask = np.zeros(n, dtype=bool)
    mask[allowed] = True
    mask &= np.array([parsed.matches(m) for m in metadata])
    got_d, got_r = engine.knn(queries, 15, allowed=allowed, filter="x != 3")
    np.testing.assert_array_equal(got_r, brute_knn(queries, codes, keys, mask, 15)[1])
    engine.drop()
    engine.close()


def test_ivf_needs_a_server(uri: str) -> None:
    """milvus-lite only builds BIN_FLAT; BIN_IVF_FLAT is refused before anything is created.

    (BIN_IVF_FLAT itself runs only against a Milvus server, which the suite does not have.)
    """
    with pytest.raises(HashlabError, match="only has BIN_FLAT; BIN_IVF_FLAT needs a Milvus"):
        MilvusEngine(N_BITS, uri=uri, collection="ivf", index_type="BIN_IVF_FLAT")
    from pymilvus import MilvusClient

    assert "ivf" not in MilvusClient(uri).list_collections()


# ------------------------------------------------------------------------ bad input -----
@pytest.mark.parametrize(
    "bad, expected",
    [
        ("ftp://host/x", "unknown scheme"),
        ("codes.txt", "neither a milvus-lite file ending in .db"),
        ("no/such/dir/codes.db", "does not exist"),
        ("http://:19530", "has no host"),
        ("", "needs uri="),
    ],
)
def test_wrong_uri_is_one_clear_error_and_creates_nothing(tmp_path, monkeypatch, bad, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HashlabError, match=expected) as info:
        MilvusEngine(N_BITS, uri=bad)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_fails_fast_with_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(MilvusConnectionError, match=f"127.0.0.1:{port}") as info:
        MilvusEngine(N_BITS, uri=f"http://127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - start < 15
    assert "\n" not in str(info.value)


def test_collection_of_another_code_length_is_refused_untouched(uri: str) -> None:
    rng = np.random.default_rng(5)
    engine = MilvusEngine(N_BITS, uri=uri, collection="sixteen")
    engine.add(tie_heavy_codes(rng, 50))
    engine.close()
    with pytest.raises(MilvusSchemaError, match="holds 16-bit codes, this index has 64-bit"):
        MilvusEngine(64, uri=uri, collection="sixteen")
    # 12 bits pack into the same two bytes: the recorded code length still tells them apart
    with pytest.raises(MilvusSchemaError, match="holds 16-bit codes, this index has 12-bit"):
        MilvusEngine(12, uri=uri, collection="sixteen")
    again = MilvusEngine(N_BITS, uri=uri, collection="sixteen")
    assert again.info()["milvus_live_rows"] == 50
    again.drop()
    again.close()


def test_foreign_collection_is_refused(uri: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    client.create_collection("foreign", dimension=8)
    try:
        with pytest.raises(MilvusSchemaError, match="not a hashlab code collection"):
            MilvusEngine(N_BITS, uri=uri, collection="foreign")
    finally:
        client.drop_collection("foreign")


def test_filter_syntax_error_is_raised_before_milvus_and_changes_nothing(uri: str) -> None:
    rng = np.random.default_rng(6)
    engine = MilvusEngine(N_BITS, uri=uri, collection="syntax")
    codes = tie_heavy_codes(rng, 40)
    engine.add(codes, metadata=[{"site": "A"}] * 40)
    for bad in ("site == = 'A'", "site == 'A' and", "(site == 'A'"):
        with pytest.raises(FilterError, match="invalid filter at column"):
            engine.knn(codes[:1], 5, filter=bad)
        with pytest.raises(FilterError):
            engine.range(codes[:1], 3, filter=bad)
    assert engine.info()["milvus_live_rows"] == 40
    engine.drop()
    engine.close()


def test_hamming_index_on_milvus_matches_native_through_removes_and_reopen(uri, tmp_path):
    """The same adds, removes and searches through HammingIndex on both engines."""
    from hashlab.index import HammingIndex

    rng = np.random.default_rng(9)
    params = {"uri": uri, "collection": "through_index"}
    on_milvus = HammingIndex.create(tmp_path / "m", N_BITS, backend="milvus", backend_params=params)
    native = HammingIndex.create(tmp_path / "n", N_BITS)
    for batch in range(3):
        codes = tie_heavy_codes(rng, 400)
        ids = rng.choice(1_000_000, size=400, replace=False) + batch * 1_000_000
        metadata = [{"site": f"S{i % 4}", "year": 2020 + i % 5} for i in range(400)]
        for index in (on_milvus, native):
            index.add(codes, ids=ids, metadata=metadata)
    gone = rng.choice(native._ids[: native._n], size=300, replace=False)
    for index in (on_milvus, native):
        index.remove(gone)
    queries = tie_heavy_codes(rng, 10)

    def same(a, b) -> None:
        for k in (1, 12):
            np.testing.assert_array_equal(a.search(queries, k)[0], b.search(queries, k)[0])
        got, want = a.range_search(queries, 2), b.range_search(queries, 2)
        for i in range(len(queries)):
            np.testing.assert_array_equal(got[i][0], want[i][0])
        text = "site in ['S1', 'S3'] and year >= 2022"
        got = a.search(queries, 12, filter=text)
        np.testing.assert_array_equal(got[0], b.search(queries, 12, filter=text)[0])
        assert got[0][0][0] >= 0

    same(on_milvus, native)
    on_milvus.close()
    reopened = HammingIndex.open(tmp_path / "m")
    assert reopened.backend == "milvus"
    same(reopened, native)
    assert reopened.engine.info()["milvus_live_rows"] == len(native) == 1200 - 300
    reopened.engine.drop()


def mixed_metadata(rng: np.random.Generator, n: int) -> list:
    """Metadata with missing fields, mixed types and nesting, as the filter tests use."""
    values = [3, 3.0, 4, 2.5, -1.5, "3", "a12", "A12", "2024-05-01", "pole7", True, False]
    values += [{"site": "A"}, {"site": "B"}, [1, 2], None]
    metadata = []
    for _ in range(n):
        item = {}
        for field in ("x", "y", "name"):
            if rng.random() < 0.8:
                item[field] = values[rng.integers(len(values))]
        metadata.append(None if rng.random() < 0.05 else item)
    return metadata


def test_filters_are_pushed_down_to_milvus_with_native_results(uri, tmp_path, monkeypatch):
    """HammingIndex on Milvus sends a translatable filter to Milvus itself (hashlab reads no
    metadata for it) and answers exactly as the native engine, through metadata changed by
    remove + re-add under the same ids, deletes, a reader following the writer, a reopen."""
    from hashlab.index import HammingIndex
    from hashlab.index.engines.milvus import milvus_expression

    rng = np.random.default_rng(21)
    params = {"uri": uri, "collection": "pushdown"}
    on_milvus = HammingIndex.create(tmp_path / "m", N_BITS, backend="milvus", backend_params=params)
    native = HammingIndex.create(tmp_path / "n", N_BITS)
    codes = tie_heavy_codes(rng, 500)
    ids = rng.choice(100_000, size=500, replace=False)
    metadata = mixed_metadata(rng, 500)
    for index in (on_milvus, native):
        index.add(codes[:300], ids=ids[:300], metadata=metadata[:300])
        index.add(codes[300:], ids=ids[300:], metadata=metadata[300:])
    queries = tie_heavy_codes(rng, 6)
    pushed = [text for text in FILTERS if milvus_expression(parse_filter(text)) is not None]
    assert len(pushed) >= len(FILTERS) - 4 and "not (x == 3)" not in pushed

    def same(a, b) -> None:
        for text in FILTERS:
            for k in (1, 15):
                got, want = a.search(queries, k, filter=text), b.search(queries, k, filter=text)
                np.testing.assert_array_equal(got[0], want[0], err_msg=f"{text} k={k}")
                np.testing.assert_array_equal(got[1], want[1], err_msg=f"{text} k={k}")
            got, want = (
                a.range_search(queries, 3, filter=text),
                b.range_search(queries, 3, filter=text),
            )
            for i in range(len(queries)):
                np.testing.assert_array_equal(got[i][0], want[i][0], err_msg=text)
                np.testing.assert_array_equal(got[i][1], want[i][1], err_msg=text)

    def no_hashlab_filtering(*args, **kwargs):
        raise AssertionError("a translatable filter was evaluated by hashlab, not Milvus")

    same(on_milvus, native)
    with monkeypatch.context() as patch:  # the pushed filters never touch hashlab's store
        patch.setattr(on_milvus, "filter_rows", no_hashlab_filtering)
        for text in pushed:
            on_milvus.search(queries, 5, filter=text)
            on_milvus.range_search(queries, 2, filter=text)
    plan = on_milvus.explain(queries, k=5, filter="x.site == 'A' and y >= '2024'")
    assert plan["filter"]["pushed_down"] is True
    assert plan["filter"]["expression"] == milvus_expression(
        parse_filter("x.site == 'A' and y >= '2024'")
    )
    plan = on_milvus.explain(queries, k=5, filter="not (x == 3)")
    assert plan["filter"]["pushed_down"] is False and "no exact form" in plan["filter"]["reason"]
    assert native.explain(queries, k=5, filter="x == 3")["filter"]["pushed_down"] is False

    # metadata updates (remove + re-add under the same id, new metadata) and deletes
    changed = ids[rng.choice(500, size=80, replace=False)]
    new_meta = [{"x": 3, "y": "A12", "name": "pole9"} for _ in changed]
    gone = np.setdiff1d(ids[rng.choice(500, size=60, replace=False)], changed)
    for index in (on_milvus, native):
        index.remove(changed)
        index.add(tie_heavy_codes(np.random.default_rng(5), 80), ids=changed, metadata=new_meta)
        index.remove(gone)
    same(on_milvus, native)
    hits = on_milvus.search(queries, 100, filter="name == 'pole9'")[0]
    assert set(hits[hits >= 0].tolist()) <= set(changed.tolist()) and (hits >= 0).sum() > 0

    # a reader follows the writer's commits, metadata included
    reader = HammingIndex.open(tmp_path / "m")
    more = tie_heavy_codes(rng, 40)
    more_ids = 200_000 + np.arange(40)
    more_meta = [{"x": 4, "name": "late"} for _ in range(40)]
    for index in (on_milvus, native):
        index.add(more, ids=more_ids, metadata=more_meta)
    assert reader.refresh()
    same(reader, native)
    reader.close()

    on_milvus.close()
    reopened = HammingIndex.open(tmp_path / "m")
    same(reopened, native)
    reopened.engine.drop()


def test_a_collection_without_pushed_metadata_is_rewritten_on_reopen(uri, tmp_path):
    """Rows Milvus holds with other metadata than the index's (a collection written before
    metadata went to Milvus) are upserted when the writer reopens the index, so pushed-down
    filters see the truth."""
    from hashlab.index import HammingIndex

    rng = np.random.default_rng(8)
    params = {"uri": uri, "collection": "stale_meta"}
    index = HammingIndex.create(tmp_path / "m", N_BITS, backend="milvus", backend_params=params)
    codes = tie_heavy_codes(rng, 200)
    index.add(codes, metadata=[{"site": f"S{i % 3}"} for i in range(200)])
    index.close()
    index.engine.close()
    stale = MilvusEngine(N_BITS, uri=uri, collection="stale_meta")
    stale._write(codes, np.arange(200), [{} for _ in range(200)], 0, upsert=True)  # old layout
    stale.close()
    reopened = HammingIndex.open(
        tmp_path / "m", mode="w"
    )  # the writer repairs (readers never write)
    found = reopened.range_search(codes[:1], N_BITS, filter="site == 'S1'")[0][0]
    assert sorted(found.tolist()) == list(range(1, 200, 3))
    reopened.engine.drop()
