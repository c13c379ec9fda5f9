"""``DeepHashMethod``: the shared body of every deep hashing method.

A deep method is a :class:`~hashlab.methods.base.HashMethod` (``create(name, n_bits=...)``,
``fit``, ``encode``, ``save``, ``hashlab.load``) that declares only what is its own:

* ``Config``: a dataclass of the paper's defaults, extending :class:`DeepHashConfig` (the
  shared training and network options); every field is a constructor keyword, and the
  values in use are ``model.hparams``;
* ``build_network(input_dim) -> nn.Module``: the hash head on top of ``input_dim`` features
  (default :class:`HashHead`: the papers' fc hash layer, optionally after a hidden layer, with
  the method's ``head_activation``);
* ``loss(outputs, labels, state) -> scalar``: composed from ``hashlab.losses``;
* ``tags`` (:class:`~hashlab.methods.tags.MethodTags`): ``inputs="feature_maps"`` gets the
  backbone's (N, C, 7, 7) region maps instead of pooled vectors, ``supervision="tags"`` the
  images' tags instead of their labels;
* optional trainer and data hooks (``hooks.py``: ``on_epoch_start``, ``training_targets``,
  ``input_features`` ...).

The pieces live by job: ``config.py`` (``DeepHashConfig``), ``network.py`` (``HashHead``,
``DeepHashNetwork``), ``hooks.py`` (hook defaults), ``persistence.py`` (weights files); this
file is fit / encode / save / load. Validation carving is ``hashlab.data.splits``; which
inputs a method gets from a data set is ``hashlab.pipeline.method_inputs``.

The :class:`~hashlab.train.Trainer` does the rest. Two modes (``mode=``):

* ``"frozen"`` (default, the fast CPU path): ``fit(x, y)`` with ``x`` a feature matrix, or a
  ``Dataset`` whose features are taken as they are or extracted once with ``backbone`` (and
  cached on disk); the network is [standardise with training mean/std] -> head.
* ``"finetune"`` (the GPU path; runs on CPU too): ``fit(dataset)`` with a ``Dataset`` of images;
  the network is backbone -> head, trained end to end with the backbone's training
  augmentation, the backbone at ``backbone_lr_scale`` times the head's learning rate (the
  papers fine-tune pretrained layers 10x slower than the new hash layer).

Validation: ``validation_fraction`` of the training items (per class for single-label data)
is held out for per-epoch validation mAP, best-epoch selection and early stopping; pass
``fit(train, validation=dataset)`` (or the array form ``validation=(x_val, y_val)``) to use an
explicit validation split instead.

Saved model directory: ``config.json`` (method, params, hashlab version, backbone, mode,
preprocessing, training history and protocol) and the weights in ``weights.safetensors``
when the ``safetensors`` package is installed, else ``weights.pt`` (``torch.save`` of a
tensor dict, read back with ``weights_only=True``). ``hashlab.pipeline.encode_images`` hashes
new images with the recorded backbone, so an index or service needs nothing but the directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hashlab.data.dataset import Dataset, as_multihot
from hashlab.data.splits import carve_validation
from hashlab.errors import ConfigError, InputError
from hashlab.methods.base import HashMethod, atomic_directory, check_features
from hashlab.methods.deep.config import MODES, RUNTIME_OPTIONS, DeepHashConfig
from hashlab.methods.deep.hooks import DeepHooks
from hashlab.methods.deep.network import DeepHashNetwork, HashHead
from hashlab.methods.deep.persistence import load_tensors, save_tensors
from hashlab.train import FeatureInputs, ImageInputs, InputSource, Trainer
from hashlab.train.trainer import TrainState, resolve_device

# re-exported: method files and benches import these from here
__all__ = ["MODES", "RUNTIME_OPTIONS", "DeepHashConfig", "DeepHashMethod", "DeepHashNetwork",
           "HashHead", "carve_validation"]  # fmt: skip

class DeepHashMethod(DeepHooks, HashMethod):
    """Base of the deep methods; see the module docstring."""

    Config: ClassVar[type[DeepHashConfig]] = DeepHashConfig
    #: output activation of the default head
    head_activation: ClassVar[str] = "tanh"
    #: bit = 1 where the network output exceeds this (0.5 for sigmoid outputs)
    code_threshold: ClassVar[float] = 0.0

    def __init__(self, n_bits: int = 32, seed: int = 0, **params: Any) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        known = {f.name for f in fields(self.Config)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"{self.name} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(sorted(known))}"
            )
        self.hparams = self.Config(**params)

    @classmethod
    def param_names(cls) -> list[str]:
        """``n_bits``, ``seed`` and every field of the config dataclass."""
        return ["n_bits", "seed", *(f.name for f in fields(cls.Config))]

    def get_params(self) -> dict[str, Any]:
        params = {k: v for k, v in asdict(self.hparams).items() if k not in RUNTIME_OPTIONS}
        return {"n_bits": self.n_bits, "seed": self.seed, **params}

    @property
    def input_kind(self) -> str:
        """Fine-tuning trains the backbone, so a fine-tuned model takes the images themselves."""
        return "pixels" if self.hparams.mode == "finetune" else super().input_kind

    # -- what a method declares ---------------------------------------------------------
    def build_network(self, input_dim: int) -> nn.Module:
        """The hash head on ``input_dim`` features (override for another architecture)."""
        config = self.hparams
        return HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout,
                        self.head_activation)  # fmt: skip

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define loss(outputs, labels, state)")

    # -- fit / encode -------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray | Dataset,
        y: np.ndarray | None = None,
        validation: Dataset | tuple[np.ndarray | Dataset, np.ndarray | None] | None = None,
        **supervision: Any,
    ) -> DeepHashMethod:
        """Train on a Dataset (frozen or fine-tune) or a feature matrix; return ``self``.

        ``validation``: a Dataset (or the array form ``(x_val, y_val)``) for per-epoch
        selection; without it, ``validation_fraction`` of the training items is carved out.
        ``supervision``: array-form keywords of weakly supervised methods (e.g. ``tags=``),
        handed to :meth:`training_targets`; a Dataset carries them itself.
        """
        config = self.hparams
        if isinstance(validation, Dataset):
            validation = (validation, None)
        inputs, input_dim, feature_source = self._inputs(x, for_training=True)
        labels = self.training_targets(x, y, len(inputs), **supervision)
        n_classes = as_multihot(labels).shape[1]
        if validation is not None:
            val_inputs, _, _ = self._inputs(validation[0], for_training=False)
            val_labels = self.validation_targets(validation[0], validation[1], len(val_inputs))
            n_classes = max(n_classes, as_multihot(val_labels).shape[1])
            train_inputs, train_labels = inputs, labels
        else:
            rng = np.random.default_rng(self.seed)
            train_pos, val_pos = carve_validation(labels, config.validation_fraction, rng)
            train_inputs, train_labels = self._subset(x, inputs, train_pos), labels[train_pos]
            val_inputs = self._subset(x, inputs, val_pos) if len(val_pos) else None
            val_labels = labels[val_pos]
        mean, std = self._feature_statistics(train_inputs)

        def build() -> nn.Module:
            network = self._network(input_dim)
            if mean is not None:
                network.feature_mean.copy_(torch.from_numpy(mean))
                network.feature_std.copy_(torch.from_numpy(std))
            return network

        fingerprint = {
            "method": self.name, "n_bits": self.n_bits, "seed": self.seed,
            "n_train": len(train_inputs), "input_dim": input_dim, "mode": config.mode,
        }  # fmt: skip
        trainer = Trainer(config.train_config(self.seed))
        network, result = trainer.fit(
            self,
            build,
            train_inputs,
            as_multihot(train_labels, n_classes),
            None if val_inputs is None else (val_inputs, as_multihot(val_labels, n_classes)),
            fingerprint=fingerprint,
        )
        self.network_ = network
        self.input_dim_ = int(input_dim)
        self.extra_config_ = {
            **getattr(self, "extra_config_", {}),
            **self._describe_inputs(feature_source),
            "training": {
                **result.to_json(),
                "n_train": len(train_inputs),
                "n_validation": 0 if val_inputs is None else len(val_inputs),
                "validation": "explicit split" if validation is not None
                else f"{config.validation_fraction:.0%} of the training items, per class",
                "selection": f"best validation {config.validation_metric} epoch "
                "(never the test queries)",
            },
        }  # fmt: skip
        return self

    def encode(self, x: np.ndarray | Dataset, modality: str = "image") -> np.ndarray:
        """(N, K) uint8 codes of features (frozen) or of a Dataset's images / features."""
        self._check_fitted()
        self._check_modality(modality)
        inputs, input_dim, _ = self._inputs(x, for_training=False)
        if self.hparams.mode == "frozen" and input_dim != self.input_dim_:
            raise InputError(
                f"features have {input_dim} dimensions, the model was fitted on {self.input_dim_}"
            )
        return self.binarize(self._predict(inputs))

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        tensors = {f"network.{k}": v.detach().cpu().contiguous()
                   for k, v in self.network_.state_dict().items()}  # fmt: skip
        for key, value in self.state().items():
            if key != "input_dim_":
                tensors[f"state.{key}"] = torch.as_tensor(np.asarray(value)).contiguous()
        with atomic_directory(path) as tmp:
            weights_file = save_tensors(tensors, tmp)
            config = {**self.config(), "input_dim": self.input_dim_, "weights_file": weights_file}
            (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> DeepHashMethod:
        path = Path(path)
        saved = json.loads((path / "config.json").read_text())
        model = cls(**saved["params"])
        tensors = load_tensors(path / saved["weights_file"])
        model.extra_config_ = saved.get("extra", {})
        model.input_dim_ = int(saved["input_dim"])
        # learned state first: a network's shape may depend on it (e.g. the tag vectors)
        for key, value in tensors.items():
            if key.startswith("state."):
                setattr(model, key[len("state.") :], value.numpy())
        network = model._network(model.input_dim_, pretrained=False)
        network.load_state_dict(
            {k[len("network.") :]: v for k, v in tensors.items() if k.startswith("network.")}
        )
        model.network_ = network.to(resolve_device(model.hparams.device)).eval()
        return model

    # -- internals ----------------------------------------------------------------------
    def _backbone(self) -> Any:
        from hashlab.backbones import create_backbone

        if getattr(self, "_backbone_cache", None) is None:
            pretrained = self.hparams.mode == "frozen"  # fine-tuned weights live in network_
            self._backbone_cache = create_backbone(
                self.hparams.backbone, self.hparams.backbone_weights, pretrained=pretrained
            )
        return self._backbone_cache

    def _network(self, input_dim: int, pretrained: bool = True) -> DeepHashNetwork:
        if self.hparams.mode == "finetune":
            from hashlab.backbones import create_backbone

            backbone = create_backbone(
                self.hparams.backbone, self.hparams.backbone_weights, pretrained=pretrained
            )
            return DeepHashNetwork(self.build_network(backbone.feature_dim), backbone.module,
                                   backbone.feature_dim)  # fmt: skip
        return DeepHashNetwork(self.build_network(input_dim), None, input_dim)

    def _inputs(self, x: Any, for_training: bool) -> tuple[InputSource, int, str]:
        """(input source, feature dimension, where the features come from)."""
        config = self.hparams
        if isinstance(x, Dataset):
            if config.mode == "finetune":
                backbone = self._backbone()
                source = ImageInputs(x, backbone.train_transform(), backbone.eval_transform(),
                                     config.num_workers)  # fmt: skip
                return source, backbone.feature_dim, f"{config.backbone} (fine-tuned)"
            from hashlab.backbones.features import dataset_features

            if x.features is not None:  # prepared by the pipeline (vectors or region maps)
                features = np.asarray(x.features, dtype=np.float32)
                source_text = x.info.get("feature_source", "features shipped with the data set")
            else:
                features, source_text = dataset_features(
                    x, config.backbone, config.backbone_weights, progress=config.progress,
                    feature_map=self.input_kind == "feature_maps",
                )  # fmt: skip
            features = check_features(self.input_features(features))
            return FeatureInputs(features), features.shape[1], source_text
        if config.mode == "finetune":
            raise InputError(
                "mode='finetune' trains the backbone on images: pass a hashlab Dataset with "
                "images, not a feature matrix"
            )
        features = check_features(
            self.input_features(np.asarray(x)), "training features" if for_training else "features"
        )
        source = f"a feature matrix passed to fit (taken to be {config.backbone} features)"
        return FeatureInputs(features), features.shape[1], source

    @staticmethod
    def _subset(x: Any, inputs: InputSource, positions: np.ndarray) -> InputSource:
        if isinstance(inputs, FeatureInputs):
            return FeatureInputs(inputs.features.numpy()[positions])
        return ImageInputs(x.subset(positions), inputs.train_items.transform,
                           inputs.eval_items.transform, inputs.num_workers)  # fmt: skip

    @staticmethod
    def _feature_statistics(inputs: InputSource) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not isinstance(inputs, FeatureInputs):
            return None, None
        features = inputs.features.numpy().astype(np.float64)
        # a constant feature (std 0) is left unscaled rather than divided by zero
        std = features.std(axis=0)
        return features.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(
            np.float32
        )

    def _predict(self, inputs: InputSource) -> torch.Tensor:
        device = next(self.network_.parameters()).device
        self.network_.eval()
        outputs = []
        with torch.no_grad():
            for _, batch in inputs.batches(np.arange(len(inputs)), 512, False):
                outputs.append(self.network_(batch.to(device)).float())
        return torch.cat(outputs)

    def _describe_inputs(self, feature_source: str) -> dict[str, Any]:
        config = self.hparams
        described: dict[str, Any] = {
            "backbone": config.backbone,
            "backbone_weights": config.backbone_weights,
            "mode": config.mode,
            "feature_source": feature_source,
        }
        try:
            from hashlab.backbones.cache import _SIZE_HINTS

            size = _SIZE_HINTS.get(config.backbone, 224)
        except ImportError:  # pragma: no cover - the cache module is part of hashlab
            size = 224
        described["preprocessing"] = {
            "input_size": size,
            "resize": "square, bilinear",
            "backbone_normalisation": "the backbone's own mean / std (hashlab.backbones)",
            "head_input": "standardised with training mean / std" if config.mode == "frozen"
            else "backbone output",
        }  # fmt: skip
        return described


