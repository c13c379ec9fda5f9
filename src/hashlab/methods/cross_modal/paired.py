"""Cross-modal methods trained on mini-batches of paired items, both networks per step.

DCMH and LBOCMH alternate between the two networks; the adversarial baselines (ACMR, SSAH)
instead take one step on a batch of paired items (image row i and text row i describe the
same item) that updates both encoders and their auxiliary modules (label classifiers,
discriminators: held in the same ``nn.ModuleDict``; only ``nets["image"]`` and
``nets["text"]`` become the saved hash functions). This class gives them the batches, the
trainer settings and the number of classes their heads need; a subclass adds
``build_nets`` and ``training_step``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hashlab.data.dataset import as_multihot
from hashlab.methods.cross_modal.base import TrainedCrossModalMethod
from hashlab.train import TrainConfig
from hashlab.train.trainer import TrainState

__all__ = ["PairedBatchMethod"]


class PairedBatchMethod(TrainedCrossModalMethod):
    """Batches of paired item indices; subclasses set ``epochs``, ``batch_size``,
    ``learning_rate``, ``patience``, ``validation_fraction`` and the runtime options."""

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.learning_rate,
            weight_decay=0.0, patience=self.patience, seed=self.seed, device=self.device,
            amp=self.amp, progress=self.progress, checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
        )  # fmt: skip

    def steps_per_epoch(self, labels: np.ndarray) -> int:
        return max(1, len(labels) // self.batch_size)

    def _fit_paired(
        self,
        images: np.ndarray,
        texts: np.ndarray,
        labels: np.ndarray | None,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None,
    ) -> None:
        # label heads need C before the trainer builds the networks (the base pads the
        # training labels to the validation split's classes the same way)
        classes = as_multihot(labels).shape[1]
        if validation is not None:
            classes = max(classes, as_multihot(validation[2]).shape[1])
        self._n_classes = classes
        super()._fit_paired(images, texts, labels, validation)

    def training_batches(self, state: TrainState, rng: np.random.Generator) -> Any:
        n = len(state.train_labels)
        for batch in np.array_split(rng.permutation(n), max(1, n // self.batch_size)):
            yield torch.from_numpy(batch).to(state.device)

    def batch_inputs(self, state: TrainState, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Standardised image and text features and (B, C) labels of the batch items."""
        inputs = self.device_inputs(state)
        return {
            "image": inputs["image"][batch],
            "text": inputs["text"][batch],
            "labels": state.train_labels[batch],
        }
