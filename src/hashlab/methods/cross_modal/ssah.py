"""SSAH on features: Li, Deng, Li, Liu, Gao & Tao, "Self-Supervised Adversarial Hashing
Networks for Cross-Modal Retrieval", CVPR 2018.

* A label network (LabNet, Sec. 3.2) reads an item's multi-hot label y and gives semantic
  features F^l (``hidden`` units, ReLU), relaxed codes H^l = tanh(.) and a label
  reconstruction; its loss (Eq. 2) is
  alpha J1(F^l) + gamma J2(H^l) + beta ||B - H^l||^2 + eta ||Y^l - Y||^2,
  J1 / J2 the negative log-likelihood of the label similarity S under sigma(<a, b> / 2)
  (:func:`hashlab.losses.pairwise.pairwise_likelihood_loss`).
* The image and text networks (Eq. 4) are supervised by it (self-supervision): their
  features F^v / F^t and codes H^v / H^t against the label network's F^l / H^l of all
  training items (the authors' code: batch rows against every item), the same quantisation
  and label-prediction terms.
* Two discriminators (Eq. 6), one per modality, tell the label network's features (1)
  from that modality's (0); the modality networks play against them through a gradient
  reversal layer (:func:`~hashlab.losses.cross_modal_adversarial.gradient_reversal`).
* B = sign(H^l + H^v + H^t) of every training item, refreshed after each epoch.

On features (as DCMH here): the image network is a
:class:`~hashlab.methods.cross_modal.base.TwoLayerNet` (ReLU hidden layer = F^v, the second
layer's tanh = H^v) on precomputed features instead of CNN-F on pixels, and so is the text
network; label heads and discriminators are extra modules. Defaults from the authors' code
(``setting.py``): alpha = gamma = beta = eta = 1, semantic width 512, batch 128. Ours: one
step on a batch of paired items updates every module (the authors alternate LabNet, image,
text and discriminator phases with their own decaying learning rates), one Adam learning
rate 1e-3, 100 epochs.
"""

from __future__ import annotations

import torch
from torch import nn

from hashlab.losses.cross_modal_adversarial import (
    gradient_reversal,
    label_regression_loss,
    modality_adversarial_loss,
    quantisation_loss,
)
from hashlab.losses.pairwise import pairwise_likelihood_loss
from hashlab.methods.cross_modal.base import MODALITIES, TwoLayerNet
from hashlab.methods.cross_modal.paired import PairedBatchMethod
from hashlab.methods.registry import register
from hashlab.train.trainer import TrainState

__all__ = ["SSAH"]


class _LabelNet(nn.Module):
    """y -> F^l (ReLU), H^l = tanh, label reconstruction (sigmoid)."""

    def __init__(self, n_classes: int, hidden: int, n_bits: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(n_classes, hidden), nn.ReLU())
        self.hash = nn.Linear(hidden, n_bits)
        self.label = nn.Linear(hidden, n_classes)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(labels)
        return features, torch.tanh(self.hash(features)), torch.sigmoid(self.label(features))


@register("ssah")
class SSAH(PairedBatchMethod):
    """Self-supervised adversarial hashing on features (see the module docstring)."""

    hidden_activation = "relu"

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        hidden: int = 512,
        epochs: int = 100,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        alpha: float = 1.0,
        gamma: float = 1.0,
        beta: float = 1.0,
        eta: float = 1.0,
        adversarial: float = 1.0,
        patience: int | None = 20,
        validation_fraction: float = 0.1,
        device: str | None = None,
        amp: bool = False,
        progress: bool = False,
        checkpoint_dir: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.alpha, self.gamma, self.beta, self.eta = alpha, gamma, beta, eta
        self.adversarial = adversarial
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device, self.amp, self.progress = device, amp, progress
        self.checkpoint_dir, self.resume = checkpoint_dir, resume

    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        nets: dict[str, nn.Module] = {
            "image": TwoLayerNet(image_dim, self.hidden, self.n_bits, "relu", sigmoid=False),
            "text": TwoLayerNet(text_dim, self.hidden, self.n_bits, "relu", sigmoid=False),
            "label_net": _LabelNet(self._n_classes, self.hidden, self.n_bits),
        }
        for m in MODALITIES:
            nets[f"{m}_label"] = nn.Linear(self.hidden, self._n_classes)
            nets[f"{m}_discriminator"] = nn.Sequential(
                nn.Linear(self.hidden, self.hidden // 2), nn.ReLU(), nn.Linear(self.hidden // 2, 1)
            )
        return nn.ModuleDict(nets)

    def _outputs(self, state: TrainState, modality: str, x: torch.Tensor):
        """(features F, relaxed codes H, label probabilities) of a modality network."""
        net = state.network[modality]
        features = torch.relu(net.layer_1(x))
        codes = torch.tanh(net.layer_2(features))
        return features, codes, torch.sigmoid(state.network[f"{modality}_label"](features))

    def on_train_start(self, state: TrainState) -> None:
        self._refresh_codes(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._refresh_codes(state)

    def _refresh_codes(self, state: TrainState) -> None:
        inputs = self.device_inputs(state)
        with torch.no_grad():
            total = state.network["label_net"](state.train_labels)[1]
            for m in MODALITIES:
                total = total + self._outputs(state, m, inputs[m])[1]
        state.extras["codes"] = torch.where(total >= 0, 1.0, -1.0)

    def training_step(self, batch: torch.Tensor, state: TrainState) -> torch.Tensor:
        x, labels = self.batch_inputs(state, batch), state.train_labels
        codes = state.extras["codes"][batch]
        with torch.no_grad():  # the label network's view of every item: the supervision
            all_features, all_codes, _ = state.network["label_net"](labels)
        similar = (labels @ x["labels"].T > 0).float()  # (n, B): every item against the batch
        with state.autocast():
            label_features, label_codes, label_out = state.network["label_net"](x["labels"])
            loss = (  # Eq. 2: the label network against every item's label-net outputs
                self.alpha * pairwise_likelihood_loss(all_features, label_features, similar)
                + self.gamma * pairwise_likelihood_loss(all_codes, label_codes, similar)
                + self.beta * quantisation_loss(codes, label_codes)
                + self.eta * label_regression_loss(label_out, x["labels"])
            )
            for m in MODALITIES:
                features, relaxed, predicted = self._outputs(state, m, x[m])
                loss = loss + (  # Eq. 4
                    self.alpha * pairwise_likelihood_loss(all_features, features, similar)
                    + self.gamma * pairwise_likelihood_loss(all_codes, relaxed, similar)
                    + self.beta * quantisation_loss(codes, relaxed)
                    + self.eta * label_regression_loss(predicted, x["labels"])
                )
                # Eq. 6: label-net features are "real"; the modality net ascends through the
                # reversal what its discriminator descends
                discriminator = state.network[f"{m}_discriminator"]
                loss = loss + self.adversarial * modality_adversarial_loss(
                    discriminator(label_features.detach()).squeeze(1),
                    discriminator(gradient_reversal(features)).squeeze(1),
                )
        return loss.float()
