"""The protocol of cross-modal hashing methods: two modalities, one Hamming space.

``fit(train, validation=None)`` learns from a :class:`~hashlab.data.dataset.Dataset` of
paired items: ``features`` is the image side, ``text`` the text features (row i of both
describes the same item) and ``labels`` class ids or multi-hot (two items are similar when
they share a label). ``fit(images, texts, labels)`` is the array convenience: it builds that
Dataset. ``encode(x, modality="image" | "text")`` maps features of either side (or a
Dataset: its ``features`` / ``text``) to (N, K) uint8 0/1 codes in the same space, so image
codes can be searched with text codes and back. ``save``/``hashlab.load`` work as for every
method; ``config.json``'s ``extra.text_featurizer`` (the training Dataset's
``info["text_featurizer"]``) records how raw text becomes the text side, which
:func:`hashlab.methods.cross_modal.text.text_to_features` reads.

Both modalities are standardised (zero mean, unit variance per dimension, statistics of the
items the method trains on) before any method sees them: SIFT histograms and LDA topic
proportions live on very different scales.

The deep methods (``DCMH``, ``LBOCMH``) derive from :class:`TrainedCrossModalMethod`: their
two networks (one per modality, held in one ``nn.ModuleDict``) train on the one
:class:`~hashlab.train.Trainer` through its ``training_batches`` / ``training_step`` /
``validation_score`` hooks, so they get its seeding, device handling, checkpoints and
resume, and best-epoch selection with early stopping on a validation split. The validation
score is the mean of image->text and text->image ``map@all`` of the validation items
(queries) against the training items (database), never the test queries. Without an
explicit validation Dataset, ``validation_fraction`` of the training items (per class) is
held out for it.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hashlab.data.dataset import Dataset, as_multihot
from hashlab.errors import InputError
from hashlab.methods.base import HashMethod, check_features
from hashlab.methods.tags import MethodTags

__all__ = [
    "CrossModalMethod",
    "MODALITIES",
    "RUNTIME_OPTIONS",
    "TrainedCrossModalMethod",
    "TwoLayerNet",
    "label_similarity",
]

MODALITIES = ("image", "text")
#: how to run, not what to learn: constructor keywords that are not saved as parameters
RUNTIME_OPTIONS = ("device", "amp", "progress", "checkpoint_dir", "resume")


# the one label_similarity (hashlab.losses.pairwise), re-exported for existing imports
from hashlab.losses.pairwise import label_similarity  # noqa: E402


def _paired_dataset(
    train: Any, texts: Any, labels: Any, text_featurizer: dict[str, Any] | None
) -> Dataset:
    """The array form ``fit(images, texts, labels)`` as the Dataset the one fit takes."""
    info = {"text_featurizer": dict(text_featurizer)} if text_featurizer else {}
    return Dataset(name="arrays", features=train, text=texts, labels=labels, info=info)


class CrossModalMethod(HashMethod):
    """Base class of image-text hashing methods (see the module docstring)."""

    tags: ClassVar[MethodTags] = MethodTags(
        family="cross_modal", supervision="labels", inputs="paired_text", modalities=MODALITIES
    )
    # read by code written before the tags (hashlab.cli.index); the tags are the truth
    cross_modal: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = MODALITIES

    def fit(  # type: ignore[override]
        self,
        train: Dataset | Any,
        validation: Dataset | Any = None,
        labels: Any = None,
        *,
        text_featurizer: dict[str, Any] | None = None,
    ) -> CrossModalMethod:
        """Learn from a paired Dataset (optionally with a validation Dataset); return ``self``.

        Array form: ``fit(images, texts, labels)`` (the second and third positionals are the
        text features and labels). ``text_featurizer`` overrides the Dataset's
        ``info["text_featurizer"]``; by default it says "precomputed features".
        """
        if not isinstance(train, Dataset):
            if validation is None or np.ndim(validation) != 2:
                raise InputError(
                    f"{self.name} is a cross-modal method: call fit(dataset) with a Dataset of "
                    "paired image features and text features, or fit(images, texts, labels)"
                )
            train, validation = _paired_dataset(train, validation, labels, text_featurizer), None
        elif labels is not None:
            raise InputError("labels come from the Dataset: call fit(dataset, validation=None)")
        if validation is not None and not isinstance(validation, Dataset):
            raise InputError(
                f"validation must be a Dataset of paired items, got {type(validation).__name__}"
            )
        images, texts, label_rows = self._paired_arrays(train, "training")
        featurizer = dict(text_featurizer or train.info.get("text_featurizer") or {})
        featurizer.setdefault("kind", "features")
        featurizer.setdefault("dim", int(texts.shape[1]))
        if featurizer["dim"] != texts.shape[1]:
            raise InputError(
                f"text_featurizer says {featurizer['dim']} dimensions but the text features "
                f"have {texts.shape[1]}"
            )
        self.extra_config_ = {
            "modalities": list(self.modalities),
            "image_dim": int(images.shape[1]),
            "text_dim": int(texts.shape[1]),
            "text_featurizer": featurizer,
        }
        held_out = None
        if validation is not None:
            held_out = self._paired_arrays(validation, "validation")
            for side, train_side, val_side in (("image", images, held_out[0]),
                                               ("text", texts, held_out[1])):  # fmt: skip
                if val_side.shape[1] != train_side.shape[1]:
                    raise InputError(
                        f"validation {side} features have {val_side.shape[1]} dimensions, the "
                        f"training ones {train_side.shape[1]}"
                    )
        self._fit_paired(images, texts, label_rows, held_out)
        return self

    def _paired_arrays(
        self, data: Dataset, what: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if data.features is None or data.text is None or isinstance(data.text, list):
            raise InputError(
                f"{self.name} needs {what} items with image features (Dataset.features) and "
                "text feature vectors (Dataset.text)"
            )
        images = check_features(data.features, f"{what} image features")
        texts = check_features(data.text, f"{what} text features")
        labels = self._check_labels(data.labels, len(images))
        return images, texts, labels

    def _check_labels(self, y: Any, n: int) -> np.ndarray | None:
        if self.tags.supervision == "none":  # labels optional and unused (CMFH)
            return None if y is None else super()._check_labels(y, n)
        return super()._check_labels(y, n)

    def _fit_paired(
        self,
        images: np.ndarray,
        texts: np.ndarray,
        labels: np.ndarray | None,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None,
    ) -> None:
        """Standardise with training statistics, then ``_fit`` (the shallow methods ignore
        the validation split: they have no epochs to select)."""
        self._set_statistics(images, texts)
        multihot = None if labels is None else as_multihot(labels)
        self._fit(self._standardise(images, "image"), self._standardise(texts, "text"), multihot)

    def _set_statistics(self, images: np.ndarray, texts: np.ndarray) -> None:
        for modality, features in (("image", images), ("text", texts)):
            mean = features.mean(axis=0)
            scale = features.std(axis=0)
            scale[scale < 1e-12] = 1.0  # constant dimensions carry nothing; avoid 0-division
            setattr(self, f"{modality}_mean_", mean)
            setattr(self, f"{modality}_scale_", scale)

    def encode(self, x: Any, modality: str = "image") -> np.ndarray:
        """(N, K) uint8 0/1 codes of image or text features (bit = real projection >= 0)."""
        if modality not in self.modalities:
            raise InputError(
                f"modality must be one of {', '.join(self.modalities)}, got {modality!r}"
            )
        self._check_fitted()
        if isinstance(x, Dataset):
            x = x.features if modality == "image" else x.text
            if x is None or isinstance(x, list):
                raise InputError(f"the Dataset has no {modality} feature vectors to encode")
        features = check_features(x, f"{modality} features")
        expected = getattr(self, f"{modality}_mean_").shape[0]
        if features.shape[1] != expected:
            raise InputError(
                f"{modality} features have {features.shape[1]} dimensions, the model was "
                f"fitted on {expected}"
            )
        projections = self._project(self._standardise(features, modality), modality)
        return (projections >= 0).astype(np.uint8)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (read from the signature), runtime options left out."""
        names = [
            name
            for name in inspect.signature(type(self).__init__).parameters
            if name != "self" and name not in RUNTIME_OPTIONS
        ]
        return {name: getattr(self, name) for name in names}

    def _standardise(self, features: np.ndarray, modality: str) -> np.ndarray:
        mean = getattr(self, f"{modality}_mean_")
        scale = getattr(self, f"{modality}_scale_")
        return ((features - mean) / scale).astype(np.float32)

    @property
    def text_featurizer(self) -> dict[str, Any]:
        """How raw text becomes this model's text side (see the module docstring)."""
        self._check_fitted()
        return dict(getattr(self, "extra_config_", {}).get("text_featurizer", {}))

    def _fit(self, images: np.ndarray, texts: np.ndarray, labels: np.ndarray | None) -> None:
        """Learn the attributes ending in ``_`` from standardised features, (N, C) multi-hot."""
        raise TypeError(f"{type(self).__name__} must define _fit or _fit_paired")

    @abstractmethod
    def _project(self, features: np.ndarray, modality: str) -> np.ndarray:
        """Real values whose signs (>= 0 -> 1) are the bits of standardised features."""


