"""Losses of cross-modal hashing, as pure functions of relaxed codes.

Zhang & Zhou, "Cross-modal hashing method based on large batch training and orthogonal
regularization", Application Research of Computers 38(3), 2021 (``lbo_cmh``). For a triplet
(query of one modality, positive and negative of the other) with relaxed codes F in (0, 1)^K:

* D+ = ||F_q - F_+||^2, D- = ||F_q - F_-||^2 (Eq. 3-4): :func:`triplet_distances`;
* L1 (Eq. 5), margin hinge: mean max(0, beta + D+ - D-): :func:`margin_hinge_loss`;
* L2 (Eq. 6-9), sigmoid cross-entropy on the distances (target 0 for D+, 1 for D-):
  mean [ln(1 + e^{D+}) + ln(1 + e^{-D-})]: :func:`distance_cross_entropy_loss`;
* L3 (Eq. 10-12), distance between binary codes H = 1[F >= 0.5] (Eq. 2) and F:
  mean [||H_q - F_q||_1 + ||H_+ - F_+||_1 + ||H_- - F_-||_1]: :func:`code_feature_l1_loss`;
* L4 (Eq. 13), orthogonal regularisation of the weights plus L2 on the biases:
  theta * sum ||W^T W - I||_F^2 + omega * sum ||B||_F^2: :func:`orthogonal_regulariser`,
  :func:`bias_l2_regulariser`; its plain-L2 ablation (Eq. 19): :func:`weight_l2_regulariser`;
  and the off-diagonal form of BigGAN (Brock, Donahue & Simonyan, ICLR 2019, Sec. 3.1),
  theta * sum ||Gram(W) * (1 - I)||_F^2: :func:`offdiagonal_orthogonal_regulariser`.

Which orthogonal form. The paper's theta = 1e-4 is BigGAN's weight, and BigGAN chose it for
the off-diagonal form, which decorrelates the filters without constraining their norms. The
full form ||W^T W - I||^2 also pulls every norm to 1: on Wikipedia it shrinks the text
network's first layer (10 LDA inputs, 256 hidden units; column norms 2.25 against 5.44 with
the off-diagonal form), and the full form loses to plain L2. ``LBOCMH`` therefore uses the
off-diagonal form by default and keeps the full form and plain L2 as ablations.

and the objective of DCMH (Jiang & Li, "Deep Cross-Modal Hashing", CVPR 2017, Eq. 2-3) on
real-valued network outputs F (image) and G (text): :func:`dcmh_inter_modal_likelihood`,
:func:`dcmh_quantisation_loss`, :func:`dcmh_balance_loss`.

Gram matrix convention for the orthogonal regulariser: a weight W of shape (a, b) is not
square, and W^T W (the Gram matrix of the larger side) is rank-deficient, so it can never
equal I. ||W^T W - I_b||^2 and ||W W^T - I_a||^2 differ by the constant |a - b| and have the
same gradient, 4 (W W^T - I) W (Eq. 17); we use the Gram matrix of the smaller side, so the
regulariser is exactly zero for a W with orthonormal rows (or columns).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as functional

__all__ = [
    "triplet_distances",
    "margin_hinge_loss",
    "distance_cross_entropy_loss",
    "code_feature_l1_loss",
    "orthogonal_regulariser",
    "orthogonal_regulariser_gradient",
    "offdiagonal_orthogonal_regulariser",
    "weight_l2_regulariser",
    "bias_l2_regulariser",
    "dcmh_inter_modal_likelihood",
    "dcmh_quantisation_loss",
    "dcmh_balance_loss",
]


def triplet_distances(
    query: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared Euclidean distances D+ and D- (Eq. 3-4) of (n, K) relaxed codes, each (n,)."""
    d_positive = (query - positive).pow(2).sum(dim=1)
    d_negative = (query - negative).pow(2).sum(dim=1)
    return d_positive, d_negative


