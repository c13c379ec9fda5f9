"""Central Similarity Quantization (CSQ: Yuan, Wang, Zhang, Tay, Jie, Liu & Feng, CVPR 2020).

Every class gets a hash centre, a +-1 codeword, and every item's code is pulled to its centre.
Centres (Sec. 3.2): rows of [H_K; -H_K] for the K x K Hadamard matrix, pairwise K/2 apart;
random centres with K/2 bits set when the classes outnumber 2K or K is not a power of 2, as
the authors' code does (``hashlab.losses.centres.hadamard_centres``; the minimum pairwise
distance is recorded in ``config.json`` under ``extra.centres``). A multi-label item's centre
is the centroid of its labels' centres re-binarised, ties broken by one random vector drawn
once per run (as the authors' code). Loss (Sec. 3.3): the central similarity BCE between
(u + 1) / 2 and the centre bits, plus lambda times mean((|u| - 1)^2), on a tanh hash layer
(``hashlab.losses.hash_centre.central_similarity_loss``). Equation numbers are not given:
the paper's text is not in ``shared/seeds``.

Defaults: lambda = 1e-4 (DeepHash-pytorch's CSQ.py, the code the field's tables use; the
authors' own ``options.py`` has ``lambda2 = 0.05``, so lambda is in the search space). The
authors' optional pairwise term (``lambda1``) is left out, as DeepHash-pytorch does. Training
options (Adam, lr 1e-3, MLP head on frozen features) are hashlab's shared protocol, not the
paper's fine-tuned AlexNet / ResNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.centres import combine_centres
from hashlab.losses.hash_centre import central_similarity_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.deep.centre_hooks import CentreHooks
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class CSQConfig(DeepHashConfig):
    quantization_weight: float = 1e-4  # lambda (DeepHash-pytorch; the authors' options.py: 0.05)
    centres: str = "hadamard"  # "hadamard" (with the paper's random fallback) or "bernoulli"

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The shared lr / weight decay, and lambda (1e-4 in DeepHash-pytorch, 0.05 in the
        authors' code)."""
        return {**super().search_space(), "quantization_weight": ("float", 1e-5, 0.1, "log")}


@register("csq")
class CSQ(CentreHooks, DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = CSQConfig
    head_activation = "tanh"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        centres = combine_centres(labels, self.centres(state), state.extras["tie_bits"])
        return central_similarity_loss(outputs, centres, self.hparams.quantization_weight)
