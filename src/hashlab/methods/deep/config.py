"""``DeepHashConfig``: the options every deep method shares (each method's ``Config`` extends it
with the paper's own); every field is a constructor keyword, and the values in use are
``model.hparams``. Runtime options (``RUNTIME_OPTIONS``) say how to run, not what to learn,
and are not saved with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from hashlab.backbones.registry import DEFAULT_BACKBONE
from hashlab.errors import ConfigError
from hashlab.train import TrainConfig

__all__ = ["MODES", "RUNTIME_OPTIONS", "DeepHashConfig"]

MODES = ("frozen", "finetune")
# options that say how to run, not what to learn: accepted by __init__, not saved as params
RUNTIME_OPTIONS = ("device", "amp", "progress", "checkpoint_dir", "resume", "num_workers")


@dataclass
class DeepHashConfig:
    """Options shared by every deep method; subclasses add the paper's own."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    patience: int | None = 10
    validation_metric: str = "map@all"  # checkpoint selection: the table's headline metric
    validation_fraction: float = 0.1
    # the default CPU protocol (issue 14): a small MLP head (features -> 1024 -> K, ReLU,
    # dropout) on frozen backbone features, the analogue of the papers' fine-tuned fc6-fc8;
    # head_hidden=0 is one linear hash layer (the papers' fc8 alone), kept as an ablation
    head_hidden: int = 1024
    dropout: float = 0.5
    mode: str = "frozen"
    backbone: str = DEFAULT_BACKBONE
    backbone_weights: str | None = None
    backbone_lr_scale: float = 0.1
    # runtime options (RUNTIME_OPTIONS)
    device: str | None = None
    amp: bool = True
    progress: bool = False
    checkpoint_dir: str | None = None
    resume: bool = False
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'frozen' or 'finetune', got {self.mode!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """What the bench harness tunes on validation (``hashlab.bench.tuning`` format)."""
        return {"lr": ("float", 1e-4, 1e-2, "log"), "weight_decay": ("float", 1e-6, 1e-3, "log")}

    def train_config(self, seed: int) -> TrainConfig:
        shared = {f.name for f in fields(TrainConfig)}
        return TrainConfig(seed=seed, **{k: v for k, v in asdict(self).items() if k in shared})