def margin_hinge_loss(
    d_positive: torch.Tensor, d_negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """L1 (Eq. 5): mean over triplets of max(0, beta + D+ - D-)."""
    return functional.relu(margin + d_positive - d_negative).mean()


def distance_cross_entropy_loss(d_positive: torch.Tensor, d_negative: torch.Tensor) -> torch.Tensor:
    """L2 (Eq. 9): mean of ln(1 + e^{D+}) (Eq. 7) + ln(1 + e^{-D-}) (Eq. 8).

    ``softplus`` is ln(1 + e^x) computed without overflow for large distances.
    """
    return (functional.softplus(d_positive) + functional.softplus(-d_negative)).mean()


def code_feature_l1_loss(*relaxed_codes: torch.Tensor) -> torch.Tensor:
    """L3 (Eq. 12): mean over triplets of sum_parts ||H - F||_1, H = 1[F >= 0.5] (Eq. 2).

    Pass the query, positive and negative relaxed codes (each (n, K)). H is a constant (the
    threshold has no gradient), so d|H - F|/dF = -(2H - 1): the "variant" H of Eq. 17.
    """
    if not relaxed_codes:
        raise ValueError("code_feature_l1_loss needs at least one (n, K) tensor")
    total = relaxed_codes[0].new_zeros(())
    for codes in relaxed_codes:
        binary = (codes >= 0.5).to(codes.dtype).detach()
        total = total + (binary - codes).abs().sum(dim=1).mean()
    return total


def _smaller_side_gram(weight: torch.Tensor) -> torch.Tensor:
    return weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight


def orthogonal_regulariser(weights: Iterable[torch.Tensor], theta: float) -> torch.Tensor:
    """The weight part of L4 (Eq. 13): theta * sum_W ||Gram(W) - I||_F^2.

    Gram is taken on the smaller side of each W (see the module docstring), so the value is 0
    for a W with orthonormal rows or columns.
    """
    total: torch.Tensor | None = None
    for weight in weights:
        gram = _smaller_side_gram(weight)
        identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        term = (gram - identity).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("orthogonal_regulariser needs at least one weight matrix")
    return theta * total


def offdiagonal_orthogonal_regulariser(
    weights: Iterable[torch.Tensor], theta: float
) -> torch.Tensor:
    """BigGAN's orthogonal regulariser: theta * sum_W ||Gram(W) * (1 - I)||_F^2.

    Only the off-diagonal entries of the Gram matrix (smaller side, as
    :func:`orthogonal_regulariser`) are penalised: the rows (or columns) are pushed apart in
    angle, their norms are free. Zero for a W with orthogonal rows / columns of any lengths.
    """
    total: torch.Tensor | None = None
    for weight in weights:
        gram = _smaller_side_gram(weight)
        off_diagonal = gram - torch.diag_embed(torch.diagonal(gram))
        term = off_diagonal.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("offdiagonal_orthogonal_regulariser needs at least one weight matrix")
    return theta * total


def orthogonal_regulariser_gradient(weight: torch.Tensor, theta: float) -> torch.Tensor:
    """Closed-form gradient of :func:`orthogonal_regulariser` for one W (Eq. 17's last term).

    4 theta (W W^T - I) W, which equals 4 theta W (W^T W - I): the same for either Gram side.
    """
    gram = weight @ weight.T
    identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return 4.0 * theta * (gram - identity) @ weight


def weight_l2_regulariser(weights: Iterable[torch.Tensor], theta: float) -> torch.Tensor:
    """The weight part of L4 without orthogonal regularisation (Eq. 19): theta sum ||W||_F^2."""
    terms = [weight.pow(2).sum() for weight in weights]
    if not terms:
        raise ValueError("weight_l2_regulariser needs at least one weight matrix")
    return theta * torch.stack(terms).sum()


def bias_l2_regulariser(biases: Iterable[torch.Tensor], omega: float) -> torch.Tensor:
    """The bias part of L4 (Eq. 13 and 19): omega * sum ||B||_F^2."""
    terms = [bias.pow(2).sum() for bias in biases]
    if not terms:
        raise ValueError("bias_l2_regulariser needs at least one bias vector")
    return omega * torch.stack(terms).sum()


def dcmh_inter_modal_likelihood(
    image_outputs: torch.Tensor, text_outputs: torch.Tensor, similarity: torch.Tensor
) -> torch.Tensor:
    """DCMH's negative log likelihood of the cross-modal similarities (Eq. 2, first term).

    Theta_ij = 0.5 F_i^T G_j; -sum_ij (S_ij Theta_ij - ln(1 + e^{Theta_ij})). ``similarity``
    is the (n_image, n_text) 0/1 matrix S. Summed, as in the paper (not averaged).
    """
    theta = 0.5 * image_outputs @ text_outputs.T
    return -(similarity * theta - functional.softplus(theta)).sum()


def dcmh_quantisation_loss(binary_codes: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """DCMH's ||B - F||_F^2 (Eq. 2, second term) for one modality; B in {-1, +1}."""
    return (binary_codes - outputs).pow(2).sum()


def dcmh_balance_loss(outputs: torch.Tensor) -> torch.Tensor:
    """DCMH's ||F 1||^2 (Eq. 2, third term): each bit's sum over items, squared and summed.

    Pushes every bit to be +1 on half of the items and -1 on the other half.
    """
    return outputs.sum(dim=0).pow(2).sum()
