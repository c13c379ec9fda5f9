"""The one training loop (``Trainer``) and what it feeds networks (``FeatureInputs``,
``ImageInputs``). See ``hashlab.train.trainer`` for the method hooks it calls."""

from hashlab.train.inputs import FeatureInputs, ImageInputs, InputSource
from hashlab.train.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    TrainState,
    deterministic_cpu,
    resolve_device,
    seed_everything,
)

__all__ = [
    "FeatureInputs",
    "ImageInputs",
    "InputSource",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "deterministic_cpu",
    "resolve_device",
    "seed_everything",
]
