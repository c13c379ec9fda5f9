"""Adversarial losses of PC-AEGAN (Qiang et al., 2020) and its baseline PC-WGAN / HashGAN.

Pure functions of scores, logits, codes and similarities; the networks that produce them live
in ``hashlab.methods.deep.pc_aegan_networks``. Equation numbers are PC-AEGAN's
(``shared/specs/pc_aegan.md``):

* approximate hash codes (Eq. 6): L_H = ||S - (1/q) H H^T||_F^2, evaluated on sampled pairs
  only (an n x n S for n = 59,000 would not fit); averaged over the pairs;
  :func:`approximate_code_loss`.
* WGAN critic (Eq. 7 / Eq. 11): E[score(fake)] - E[score(real)];
  :func:`wasserstein_critic_loss`, plus lambda times :func:`gradient_penalty`
  E[(||grad critic(x_hat)||_2 - 1)^2] on random interpolates x_hat (WGAN-GP, Gulrajani et al.
  2017). Eq. 11 is the same loss with H as "real" and the generator's random codes Z_r as
  "fake".
* pair head (Eq. 8): binary cross-entropy between the pair head's probability that two images
  are similar and S_ij, class-balanced by default; :func:`pair_similarity_loss` (on logits).
* generator (Eq. 10): -E[D(I_fake)] + BCE(D(I_fake_i, I_real_j), S_ij);
  :func:`generator_adversarial_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as functional

from hashlab.losses.pairwise import class_balance_weights

__all__ = [
    "approximate_code_loss",
    "wasserstein_critic_loss",
    "gradient_penalty",
    "pair_similarity_loss",
    "generator_adversarial_loss",
]


def approximate_code_loss(
    h_i: torch.Tensor, h_j: torch.Tensor, s: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 6 on sampled pairs: mean over pairs of w_ij (s_ij - <h_i, h_j> / q)^2.

    ``h_i``, ``h_j`` are (P, q) relaxed codes of the two members of P pairs, ``s`` their (P,)
    0/1 similarities, ``weights`` optional per-pair weights (default: all 1, as Eq. 6).
    The method passes codes in [-1, 1] (see ``pc_aegan_game``): then s_ij = 1 asks for equal
    codes and s_ij = 0 for orthogonal ones.
    """
    n_bits = h_i.shape[1]
    residual = (s.to(h_i.dtype) - (h_i * h_j).sum(dim=1) / n_bits).pow(2)
    return residual.mean() if weights is None else (weights * residual).mean()


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Eq. 7 / Eq. 11 without the penalty: E[critic(fake)] - E[critic(real)]."""
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x critic(x)||_2 - 1)^2] at x = e real + (1 - e) fake, e ~ U(0, 1).

    One e per item, broadcast over the item's other dimensions (pixels or code bits).
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    mix = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    interpolates = (mix * real.detach() + (1.0 - mix) * fake.detach()).requires_grad_(True)
    scores = critic(interpolates)
    (gradients,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    norms = gradients.flatten(1).norm(2, dim=1)
    return (norms - 1.0).pow(2).mean()


def pair_similarity_loss(
    logits: torch.Tensor, s: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 8: mean binary cross-entropy between sigmoid(logits) and the 0/1 similarities.

    ``weights=None`` uses the class-balance weights of Eq. 4 (our addition: with 10 classes
    90% of pairs are dissimilar, and unweighted the head sat at "always dissimilar" for a whole
    CPU run); pass ones for the plain Eq. 8.
    """
    if weights is None:
        weights = class_balance_weights(s)
    return functional.binary_cross_entropy_with_logits(logits, s.to(logits.dtype),
                                                       weight=weights.to(logits.dtype))


def generator_adversarial_loss(
    fake_scores: torch.Tensor, pair_logits: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Eq. 10: -E[D(I_fake)] + BCE(D(I_fake_i, I_real_j), s_ij)."""
    return -fake_scores.mean() + pair_similarity_loss(pair_logits, s)
