"""Binary codes: real values -> bits, bits <-> packed bytes, Hamming distances.

Conventions used everywhere in hashlab:

* An *unpacked* code matrix is an ``(N, K)`` ``uint8`` array of 0/1, one row per item.
* A *packed* code matrix is an ``(N, ceil(K/8))`` ``uint8`` array. Bit order is
  **big-endian within each byte**: bit ``j`` of a code lives in byte ``j // 8`` at bit
  position ``7 - j % 8`` (``numpy.packbits`` default, and the order faiss uses). Padding bits
  of the last byte are zero.
* Hamming distance is XOR + popcount on packed codes, computed on 64-bit words when the
  byte count allows it.
"""

from __future__ import annotations

import numpy as np

from hashlab.errors import HashlabValueError

__all__ = [
    "binarize",
    "pack_bits",
    "unpack_bits",
    "as_packed",
    "hamming_distance",
    "hamming_distance_matrix",
    "popcount",
    "codes_to_hex",
    "hex_to_codes",
    "validate_codes",
    "CodeLengthError",
]


class CodeLengthError(HashlabValueError):
    """Raised when code matrices of different lengths are combined."""


_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of an unsigned integer array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, -1)
    return _POPCOUNT_TABLE[as_bytes].sum(axis=-1, dtype=np.uint16)


def binarize(values: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Real-valued outputs -> (N, K) uint8 0/1 codes: ``1`` where ``value > threshold``."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise HashlabValueError(f"expected a 2-D array of shape (N, K), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise HashlabValueError("cannot binarize values that contain NaN or infinity")
    return (values > threshold).astype(np.uint8)


def validate_codes(codes: np.ndarray, n_bits: int | None = None) -> np.ndarray:
    """Check an unpacked 0/1 code matrix and return it as contiguous uint8."""
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[None, :]
    if codes.ndim != 2:
        raise HashlabValueError(f"codes must be a 2-D (N, K) array, got shape {codes.shape}")
    if codes.dtype == bool:
        codes = codes.astype(np.uint8)
    if codes.size and not np.isin(codes, (0, 1)).all():
        raise HashlabValueError(
            "codes must contain only 0 and 1 (use hashlab.codes.binarize first)"
        )
    if n_bits is not None and codes.shape[1] != n_bits:
        raise CodeLengthError(f"codes have {codes.shape[1]} bits, expected {n_bits}")
    return np.ascontiguousarray(codes, dtype=np.uint8)


def pack_bits(codes: np.ndarray) -> np.ndarray:
    """(N, K) 0/1 codes -> (N, ceil(K/8)) uint8, big-endian within each byte."""
    codes = validate_codes(codes)
    return np.packbits(codes, axis=1)


def unpack_bits(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (N, ceil(K/8)) uint8 -> (N, K) uint8 0/1."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim == 1:
        packed = packed[None, :]
    n_bytes = (n_bits + 7) // 8
    if packed.shape[1] != n_bytes:
        raise CodeLengthError(
            f"packed codes have {packed.shape[1]} bytes, {n_bits} bits need {n_bytes}"
        )
    return np.unpackbits(packed, axis=1, count=n_bits)


def as_packed(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Accept unpacked (N, K) 0/1 or packed (N, ceil(K/8)) uint8 codes; return packed.

    Shapes decide: a width of exactly ``n_bits`` columns means unpacked (unless n_bits is
    itself the packed width, which only happens for K <= 1), a width of ``ceil(K/8)`` means
    packed. Anything else is a length mismatch.
    """
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[None, :]
    n_bytes = (n_bits + 7) // 8
    if codes.ndim == 2 and codes.shape[1] == n_bits and n_bits != n_bytes:
        return pack_bits(codes)
    if codes.ndim == 2 and codes.shape[1] == n_bytes:
        if codes.dtype != np.uint8:
            raise HashlabValueError(f"packed codes must be uint8, got {codes.dtype}")
        return np.ascontiguousarray(codes)
    raise CodeLengthError(
        f"codes of shape {codes.shape} do not fit {n_bits}-bit codes: expected (N, {n_bits}) "
        f"0/1 bits or (N, {n_bytes}) packed bytes"
    )


def _as_words(packed: np.ndarray) -> np.ndarray:
    """View packed codes as the widest unsigned words that tile the row (for fast XOR)."""
    n_bytes = packed.shape[1]
    for width, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if n_bytes % width == 0:
            return np.ascontiguousarray(packed).view(dtype)
    return np.ascontiguousarray(packed)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance between two equally shaped *packed* code matrices."""
    a = np.atleast_2d(np.asarray(a, dtype=np.uint8))
    b = np.atleast_2d(np.asarray(b, dtype=np.uint8))
    if a.shape[1] != b.shape[1]:
        raise CodeLengthError(f"code lengths differ: {a.shape[1]} vs {b.shape[1]} bytes")
    return popcount(np.bitwise_xor(_as_words(a), _as_words(b))).sum(axis=1, dtype=np.int32)


def hamming_distance_matrix(
    queries: np.ndarray, database: np.ndarray, packed: bool = False, chunk: int = 256
) -> np.ndarray:
    """All-pairs Hamming distances, shape (Q, N), dtype int32.

    ``queries`` and ``database`` are unpacked 0/1 codes unless ``packed=True``. Works in
    chunks of queries so that the (chunk, N, words) XOR buffer stays small.
    """
    if not packed:
        queries = validate_codes(queries)
        database = validate_codes(database)
        if queries.shape[1] != database.shape[1]:
            raise CodeLengthError(
                f"query codes have {queries.shape[1]} bits but database codes have "
                f"{database.shape[1]}"
            )
        queries, database = pack_bits(queries), pack_bits(database)
    elif queries.shape[1] != database.shape[1]:
        raise CodeLengthError(
            f"code lengths differ: {queries.shape[1]} vs {database.shape[1]} bytes"
        )
    q_words, d_words = _as_words(queries), _as_words(database)
    out = np.empty((q_words.shape[0], d_words.shape[0]), dtype=np.int32)
    for start in range(0, q_words.shape[0], chunk):
        block = q_words[start : start + chunk, None, :] ^ d_words[None, :, :]
        out[start : start + chunk] = popcount(block).sum(axis=2, dtype=np.int32)
    return out


def codes_to_hex(codes: np.ndarray) -> list[str]:
    """Unpacked (N, K) codes -> one hex string per row (packed bytes, big-endian)."""
    return [row.tobytes().hex() for row in pack_bits(codes)]


def hex_to_codes(text: str, n_bits: int) -> np.ndarray:
    """A hex string (as written by :func:`codes_to_hex`) -> (1, K) unpacked code."""
    cleaned = text.strip().lower().removeprefix("0x")
    n_bytes = (n_bits + 7) // 8
    if len(cleaned) != 2 * n_bytes:
        raise CodeLengthError(
            f"hex code {text!r} has {len(cleaned)} hex digits; {n_bits}-bit codes need "
            f"{2 * n_bytes}"
        )
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError as error:
        raise HashlabValueError(f"{text!r} is not a hexadecimal code") from error
    return unpack_bits(np.frombuffer(raw, dtype=np.uint8)[None, :], n_bits)