class TwoLayerNet(nn.Module):
    """fc -> tanh | relu -> fc to K units, optionally -> sigmoid (LBOCMH's Eq. 1).

    ``logits`` is the pre-activation; its sign is the bit for both output kinds
    (sigmoid(z) >= 0.5 exactly when z >= 0).
    """

    def __init__(
        self, in_dim: int, hidden: int, n_bits: int, activation: str, sigmoid: bool
    ) -> None:
        super().__init__()
        self.layer_1 = nn.Linear(in_dim, hidden)
        self.layer_2 = nn.Linear(hidden, n_bits)
        self.activation = activation
        self.sigmoid = sigmoid

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.layer_1(features)
        hidden = torch.tanh(hidden) if self.activation == "tanh" else torch.relu(hidden)
        return self.layer_2(hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.logits(features)
        return torch.sigmoid(logits) if self.sigmoid else logits

    def weights(self) -> list[torch.Tensor]:
        return [self.layer_1.weight, self.layer_2.weight]

    def biases(self) -> list[torch.Tensor]:
        return [self.layer_1.bias, self.layer_2.bias]


class TrainedCrossModalMethod(CrossModalMethod):
    """Two networks (``nets["image"]``, ``nets["text"]``) trained on the one Trainer.

    Subclasses define ``build_nets(image_dim, text_dim) -> nn.ModuleDict``, the trainer hooks
    ``training_batches(state, rng)`` and ``training_step(batch, state)`` (see
    :mod:`hashlab.train.trainer`), ``train_config()`` and the ``hidden_activation`` of their
    :class:`TwoLayerNet` s; this class carves the validation split, runs the trainer, scores
    validation epochs and turns the best networks into numpy weights (``encode`` needs no
    torch).
    """

    hidden_activation: ClassVar[str] = "tanh"

    @abstractmethod
    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        """One :class:`TwoLayerNet` per modality."""

    @abstractmethod
    def train_config(self) -> Any:
        """The :class:`~hashlab.train.TrainConfig` of this method's settings."""

    @abstractmethod
    def steps_per_epoch(self, labels: np.ndarray) -> int:
        """Optimiser steps per network in one epoch on items with these (N, C) labels (what
        an equal-updates budget converts to epochs)."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies a run for resuming (epochs and patience may grow between runs)."""
        params = {k: v for k, v in self.get_params().items() if k not in ("epochs", "patience")}
        return {"method": self.name, **params}

    # -- data on the trainer's device (rebuilt on resume: not checkpointed) ---------------
    def device_inputs(self, state: Any) -> dict[str, torch.Tensor]:
        cached = getattr(self, "_device_inputs", None)
        if cached is None or cached["image"].device != state.device:
            arrays = self._train_arrays
            cached = {m: torch.from_numpy(x).to(state.device) for m, x in arrays.items()}
            self._device_inputs = cached
        return cached

    def _fit_paired(
        self,
        images: np.ndarray,
        texts: np.ndarray,
        labels: np.ndarray | None,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None,
    ) -> None:
        from hashlab.train import Trainer

        labels = as_multihot(labels)
        if validation is None:
            from hashlab.data.splits import carve_validation

            fraction = self.validation_fraction
            rng = np.random.default_rng(self.seed)
            # carve on the class ids where there are some: per class, as the deep methods do
            ids = labels.argmax(1) if (labels.sum(1) == 1).all() else labels
            train_pos, val_pos = carve_validation(ids, fraction, rng)
            held = (images[val_pos], texts[val_pos], labels[val_pos]) if len(val_pos) else None
            images, texts, labels = images[train_pos], texts[train_pos], labels[train_pos]
            description = f"{fraction:.0%} of the training items, per class"
        else:
            val_images, val_texts, val_labels = validation
            n_classes = max(labels.shape[1], as_multihot(val_labels).shape[1])
            labels = np.pad(labels, ((0, 0), (0, n_classes - labels.shape[1])))
            val_multihot = as_multihot(val_labels)
            val_multihot = np.pad(val_multihot, ((0, 0), (0, n_classes - val_multihot.shape[1])))
            held = (val_images, val_texts, val_multihot)
            description = "explicit split"
        self._set_statistics(images, texts)
        self._train_arrays = {
            "image": self._standardise(images, "image"),
            "text": self._standardise(texts, "text"),
        }
        self._device_inputs = None
        validation_arrays = None
        if held is not None:
            validation_arrays = {
                "image": self._standardise(held[0], "image"),
                "text": self._standardise(held[1], "text"),
                "labels": held[2],
                # computed once, not per epoch: which training items each validation item's
                # search should find (shared class)
                "relevance": label_similarity(held[2], labels),
            }
        fingerprint = {
            **self.fingerprint(), "n_train": len(images),
            "image_dim": int(images.shape[1]), "text_dim": int(texts.shape[1]),
        }  # fmt: skip
        trainer = Trainer(self.train_config())
        nets, result = trainer.fit(
            self,
            lambda: self.build_nets(images.shape[1], texts.shape[1]),
            _PairedItems(len(images)),
            labels,
            validation_arrays,
            fingerprint=fingerprint,
        )
        # do not keep the data (or per-fit caches of subclasses) around after the fit
        self._train_arrays, self._device_inputs = {}, None
        for cache in [name for name in vars(self) if name.endswith("_cache")]:
            delattr(self, cache)
        history = result.history
        self.extra_config_["training"] = {
            **result.to_json(),
            "n_train": len(images),
            "n_validation": 0 if held is None else len(held[0]),
            "validation": description,
            "selection": "best validation epoch by the mean of i2t and t2i map@all of the "
            "validation items against the training items (never the test queries)",
            "updates_per_network": _updates_per_network(history, result.best_epoch),
        }
        # training time of one epoch (both phases), validation excluded: the paper's Table 4
        self.seconds_per_epoch_ = float(np.mean([row["train_seconds"] for row in history]))
        self.final_loss_ = float(history[-1]["loss"])
        # numpy weights: encode needs no torch. Only the two encoders: adversarial methods
        # keep their discriminators / label networks in the same ModuleDict
        for modality in MODALITIES:
            net = nets[modality]
            setattr(self, f"{modality}_w1_", net.layer_1.weight.detach().cpu().numpy().T.copy())
            setattr(self, f"{modality}_b1_", net.layer_1.bias.detach().cpu().numpy().copy())
            setattr(self, f"{modality}_w2_", net.layer_2.weight.detach().cpu().numpy().T.copy())
            setattr(self, f"{modality}_b2_", net.layer_2.bias.detach().cpu().numpy().copy())

    # -- trainer hooks shared by both deep methods ---------------------------------------
    def on_train_start(self, state: Any) -> None:
        """Called once before the first epoch of a fresh run."""

    def on_epoch_start(self, state: Any) -> None:
        """Called before each epoch."""

    def on_epoch_end(self, state: Any) -> None:
        """Called after each epoch's steps, before validation."""

    def on_train_end(self, state: Any) -> None:
        """Called once after training, with the best epoch's weights in the networks."""

    def parameter_groups(self, network: nn.Module, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(network.parameters()), "lr": lr}]

    def validation_score(
        self, state: Any, validation: dict[str, Any], metric: str = "map@all"
    ) -> float:
        """Mean of i2t and t2i ``metric``: validation items as queries, training items as the
        database, both coded by the networks being trained (the trainer's ``no_grad``)."""
        from hashlab.metrics import evaluate

        nets = state.network
        train = self.device_inputs(state)

        def codes(modality: str, features: torch.Tensor) -> np.ndarray:
            return (nets[modality].logits(features) >= 0).to(torch.uint8).cpu().numpy()

        val = {m: torch.from_numpy(validation[m]).to(state.device) for m in MODALITIES}
        scores = []
        for query, database in (("image", "text"), ("text", "image")):
            scores.append(
                evaluate(
                    codes(query, val[query]),
                    codes(database, train[database]),
                    metrics=[metric],
                    relevance=validation["relevance"],
                )[metric]
            )
        state.extras.setdefault("validation_by_direction", []).append(
            {"epoch": state.epoch + 1, "i2t": float(scores[0]), "t2i": float(scores[1])}
        )
        return float(np.mean(scores))

    def _project(self, features: np.ndarray, modality: str) -> np.ndarray:
        hidden = features @ getattr(self, f"{modality}_w1_") + getattr(self, f"{modality}_b1_")
        hidden = np.tanh(hidden) if self.hidden_activation == "tanh" else np.maximum(hidden, 0.0)
        return hidden @ getattr(self, f"{modality}_w2_") + getattr(self, f"{modality}_b2_")


class _PairedItems:
    """The trainer's ``train_inputs`` for methods that batch through their own hooks: only
    the number of training items (the features live on the method, per device)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def __len__(self) -> int:
        return self.n_items


def _updates_per_network(history: list[dict[str, float]], best_epoch: int) -> dict[str, int]:
    """Optimiser steps per network in all and up to the selected epoch (steps alternate
    between the two networks, one phase each per epoch, so each gets half)."""
    total = int(history[-1]["steps"]) if history else 0
    at_best = int(history[best_epoch - 1]["steps"]) if history and best_epoch else 0
    return {"total": total // 2, "at_best_epoch": at_best // 2}
