"""``UnsupervisedDeepMethod``: the shared body of the deep methods that learn without labels.

A user with a folder of photos and nothing else (issue 19) gets a deep model from these
methods (BiHalf, unsupervised GreedyHash, DeepBit, DH, UH-BDNN, CIBHash): their tags are
``MethodTags(family="deep", supervision="none", ...)`` and they never read labels, anywhere:

* ``fit`` drops a Dataset's labels before anything looks at them (``y=`` is refused), and
  the trainer's targets are a placeholder built from the number of items only (one column
  of zeros: the trainer wants an (N, C) matrix, the losses never read it);
* validation is a *random* ``validation_fraction`` of the training items (there are no
  classes to stratify on) and is scored by a label-free criterion through the trainer's
  ``validation_score`` hook: by default minus the method's own loss on the held-out items
  (``criterion = "loss"``); a method may override :meth:`heldout_criterion` (UH-BDNN: its
  reconstruction error). Best-epoch selection and early stopping use that score, and the
  saved config's training record says so ("selection: lowest held-out loss, no labels");
* each step runs through the trainer's ``training_step`` hook so that the loss sees what the
  hash head sees: :meth:`unsupervised_loss` gets the head's outputs *and* its inputs (the
  standardised frozen features, or the backbone's features when fine-tuning), since every
  unsupervised objective compares codes with the features they came from.

A method declares ``Config``, ``head_activation`` (or ``build_network``) and
``unsupervised_loss(outputs, features, state)``; extra views (CIBHash, DeepBit) run
``state.network.head`` on augmented features inside the loss.

In fine-tune mode ``features`` are the backbone's current outputs, so the targets move with
the backbone: BiHalf's and GreedyHash's authors train their similarity losses this way; for
a reconstruction objective (UH-BDNN) it also lets the backbone reshape what it reconstructs,
so frozen features (the default) are the faithful setting there.

The held-out criterion is computed with a fixed random seed (augmentations, dropout-style
views), in a forked RNG so that the training stream is left as it was: the same weights
always get the same score, and validation does not change what training draws next.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from hashlab.data.dataset import Dataset
from hashlab.errors import InputError
from hashlab.methods.deep.base import DeepHashMethod
from hashlab.methods.deep.config import DeepHashConfig
from hashlab.train.trainer import TrainState

__all__ = ["HELDOUT_METRIC", "UnsupervisedConfig", "UnsupervisedDeepMethod", "without_labels"]

#: the name the trainer records the per-epoch score under (higher is better: minus a criterion)
HELDOUT_METRIC = "heldout_criterion"


@dataclass
class UnsupervisedConfig(DeepHashConfig):
    """``DeepHashConfig`` with a label-free validation score."""

    # label metrics (map@all ...) cannot be computed without labels: whatever is given (the
    # bench harness passes its table metric to every trained method), selection is on the
    # held-out criterion, and the training record names it
    validation_metric: str = HELDOUT_METRIC

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validation_metric = HELDOUT_METRIC


def without_labels(x: Any) -> Any:
    """A Dataset with its labels dropped unread (``replace`` only reads the fields it keeps)."""
    return replace(x, labels=None) if isinstance(x, Dataset) else x


class UnsupervisedDeepMethod(DeepHashMethod):
    """Base of the deep methods with ``supervision="none"``; see the module docstring."""

    Config: ClassVar[type[DeepHashConfig]] = UnsupervisedConfig
    #: what :meth:`heldout_criterion` measures, for the training record ("lowest held-out ...")
    criterion: ClassVar[str] = "loss"

    # -- what a method declares ---------------------------------------------------------
    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        """Scalar loss of a batch: ``outputs`` (B, K) of the head on ``features`` (B, D)."""
        raise TypeError(f"{type(self).__name__} must define unsupervised_loss()")

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        """Lower is better, on a batch of held-out items (default: the method's own loss)."""
        return self.unsupervised_loss(outputs, features, state)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        raise TypeError(f"{self.name} is unsupervised: its loss is unsupervised_loss()")

    # -- fit: labels are never read -----------------------------------------------------
    def fit(
        self,
        x: np.ndarray | Dataset,
        y: np.ndarray | None = None,
        validation: Dataset | tuple[np.ndarray | Dataset, np.ndarray | None] | None = None,
        **supervision: Any,
    ) -> UnsupervisedDeepMethod:
        """Train on features or a Dataset without reading labels; return ``self``."""
        if y is not None:
            raise InputError(
                f"{self.name} is unsupervised: it learns from the items alone, call fit(x) "
                "without labels (labels only score the codes afterwards)"
            )
        if isinstance(validation, tuple):
            if len(validation) != 2 or validation[1] is not None:
                raise InputError(
                    f"{self.name} is unsupervised: pass validation=x_val (or (x_val, None)), "
                    "without labels"
                )
            validation = validation[0]
        explicit = validation is not None
        if explicit:
            validation = (without_labels(validation), None)
        super().fit(without_labels(x), None, validation, **supervision)
        training = self.extra_config_["training"]
        training["supervision"] = "none: labels are never read by fit"
        training["validation"] = (
            "explicit split" if explicit else f"{self.hparams.validation_fraction:.0%} of the "
            "training items, drawn at random (no classes)"
        )  # fmt: skip
        training["selection"] = f"lowest held-out {self.criterion}, no labels"
        return self

    # -- data hooks: a placeholder built from the number of items only ------------------
    def training_targets(self, x: Any, y: Any, n_items: int, **supervision: Any) -> np.ndarray:
        if supervision:
            raise InputError(
                f"{self.name}.fit() got unexpected keyword arguments: {', '.join(supervision)}"
            )
        # one column of zeros: 2-D, so validation carving draws at random (not per class)
        return np.zeros((n_items, 1), dtype=np.uint8)

    def validation_targets(self, x: Any, y: Any, n_items: int) -> np.ndarray:
        return np.zeros((n_items, 1), dtype=np.uint8)

    # -- trainer hooks ------------------------------------------------------------------
    @staticmethod
    def head_inputs(network: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """What the hash head sees: backbone features (fine-tune) or standardised features."""
        if network.backbone is not None:
            return network.backbone(inputs)
        return (inputs - network.feature_mean) / network.feature_std

    def _forward(
        self, inputs: torch.Tensor, state: TrainState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = inputs.to(state.device, non_blocking=True)
        with state.autocast():
            features = self.head_inputs(state.network, inputs)
            outputs = state.network.head(features)
        return outputs.float(), features.float()

    def training_step(
        self, batch: tuple[np.ndarray, torch.Tensor], state: TrainState
    ) -> torch.Tensor | None:
        indices, inputs = batch
        if len(indices) < 2:  # batch statistics (medians, similarities) need two items
            return None
        state.batch_indices = indices
        outputs, features = self._forward(inputs, state)
        return self.unsupervised_loss(outputs, features, state)

    def validation_score(self, state: TrainState, validation: Any, metric: str) -> float:
        """Minus the mean held-out criterion (higher is better), over training-sized batches
        (the losses use batch statistics, so the batch size is the training one)."""
        inputs, _ = validation
        devices = [state.device] if state.device.type == "cuda" else []
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            batches = inputs.batches(np.arange(len(inputs)), self.hparams.batch_size, False)
            for indices, batch in batches:
                if len(indices) < 2:
                    continue
                state.batch_indices = None  # held-out items: no training positions
                outputs, features = self._forward(batch, state)
                value = self.heldout_criterion(outputs, features, state)
                total += float(value) * len(indices)
                count += len(indices)
        if count == 0:
            raise InputError(f"{self.name}: too few held-out items to validate on")
        return -total / count
