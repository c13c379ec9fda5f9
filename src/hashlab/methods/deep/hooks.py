"""What the one trainer calls on a deep method, with the defaults most methods keep.

Trainer hooks (``on_train_start`` ... ``on_train_end``, ``epoch_order``,
``parameter_groups``, ``binarize``) and data hooks (``training_targets`` /
``validation_targets``: what the trainer fits against, the labels by default, the tags for
a weakly supervised method; ``input_features``: a feature array -> network inputs, e.g.
IDEA's pooling of region maps). A method overrides only the ones it needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.errors import InputError
from hashlab.losses.pairwise import label_similarity
from hashlab.train.trainer import TrainState

__all__ = ["DeepHooks"]


class DeepHooks:
    """Default hooks of :class:`~hashlab.methods.deep.base.DeepHashMethod`."""

    # -- trainer hooks (defaults) -------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        """Called once before the first epoch of a fresh (not resumed) run."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before each epoch (e.g. HashNet's beta continuation)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after each epoch's batches, before validation (e.g. ADSH's code update)."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once after training, with the best epoch's weights in the network."""

    def epoch_order(self, state: TrainState, rng: np.random.Generator) -> np.ndarray:
        """Training items of one epoch, in order: a fresh permutation of all of them."""
        return rng.permutation(len(state.train_labels))

    def parameter_groups(self, network: nn.Module, lr: float) -> list[dict[str, Any]]:
        """Backbone parameters at ``backbone_lr_scale * lr``, everything else at ``lr``."""
        backbone = list(network.backbone.parameters()) if network.backbone is not None else []
        backbone_ids = {id(p) for p in backbone}
        rest = [p for p in network.parameters() if id(p) not in backbone_ids]
        groups = [{"params": rest, "lr": lr}]
        if backbone:
            groups.append({"params": backbone, "lr": lr * self.hparams.backbone_lr_scale})
        return groups

    def binarize(self, outputs: torch.Tensor) -> np.ndarray:
        return (outputs > self.code_threshold).to(torch.uint8).cpu().numpy()

    # -- data hooks (defaults: supervised by labels, features used as given) -------------
    def training_targets(self, x: Any, y: Any, n_items: int, **supervision: Any) -> np.ndarray:
        """What the trainer fits against, (N,) ids or (N, C) 0/1: the labels by default.

        ``supervision`` are the extra keywords given to ``fit`` (none for label-supervised
        methods); a weakly supervised method returns tags here and refuses labels.
        """
        if supervision:
            raise InputError(
                f"{self.name}.fit() got unexpected keyword arguments: {', '.join(supervision)}"
            )
        return self._check_labels(y if y is not None else getattr(x, "labels", None), n_items)

    def validation_targets(self, x: Any, y: Any, n_items: int) -> np.ndarray:
        """Targets of an explicit ``validation=(x, y)`` split, in the same form as training's."""
        return self._check_labels(y if y is not None else getattr(x, "labels", None), n_items)

    def input_features(self, features: np.ndarray) -> np.ndarray:
        """A feature array given to fit / encode -> (N, D) network inputs (default: as is)."""
        return features

    @staticmethod
    def similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
        """0/1 label similarity of two multi-hot label batches."""
        return label_similarity(labels_a, labels_b)
