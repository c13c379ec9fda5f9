"""Graph losses of semi-supervised hashing: SSDH (Zhang & Peng, "SSDH: Semi-supervised Deep
Hashing for Large Scale Image Retrieval", IEEE TCSVT 2019 / arXiv 2016).

SSDH's embedding loss is the semi-supervised embedding of Weston, Ratle & Collobert (ICML
2008) on the hash layer, over labelled *and* unlabelled items, with w_ij = 1 for feature-space
neighbours and 0 otherwise (numbered as in ``hashlab.methods.deep.ssdh``):

* (2a) the graph Laplacian term: sum_ij w_ij ||u_i - u_j||^2 = 2 tr(U^T L U), L = D - W,
  averaged over the n^2 ordered pairs; :func:`graph_laplacian_loss`;
* (2b) its counterpart for non-neighbours, mean over pairs of
  (1 - w_ij) max(0, m - ||u_i - u_j||^2), which keeps the Laplacian term from collapsing every
  code onto one point; :func:`graph_embedding_loss` is (2a) + (2b).
"""

from __future__ import annotations

import torch

from hashlab.losses.contrastive import squared_distances

__all__ = ["graph_embedding_loss", "graph_laplacian_loss"]


def graph_laplacian_loss(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(2a): mean over the n^2 ordered pairs of w_ij ||u_i - u_j||^2 (= 2 tr(U^T L U) / n^2)."""
    return (w.to(u.dtype) * squared_distances(u, u)).mean()


def graph_embedding_loss(u: torch.Tensor, w: torch.Tensor, margin: float) -> torch.Tensor:
    """(2a) + (2b): neighbours pulled together, other pairs pushed to ``margin`` apart."""
    w = w.to(u.dtype)
    apart = ((1.0 - w) * torch.clamp(margin - squared_distances(u, u), min=0.0)).mean()
    return graph_laplacian_loss(u, w) + apart
