"""Metadata filters: parser, semantics, errors, and filtered search against brute force."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashlab.codes import hamming_distance_matrix
from hashlab.index import HammingIndex
from hashlab.index.filters import MAX_FILTER_DEPTH, FilterError, parse_filter

ITEM = {"site": "A12", "year": 2024, "score": 0.5, "ok": True, "date": "2024-03-01",
        "name": "pole_17", "meta": {"site": "B7", "deep": {"n": 3}}}  # fmt: skip


@pytest.mark.parametrize(
    "text, expected",
    [
        ("site == 'A12' and year >= 2024", True),
        ("site == 'A12' and year > 2024", False),
        ("date >= '2024-01-01' and date < '2025-01-01'", True),
        ("date >= '2024-04-01' and date < '2025-01-01'", False),
        ("site in ['A12', 'B7']", True),
        ("site not in ['A12', 'B7']", False),
        ("year in [2023, 2024.0]", True),  # int and float compare as numbers
        ("not (year != 2024) or name like 'x%'", True),
        ("name like 'pole%'", True),
        ("name like 'pole_1_'", True),
        ("name like 'pole_1'", False),  # like matches the whole string
        ("name like '%17'", True),
        ("meta.site == 'B7' && meta.deep.n == 3", True),
        ('meta["deep"]["n"] < 4', True),
        ("2020 < year", True),  # literal on the left is flipped
        ("ok == true", True),
        ("ok == 1", False),  # a boolean is not a number
        ("year == true", False),
        ("score <= 0.5 AND NOT ok == false", True),
        ("year == '2024'", False),  # a string is not a number
        ("missing == 1", False),
        ("missing != 1", False),  # a missing field makes every comparison false...
        ("not (missing == 1)", True),  # ...and not negates that
        ("missing not in [1]", False),
        ("site == 'A12' or missing == 1 and year < 0", True),  # and binds tighter than or
        ("(site == 'A12' or missing == 1) and year < 0", False),
        ("name == \"pole_17\"", True),
        ("site == 'A1\\'2'", False),
        ("year == -3 || year >= 2.024e3", True),
    ],
)
def test_matches(text, expected):
    assert parse_filter(text).matches(ITEM) is expected


def test_missing_and_null_metadata_match_nothing_but_negations():
    assert not parse_filter("x == 1").matches(None)
    assert not parse_filter("x == 1").matches({"x": None})
    assert parse_filter("not x == 1").matches({})
    assert not parse_filter("x.y == 1").matches({"x": 5})  # path into a non-dict


@pytest.mark.parametrize(
    "text, column, words",
    [
        ("site ==", 8, "expected a value after '=='"),
        ("x = 3", 3, "unexpected character '='"),
        ("(a == 1", 8, "expected ')'"),
        ("a == 1 b", 8, "expected 'and', 'or'"),
        ("x < true", 3, "orders numbers or strings"),
        ("x == 'abc", 6, "unterminated string"),
        ("x in [1 2]", 9, "expected ',' or ']'"),
        ("x like 3", 8, "quoted pattern"),
        ("x not like 'a'", 7, "expected 'in' after 'not'"),
        ("x == 3x", 6, "malformed number"),
        ("x", 2, "expected an operator"),
        ("", 1, "empty"),
        ("x == 1e999", 6, "out of range"),
        ("x == 'a\\q'", 8, "unknown escape"),
    ],
)
def test_errors_name_the_column(text, column, words):
    with pytest.raises(FilterError, match=re.escape(words)) as caught:
        parse_filter(text)
    assert f"column {column}:" in str(caught.value)
    assert caught.value.position == column - 1
    assert isinstance(caught.value, ValueError)


def test_hostile_filters_are_refused_cleanly():
    with pytest.raises(FilterError, match="nesting deeper"):
        parse_filter("(" * 100 + "x == 1" + ")" * 100)
    with pytest.raises(FilterError, match="nesting deeper"):
        parse_filter("not " * (MAX_FILTER_DEPTH + 1) + "x == 1")
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("x == 1 or " * 2000 + "x == 2")
    with pytest.raises(FilterError, match="a filter is a string"):
        parse_filter(3)  # type: ignore[arg-type]


def test_to_milvus_renders_an_equivalent_expression():
    text = "site in ['A12', \"B\\\"7\"] and not (year < 2024 or name like 'pole%') and m.x == true"
    assert parse_filter(text).to_milvus() == (
        '(site in ["A12", "B\\"7"]) and (not ((year < 2024) or (name like "pole%")))'
        ' and (m["x"] == true)'
    )
    assert parse_filter("site == 'A' and m.x != 1.5").to_milvus(json_field="meta") == (
        '(meta["site"] == "A") and (meta["m"]["x"] != 1.5)'
    )
    # the rendering parses back to the same tree (our parser reads Milvus's bracket form)
    for source in (text, "x not in [1, -2.5, 'a']", "3 <= y"):
        tree = parse_filter(source)
        assert parse_filter(tree.to_milvus()) == tree


# ----------------------------------------------------------------- filtered search ----
N_BITS = 24
SITES = ["A12", "B7", "C3"]


def make_items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list]:
    bits = rng.integers(0, 2, (n, N_BITS), dtype=np.uint8)
    metadata = []
    for i in range(n):
        if i % 7 == 3:
            metadata.append(None)
        else:
            metadata.append({"site": SITES[i % 3], "year": 2020 + i % 6, "name": f"pole{i}"})
    return bits, metadata


FILTERS = st.sampled_from(
    [
        "site == 'A12'",
        "site in ['A12', 'B7'] and year >= 2023",
        "not (year != 2021) or name like 'pole1%'",
        "not (site == 'A12')",  # keeps the items without metadata
        "year > 3000",  # matches nothing
        "site != 'Z'",
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(0, 300),
    removed=st.integers(0, 40),
    k=st.integers(1, 30),
    radius=st.integers(0, 8),
    text=FILTERS,
)
def test_filtered_search_equals_brute_force(seed, n, removed, k, radius, text):
    rng = np.random.default_rng(seed)
    bits, metadata = make_items(rng, n)
    ids = rng.permutation(5 * max(n, 1))[:n]  # ids unrelated to rows: ties follow ids
    index = HammingIndex(N_BITS)
    index.add(bits, ids=ids, metadata=metadata)
    gone = rng.choice(ids, size=min(removed, n), replace=False) if n else np.zeros(0, int)
    index.remove(gone)
    queries = rng.integers(0, 2, (4, N_BITS), dtype=np.uint8)

    parsed = parse_filter(text)
    gone_set = set(gone.tolist())
    keep = np.array(
        [parsed.matches(m) and i not in gone_set for i, m in zip(ids, metadata, strict=True)],
        dtype=bool,
    ).reshape(-1)
    db, db_ids = bits[keep], ids[keep]
    dist = hamming_distance_matrix(queries, db) if len(db) else np.zeros((4, 0), int)

    got_ids, got_d = index.search(queries, k, filter=text)
    ranges = index.range_search(queries, radius, filter=text)
    for qi in range(len(queries)):
        order = np.lexsort((db_ids, dist[qi]))
        want_ids = np.full(k, -1)
        want_d = np.full(k, -1)
        want_ids[: min(k, len(order))] = db_ids[order][:k]
        want_d[: min(k, len(order))] = dist[qi, order][:k]
        np.testing.assert_array_equal(got_ids[qi], want_ids)
        np.testing.assert_array_equal(got_d[qi], want_d)
        inside = order[dist[qi, order] <= radius]
        np.testing.assert_array_equal(ranges[qi][0], db_ids[inside])
        np.testing.assert_array_equal(ranges[qi][1], dist[qi, inside])


def test_filtered_search_on_disk_and_with_metadata(tmp_path):
    rng = np.random.default_rng(5)
    bits, metadata = make_items(rng, 3000)  # big enough for multi-index tables unfiltered
    index = HammingIndex.create(tmp_path / "idx", N_BITS)
    index.add(bits, metadata=metadata)
    index.search(bits[:2], 3)  # builds the tables and reorders rows in memory
    index.remove([0, 3])
    reopened = HammingIndex.open(tmp_path / "idx")
    for candidate in (index, reopened):
        ids, dists, meta = candidate.search(bits[:5], 4, with_metadata=True, filter="site == 'B7'")
        assert (ids >= 0).all()
        assert all(m["site"] == "B7" for row in meta for m in row)
        np.testing.assert_array_equal(ids % 3, 1)  # site B7 is every third item from 1
        hits = candidate.range_search(bits[:5], 3, with_metadata=True, filter="year == 2020")
        for found, _, found_meta in hits:
            assert all(m["year"] == 2020 for m in found_meta)
            assert 0 not in found  # removed
    with pytest.raises(FilterError):
        index.search(bits[:1], 1, filter="site ==")
