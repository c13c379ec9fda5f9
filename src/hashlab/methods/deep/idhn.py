"""Improved Deep Hashing Network (IDHN: Zhang, Zou, Lin, Chen & Wang, "Improved Deep Hashing
with Soft Pairwise Similarity for Multi-label Image Retrieval", IEEE TMM 2019), in the form of
the authors' TensorFlow code (pectinid16/IDHN).

Multi-label relevance is graded: the similarity of two items is the cosine of their label
vectors, in [0, 1]. Pairs with s = 0 or 1 ("hard") get the pairwise likelihood with
Theta = beta <u_i, u_j> / K, pairs in between ("soft") the squared error
gamma K ((<u_i, u_j> + K) / 2K - s_ij)^2 (``hashlab.losses.soft_similarity``); plus the
quantisation term lambda mean | |u_ik| - 1 |. The relaxed codes are the softsign
u = z / (1 + |z|) of the linear hash layer z. Pairs are the in-batch ones (authors' code).

Defaults (authors' train.py): beta = 5, gamma = 0.1, lambda = 0.1. (DeepHash-pytorch's
IDHN.py uses Theta = <u_i, u_j> / 2 and the unnormalised (Theta + K - 2 K s)^2 instead, 4K
times larger at equal gamma: with it, on MIRFlickr user-tag features at 32 bits (1,000
training items, 8 epochs) map@all was 0.570 against ITQ's 0.587; 0.653 with the authors' form.)
Single-label data: every pair is hard and the loss is DPSH's likelihood; multi-label data is
what the method is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.soft_similarity import cosine_label_similarity, soft_pairwise_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class IDHNConfig(DeepHashConfig):
    beta: float = 5.0  # Theta = beta <u_i, u_j> / K
    soft_weight: float = 0.1  # gamma: weight of the soft pairs' squared error
    quantization_weight: float = 0.1  # lambda (the authors' "alpha")

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "soft_weight": ("float", 1e-3, 1.0, "log")}


@register("idhn")
class IDHN(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = IDHNConfig
    head_activation = "identity"  # z; the loss uses u = z / (1 + |z|), same signs

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        u = outputs / (1.0 + outputs.abs())
        s = cosine_label_similarity(labels, labels)
        quantization = (u.abs() - 1.0).abs().mean()
        return soft_pairwise_loss(u, u, s, config.beta, config.soft_weight) + (
            config.quantization_weight * quantization
        )
