"""Losses of the unsupervised generative hashing methods: BGAN, unsupervised HashGAN, UADH.

Pure functions of logits, codes and features; the game that plays them is
``hashlab.methods.deep.adversarial_hashing``. Numbered as in that module's docstring:

* (G1) the GAN discriminator's binary cross-entropy (Goodfellow et al. 2014, Eq. 1):
  -E[log sigmoid(D(real))] - E[log(1 - sigmoid(D(fake)))]; :func:`gan_discriminator_loss`;
* (G2) the non-saturating generator loss -E[log sigmoid(D(fake))] (the same paper, Sec. 3);
  :func:`gan_generator_loss`;
* (G3) content / reconstruction: mean squared error between two feature batches, averaged
  over items and dimensions; :func:`feature_reconstruction_loss`;
* (G4) code reconstruction: mean squared error between relaxed codes in (-1, 1) and the +-1
  codes they should recover (HashGAN's generated images must give back the random code they
  were made from); :func:`code_reconstruction_loss`;
* (G5) bit balance: mean over bits of (mean over the batch of b_k)^2, zero when every bit is
  +1 for half of the batch; :func:`bit_balance_loss`;
* (G6) bit independence: || B^T B / n - I ||_F^2 / K^2, zero when the bits are uncorrelated
  (the off-diagonal part) and of unit power (the diagonal); :func:`bit_independence_loss`;
* the neighbourhood-structure loss of BGAN is PC-AEGAN's Eq. 6 form,
  ``hashlab.losses.adversarial.approximate_code_loss``, with S from feature-space k-NN.

:func:`sign_straight_through` is BGAN's binary activation: sgn(u) forward, identity backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = [
    "bit_balance_loss",
    "bit_independence_loss",
    "code_reconstruction_loss",
    "feature_reconstruction_loss",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "sign_straight_through",
]


def sign_straight_through(u: torch.Tensor) -> torch.Tensor:
    """sgn(u) in {-1, 1} (0 -> 1) forward; the gradient of the identity backward."""
    signs = torch.where(u >= 0, torch.ones_like(u), -torch.ones_like(u))
    return u + (signs - u).detach()


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """(G1): BCE of D's logits, real items labelled 1 and generated ones 0 (mean of the two)."""
    real = functional.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = functional.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """(G2): -E[log sigmoid(D(fake))], the non-saturating form of min log(1 - D(G(z)))."""
    return functional.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def feature_reconstruction_loss(reconstructed: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(G3): mean over items and dimensions of (reconstructed - target)^2."""
    return (reconstructed - target).pow(2).mean()


def code_reconstruction_loss(relaxed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(G4): mean over items and bits of (relaxed - codes)^2, ``codes`` in {-1, 1}."""
    return (relaxed - codes).pow(2).mean()


def bit_balance_loss(codes: torch.Tensor) -> torch.Tensor:
    """(G5): mean over bits of the squared batch mean of each bit (codes in [-1, 1])."""
    return codes.mean(dim=0).pow(2).mean()


def bit_independence_loss(codes: torch.Tensor) -> torch.Tensor:
    """(G6): ||B^T B / n - I||_F^2 / K^2 for a (n, K) batch of codes in [-1, 1]."""
    n, k = codes.shape
    gram = codes.T @ codes / n
    return (gram - torch.eye(k, device=codes.device, dtype=codes.dtype)).pow(2).sum() / k**2
