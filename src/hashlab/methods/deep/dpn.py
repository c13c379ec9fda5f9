"""Deep Polarized Network (DPN: Fan, Ng, Ju, Zhang & Chan, IJCAI 2020).

Each class has a fixed target code t_c of +-1; the polarisation loss pushes every output
u_k past the margin m on the side of its target bit: sum_k max(m - u_k t_k, 0), averaged over
items (``hashlab.losses.hash_centre.polarization_loss``). A multi-label item sums the hinge to
each of its labels' targets, as the authors' code (kamwoh/DPN, ``calculate_loss``) does. The
hash layer is linear (no tanh: the hinge itself bounds what is useful). Equation numbers
are not given: the paper's text is not in ``shared/seeds``.

Defaults (authors' code, kamwoh/DPN ``main.py``): m = 1 (``--margin 1.0``); targets are
random signs per bit (``--centroid-method N``, the sign of a Gaussian; ``"bernoulli"`` here),
with Hadamard targets as the option. The paper's adaptive target update (DPN-A) and
ternary assignment (DPN-T) are off by default in the authors' code and not built. Training
options are hashlab's shared protocol, not the paper's fine-tuned AlexNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.hash_centre import polarization_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.deep.centre_hooks import CentreHooks
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DPNConfig(DeepHashConfig):
    margin: float = 1.0  # m (authors' code default)
    centres: str = "bernoulli"  # target codes: "bernoulli" (authors' default) or "hadamard"

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The shared lr / weight decay, and the margin m."""
        return {**super().search_space(), "margin": ("float", 0.25, 4.0, "log")}


@register("dpn")
class DPN(CentreHooks, DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DPNConfig
    head_activation = "identity"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        return polarization_loss(outputs, labels, self.centres(state), self.hparams.margin)
