"""Bit packing, Hamming distances and code validation."""

import numpy as np
import pytest

from hashlab.codes import (
    CodeLengthError,
    as_packed,
    binarize,
    codes_to_hex,
    hamming_distance,
    hamming_distance_matrix,
    hex_to_codes,
    pack_bits,
    popcount,
    unpack_bits,
)


@pytest.mark.parametrize("n_bits", [1, 7, 8, 12, 16, 32, 48, 64, 100, 128])
def test_pack_unpack_round_trip(n_bits):
    rng = np.random.default_rng(n_bits)
    codes = rng.integers(0, 2, size=(37, n_bits), dtype=np.uint8)
    packed = pack_bits(codes)
    assert packed.shape == (37, (n_bits + 7) // 8)
    np.testing.assert_array_equal(unpack_bits(packed, n_bits), codes)


def test_bit_order_is_big_endian_within_bytes():
    # bit 0 of the code is the most significant bit of byte 0, as numpy.packbits and faiss do
    codes = np.zeros((1, 16), dtype=np.uint8)
    codes[0, 0] = 1
    codes[0, 15] = 1
    np.testing.assert_array_equal(pack_bits(codes), [[0b1000_0000, 0b0000_0001]])
    assert codes_to_hex(codes) == ["8001"]
    np.testing.assert_array_equal(hex_to_codes("8001", 16), codes)


@pytest.mark.parametrize("n_bits", [8, 24, 32, 64, 96, 128])
def test_hamming_matrix_matches_brute_force(n_bits):
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 2, size=(9, n_bits), dtype=np.uint8)
    database = rng.integers(0, 2, size=(300, n_bits), dtype=np.uint8)
    expected = (queries[:, None, :] != database[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(hamming_distance_matrix(queries, database, chunk=4), expected)
    packed = hamming_distance_matrix(pack_bits(queries), pack_bits(database), packed=True)
    np.testing.assert_array_equal(packed, expected)
    rowwise = hamming_distance(pack_bits(queries), pack_bits(database[:9]))
    np.testing.assert_array_equal(rowwise, (queries != database[:9]).sum(axis=1))


def test_hand_computed_distance():
    a = np.array([[1, 0, 1, 1, 0, 0, 0, 1]], dtype=np.uint8)
    b = np.array([[0, 0, 1, 0, 0, 1, 0, 1]], dtype=np.uint8)  # differ at bits 0, 3, 5
    assert hamming_distance_matrix(a, b)[0, 0] == 3


def test_popcount_of_words():
    words = np.array([0, 1, 0xFF, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(popcount(words), [0, 1, 8, 64])


def test_mismatched_lengths_are_errors_not_garbage():
    with pytest.raises(CodeLengthError, match="32 bits"):
        hamming_distance_matrix(np.zeros((2, 32), np.uint8), np.zeros((2, 64), np.uint8))
    with pytest.raises(CodeLengthError):
        unpack_bits(np.zeros((2, 3), np.uint8), 32)
    with pytest.raises(CodeLengthError, match="do not fit 64-bit"):
        as_packed(np.zeros((2, 5), np.uint8), 64)
    with pytest.raises(CodeLengthError, match="hex digits"):
        hex_to_codes("abc", 16)


def test_as_packed_accepts_bits_or_bytes():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2, size=(5, 64), dtype=np.uint8)
    np.testing.assert_array_equal(as_packed(codes, 64), pack_bits(codes))
    np.testing.assert_array_equal(as_packed(pack_bits(codes), 64), pack_bits(codes))


def test_binarize_and_validation():
    np.testing.assert_array_equal(binarize(np.array([[-1.0, 0.0, 2.0]])), [[0, 0, 1]])
    with pytest.raises(ValueError, match="NaN"):
        binarize(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        pack_bits(np.array([[0, 2, 1]]))
