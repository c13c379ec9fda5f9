"""Hash centres (class codewords) for the centre-based methods: CSQ, OrthoHash, DPN.

* :func:`hadamard_centres`: CSQ (Yuan et al., CVPR 2020, Sec. 3.2): the rows of
  [H_K; -H_K] for a K x K Sylvester-Hadamard matrix H_K (K a power of 2). Any two of them are
  K/2 apart in Hamming distance (a row and its own negation: K), the property CSQ asks of
  centres. When the classes outnumber the 2K rows, or K is not a power of 2, the authors' code
  (yuanli2333/Hadamard-Matrix-for-hashing, ``get_hash_targets``) falls back to random
  centres with exactly K/2 bits set per centre (:func:`balanced_bernoulli_centres`);
  so do we, and the report says so.
* :func:`random_sign_centres`: each bit an independent fair coin, the default codebook of the
  OrthoHash and DPN authors' code (kamwoh/orthohash ``--codebook-method B``, kamwoh/DPN
  ``--centroid-method N``, the sign of a Gaussian: the same distribution).
* :func:`combine_centres`: a multi-label item's centre, the centroid of its labels' centres
  re-binarised (CSQ Sec. 3.2); a tie (a bit whose sum is 0) takes the bit of one random
  vector drawn once per run, as the authors' code does.

Centres are float32 arrays of +-1, one row per class. Every generator returns the centres
and a report (``kind``, ``min_hamming``, ``mean_hamming``, and why a fallback was taken) that
the methods record in their ``config.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hashlab.errors import ConfigError

__all__ = ["balanced_bernoulli_centres", "centre_report", "combine_centres", "hadamard_centres",
           "make_centres", "random_sign_centres", "sylvester_hadamard"]  # fmt: skip

#: the CSQ authors draw random centres 20 times; we keep the draw with the largest minimum
#: distance (they stop at the first with min > K/4 and mean >= K/2)
BERNOULLI_TRIES = 20


def sylvester_hadamard(n: int) -> np.ndarray:
    """The n x n Sylvester-Hadamard matrix (n a power of 2): H_2n = [[H_n, H_n], [H_n, -H_n]]."""
    if n < 1 or n & (n - 1):
        raise ConfigError(f"a Sylvester-Hadamard matrix needs a power of 2, got {n}")
    h = np.ones((1, 1), dtype=np.float32)
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def centre_report(centres: np.ndarray, kind: str, **notes: Any) -> dict[str, Any]:
    """Pairwise Hamming distances of +-1 centres: the minimum and the mean over pairs."""
    centres = np.asarray(centres, dtype=np.float64)
    n, k = centres.shape
    report: dict[str, Any] = {"kind": kind, "n_centres": int(n), "n_bits": int(k)}
    if n > 1:
        distances = (k - centres @ centres.T) / 2  # Hamming distance from the inner product
        pairs = distances[np.triu_indices(n, 1)]
        report["min_hamming"] = int(round(pairs.min()))
        report["mean_hamming"] = float(pairs.mean())
    else:
        report["min_hamming"] = report["mean_hamming"] = None
    return {**report, **notes}


def balanced_bernoulli_centres(
    n_classes: int, n_bits: int, rng: np.random.Generator, tries: int = BERNOULLI_TRIES
) -> tuple[np.ndarray, dict[str, Any]]:
    """Random centres with exactly floor(K/2) bits at -1 each (CSQ's fallback), best of
    ``tries`` draws by minimum pairwise Hamming distance."""
    best, best_min = None, -1
    for _ in range(max(1, tries)):
        centres = np.ones((n_classes, n_bits), dtype=np.float32)
        for row in centres:
            row[rng.choice(n_bits, n_bits // 2, replace=False)] = -1.0
        report = centre_report(centres, "balanced_bernoulli")
        distance = report["min_hamming"] if report["min_hamming"] is not None else n_bits
        if distance > best_min:
            best, best_min = centres, distance
    return best, centre_report(best, "balanced_bernoulli", tries=int(tries))


def hadamard_centres(
    n_classes: int, n_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """CSQ's centres: the first ``n_classes`` rows of [H_K; -H_K]; balanced Bernoulli
    centres (reported as such, with the reason) when K is not a power of 2 or
    ``n_classes > 2K``. Returns (centres (C, K) of +-1, report)."""
    if n_classes < 1 or n_bits < 1:
        raise ConfigError(f"need at least one class and one bit, got {n_classes} and {n_bits}")
    if n_bits & (n_bits - 1):
        centres, report = balanced_bernoulli_centres(n_classes, n_bits, rng)
        return centres, {**report, "fallback": f"{n_bits} bits is not a power of 2"}
    if n_classes > 2 * n_bits:
        centres, report = balanced_bernoulli_centres(n_classes, n_bits, rng)
        return centres, {**report, "fallback": f"{n_classes} classes > 2K = {2 * n_bits} "
                         "Hadamard centres"}  # fmt: skip
    h = sylvester_hadamard(n_bits)
    centres = np.concatenate([h, -h])[:n_classes].astype(np.float32)
    return centres, centre_report(centres, "hadamard")


def random_sign_centres(
    n_classes: int, n_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Each bit of each centre an independent fair +-1 coin (the OrthoHash / DPN default)."""
    centres = np.where(rng.random((n_classes, n_bits)) < 0.5, -1.0, 1.0).astype(np.float32)
    return centres, centre_report(centres, "bernoulli")


CENTRE_KINDS = {"hadamard": hadamard_centres, "bernoulli": random_sign_centres}


def make_centres(
    kind: str, n_classes: int, n_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Centres by name: ``"hadamard"`` (CSQ, with its fallback) or ``"bernoulli"``."""
    if kind not in CENTRE_KINDS:
        raise ConfigError(f"centres must be one of {', '.join(CENTRE_KINDS)}, got {kind!r}")
    return CENTRE_KINDS[kind](n_classes, n_bits, rng)


def combine_centres(
    labels: torch.Tensor, centres: torch.Tensor, tie_bits: torch.Tensor
) -> torch.Tensor:
    """(B, C) multi-hot labels -> (B, K) +-1 centres: sign of the sum of the labels' centres,
    ``tie_bits`` (K,) of +-1 where the sum is 0. A single label gives its own centre."""
    total = labels.to(centres.dtype) @ centres
    return torch.where(total == 0, tie_bits.to(centres.dtype), torch.sign(total))
