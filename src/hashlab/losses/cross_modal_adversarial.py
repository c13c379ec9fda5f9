"""Adversarial and semantic losses of the cross-modal hashing baselines, as pure functions.

* :func:`gradient_reversal` (Ganin & Lempitsky, ICML 2015): identity forward, gradient
  times -``weight`` backward. ACMR's authors' code (``flip_gradient``) plays its min-max in
  one step this way: the modality classifier descends its loss while the projectors below
  the reversal ascend it. Our SSAH uses it for its discriminators too.
* :func:`modality_adversarial_loss` (ACMR, Wang et al., ACM MM 2017, Eq. 9; SSAH's
  discriminator loss, Li et al., CVPR 2018, Eq. 6, with cross-entropy): mean binary
  cross-entropy of a discriminator's logits, 1 for one side ("image" / "label network"),
  0 for the other ("text" / "modality network").
* :func:`acmr_triplet_loss` (ACMR's inter-modal invariance L_imi, Eq. 5-6, in the form of
  the authors' code): an anchor of one modality, its paired item of the other as positive
  and a dissimilar item of the other as negative, max(0, margin + alpha d+ - d-).
* :func:`label_regression_loss` (SSAH Eq. 2 / 4, eta term): mean squared error of
  predicted label probabilities against the multi-hot labels.
* :func:`quantisation_loss` (SSAH's beta term): mean squared error between binary codes
  and relaxed codes.

* :func:`ugach_triplet_score` and :func:`reinforce_loss` (UGACH, Zhang, Peng & Yuan, AAAI
  2018, Eq. 5 and 7): the discriminator's hinge on (query, true item, generated item) and
  the generator's policy-gradient loss with reward log(1 + exp(score)).

SSAH's J1 / J2 (negative log-likelihood of the label similarity under sigma(<a, b> / 2))
are :func:`hashlab.losses.pairwise.pairwise_likelihood_loss`; nothing new here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = [
    "acmr_triplet_loss",
    "gradient_reversal",
    "label_regression_loss",
    "modality_adversarial_loss",
    "quantisation_loss",
    "reinforce_loss",
    "ugach_triplet_score",
]


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.weight * grad, None


def gradient_reversal(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """x forward; the gradient flowing back through it is multiplied by -``weight``."""
    return _ReverseGradient.apply(x, weight)


def modality_adversarial_loss(
    positive_logits: torch.Tensor, negative_logits: torch.Tensor
) -> torch.Tensor:
    """Mean BCE with target 1 for ``positive_logits`` plus mean BCE with target 0 for
    ``negative_logits`` (each a (N,) or (N, 1) tensor of discriminator logits), halved."""
    positive = functional.binary_cross_entropy_with_logits(
        positive_logits, torch.ones_like(positive_logits)
    )
    negative = functional.binary_cross_entropy_with_logits(
        negative_logits, torch.zeros_like(negative_logits)
    )
    return 0.5 * (positive + negative)


def acmr_triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 0.1,
    alpha: float = 5.0,
) -> torch.Tensor:
    """ACMR's L_imi for (N, K) anchors of one modality and positives / negatives of the
    other: mean of max(0, margin + alpha d(a, p) - d(a, n)), d = ||.||^2 / 2 (TensorFlow's
    ``l2_loss``, as the authors' code; margin 0.1 and alpha 5 are its defaults)."""
    d_positive = 0.5 * (anchor - positive).pow(2).sum(1)
    d_negative = 0.5 * (anchor - negative).pow(2).sum(1)
    return functional.relu(margin + alpha * d_positive - d_negative).mean()


def label_regression_loss(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over all entries of (y_hat - y)^2 ((N, C) each; the authors' ``mse_loss``)."""
    return (probabilities - labels.to(probabilities.dtype)).pow(2).mean()


def quantisation_loss(binary_codes: torch.Tensor, relaxed: torch.Tensor) -> torch.Tensor:
    """Mean over all entries of (b - h)^2 ((N, K) each; the authors' ``mse_loss``)."""
    return (binary_codes.to(relaxed.dtype) - relaxed).pow(2).mean()


def ugach_triplet_score(
    query: torch.Tensor, positive: torch.Tensor, generated: torch.Tensor, margin: float
) -> torch.Tensor:
    """UGACH Eq. 5, per row of (N, K) codes: max(0, m + ||q - d+||^2 - ||q - d_gen||^2)
    (the discriminator's loss on a generated pair, and the score inside its reward)."""
    d_positive = (query - positive).pow(2).sum(1)
    d_generated = (query - generated).pow(2).sum(1)
    return functional.relu(margin + d_positive - d_generated)


def reinforce_loss(log_probabilities: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Policy gradient (REINFORCE, Williams 1992; UGACH Eq. 7): -mean(log p(d | q) * r),
    rewards treated as constants."""
    return -(log_probabilities * rewards.detach()).mean()
