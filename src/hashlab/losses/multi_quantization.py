"""Losses of DBD-MQ (Duan, Lu, Wang, Tian & Zhou, "Learning Deep Binary Descriptor with
Multi-Quantization", CVPR 2017), numbered as in ``hashlab.methods.deep.dbd_mq``.

* (1) the multi-quantisation loss of the K-AutoEncoders (KAEs): each real-valued descriptor
  u_n is binarised by every autoencoder k (b_n^k = sgn(E_k u_n)) and rebuilt (D_k b_n^k); the
  loss is the mean over items of the *smallest* reconstruction error min_k ||u_n - D_k b_n^k||^2
  (each item is quantised by the autoencoder that fits it best, the way k-means assigns an
  item to its nearest centre; with one autoencoder and E = D = I it is ||u - sgn u||^2, the
  usual quantisation loss); :func:`multi_quantization_loss` takes the (M, n) errors;
* (2) the variance term -mean_k Var_n(u_nk): informative, spread-out descriptors;
  :func:`descriptor_variance`.
"""

from __future__ import annotations

import torch

__all__ = ["descriptor_variance", "multi_quantization_loss"]


def multi_quantization_loss(errors: torch.Tensor) -> torch.Tensor:
    """(1): mean over items of min over the M autoencoders of (M, n) reconstruction errors."""
    return errors.min(dim=0).values.mean()


def descriptor_variance(u: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the (biased) batch variance of (n, K) descriptors."""
    return u.var(dim=0, unbiased=False).mean()
