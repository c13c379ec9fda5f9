"""PC-AEGAN (Qiang et al., 2020, J. Taiyuan Univ. Tech. 51(4)) and PC-WGAN / HashGAN (Cao,
Lin, Long & Wang, CVPR 2018): hashing with a hash network trained on real and generated images.

Three stages (``shared/specs/pc_aegan.md``): (1) approximate hash codes H from pairwise
similarity (Eq. 6, on sampled pairs); (2) an alpha-GAN style generator G(H, noise), an image
discriminator D with a WGAN-GP critic head and a pair-similarity head, and a code
discriminator C between H and random codes Z_r (``pc_aegan_networks``, ``pc_aegan_game``);
(3) the hash network F trained by the Trainer on real and generated images with the weighted
Cauchy cross-entropy plus beta times the Cauchy quantisation (Eq. 13-16, DCH's losses in
``hashlab.losses.cauchy``). The game of Eq. 17 runs one D, C, G/H update per F batch.
``pc_wgan`` is the baseline: no code discriminator, HashGAN's cosine cross-entropy and cosine
quantisation (``hashlab.losses.cosine``).

Ablation switches: ``hash_losses`` ("cauchy" / "cosine"), ``code_discriminator`` (True /
False), ``use_generated`` (False: F sees real images only; the GAN is then not trained at all,
because F's loss would not depend on it).

Two scales, chosen by parameters:

* CPU (default): the GAN at ``image_size`` = 32 (or 64), F = a frozen EfficientNet-Lite0 fed
  images upsampled in torch to ``hash_input_size`` = 64, plus a trainable hash layer. Real
  images' backbone features are computed once and cached (``hashlab.backbones.upsampled``);
  generated images go through the same path each step.
* the paper's (GPU): ``mode="finetune", backbone="alexnet", backbone_weights=PATH,
  image_size=64, hash_input_size=224, lr=2e-4``: AlexNet fine-tuned end to end on real and
  generated images upsampled to 224 x 224.

``fit`` takes a Dataset of images or a (N, H, W, 3) uint8 array (the GAN needs pixels);
``encode`` also accepts precomputed upsampled features (frozen mode). With ``sample_dir`` set,
a grid of generated images (one row per class, the paper's Fig. 6) is written after every
epoch and the loss curves at the end. Deviations, stated: the hash layer on frozen features
learns at lr 1e-3 (the paper's 2e-4 is for fine-tuning); gamma = 20, beta = 0.1 (DCH's), eta = 1
and lambda = 10 (WGAN-GP's) because the paper prints none of them; the checkpoint is chosen by
validation mAP (the paper keeps the lowest training loss).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.backbones.upsampled import UpsampledBackbone, pixels_to_tensor, upsampled_features
from hashlab.data.dataset import Dataset
from hashlab.data.pixels import dataset_pixels
from hashlab.data.splits import carve_validation
from hashlab.losses.cauchy import cauchy_cross_entropy, cauchy_quantization
from hashlab.losses.cosine import cosine_cross_entropy, cosine_quantization
from hashlab.methods.base import check_features
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod, DeepHashNetwork
from hashlab.methods.deep.pc_aegan_game import AdversarialGame, GameSettings
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train import FeatureInputs, InputSource
from hashlab.train.figures import plot_loss_curves, save_image_grid
from hashlab.train.trainer import TrainState

__all__ = ["PCAEGAN", "PCWGAN", "PCAEGANConfig"]


@dataclass
class PCAEGANConfig(DeepHashConfig):
    epochs: int = 10  # ~700 iterations on 4,500 training images, batch 64 (paper: <= 700)
    image_size: int = 32  # the GAN's resolution (32 or 64)
    hash_input_size: int = 64  # F's input: images upsampled to this (paper: 224)
    hash_losses: str = "cauchy"  # "cauchy" (Eq. 13-16) or "cosine" (PC-WGAN's)
    code_discriminator: bool = True
    use_generated: bool = True
    generated_per_batch: int = 32  # fakes added to each F batch
    generator_hash_loss: bool = True  # G also minimises L_F of its fakes (Eq. 17)
    gamma: float = 20.0  # Cauchy scale (Eq. 1)
    quantization_weight: float = 0.1  # beta of Eq. 14
    cosine_alpha: float = 10.0  # sigmoid scale of the cosine cross-entropy
    eta: float = 1.0  # weight of the adversarial losses in Eq. 17
    gp_weight: float = 10.0  # lambda of Eq. 7 and Eq. 11
    noise_dim: int = 64
    generator_channels: int = 32
    discriminator_channels: int = 32
    code_hidden: int = 256
    gan_lr: float = 2e-4  # the paper's Adam: lr 2e-4, betas (0.9, 0.999)
    code_lr: float = 0.05
    code_pretrain_steps: int = 300  # stage 1 (Eq. 6)
    code_pairs: int = 4096
    sample_dir: str | None = None

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """For the bench harness: the hash network's lr and lambda (the gradient-penalty
        weight of Eq. 7 and 11, which the paper does not print)."""
        return {"lr": ("float", 1e-4, 1e-2, "log"), "gp_weight": ("float", 1.0, 30.0, "log")}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hash_losses not in ("cauchy", "cosine"):
            raise ValueError(f"hash_losses must be 'cauchy' or 'cosine', got {self.hash_losses!r}")
        if self.image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {self.image_size}")


class _PixelInputs(InputSource):
    """Pixels in [-1, 1] for the fine-tuned hash network (random horizontal flips to train)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.images = pixels_to_tensor(pixels)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, order: np.ndarray, batch_size: int,
                augment: bool) -> Iterator[tuple[np.ndarray, torch.Tensor]]:  # fmt: skip
        order = np.asarray(order, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = self.images[torch.from_numpy(indices)]
            if augment:
                flip = torch.rand(len(batch)) < 0.5
                batch[flip] = batch[flip].flip(-1)
            yield indices, batch


@register("pc_aegan")
class PCAEGAN(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="pixels")
    Config = PCAEGANConfig
    head_activation = "tanh"  # Sec. 2.3: tanh squashes the hash layer to (-1, 1)
    # the game's generator step backpropagates through F inside loss(): under torchrun the
    # trainer averages F's gradients by hand instead of through DDP (train/distributed.py)
    loss_runs_backward = True

    # -- data ---------------------------------------------------------------------------
    def _pixels(self, x: Any) -> np.ndarray:
        if isinstance(x, Dataset):
            return dataset_pixels(x, self.hparams.image_size)
        array = np.asarray(x)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
            raise ValueError(f"{self.name} needs images: a Dataset or a (N, H, W, 3) uint8 array, "
                             f"got {array.dtype} {array.shape}")  # fmt: skip
        if array.shape[1:3] != (self.hparams.image_size,) * 2:
            return dataset_pixels(Dataset(name="arrays", images=array), self.hparams.image_size)
        return array

    def _upsampled(self) -> UpsampledBackbone:
        if getattr(self, "_upsampled_cache", None) is None:
            module = UpsampledBackbone(self._backbone(), self.hparams.hash_input_size)
            self._upsampled_cache = module.requires_grad_(False).eval()
        return self._upsampled_cache

    def _inputs(self, x: Any, for_training: bool) -> tuple[InputSource, int, str]:
        config = self.hparams
        source = (f"{config.backbone} on {config.image_size} px images upsampled to "
                  f"{config.hash_input_size} px")  # fmt: skip
        if isinstance(x, np.ndarray) and x.ndim == 2 and not for_training:
            if config.mode == "finetune":
                raise ValueError(f"a fine-tuned {self.name} model encodes images, not features")
            return FeatureInputs(check_features(x)), x.shape[1], "precomputed features"
        pixels = self._pixels(x)
        if config.mode == "finetune":
            return _PixelInputs(pixels), self._backbone().feature_dim, f"{source} (fine-tuned)"
        key = x.name if isinstance(x, Dataset) else "arrays"
        features = upsampled_features(pixels, self._upsampled().to(self._device()), config.backbone,
                                      key, progress=config.progress)  # fmt: skip
        return FeatureInputs(features), features.shape[1], f"{source} (frozen)"

    def _device(self) -> torch.device:
        from hashlab.train.trainer import resolve_device

        return resolve_device(self.hparams.device)

    def _network(self, input_dim: int, pretrained: bool = True) -> DeepHashNetwork:
        if self.hparams.mode == "finetune":
            from hashlab.backbones import create_backbone

            backbone = create_backbone(self.hparams.backbone, self.hparams.backbone_weights,
                                       pretrained=pretrained)  # fmt: skip
            module = UpsampledBackbone(backbone, self.hparams.hash_input_size)
            return DeepHashNetwork(self.build_network(backbone.feature_dim), module,
                                   backbone.feature_dim)  # fmt: skip
        return super()._network(input_dim, pretrained)

    # -- fit / encode -------------------------------------------------------------------
    def fit(self, x: Any, y: np.ndarray | None = None,
            validation: tuple[Any, np.ndarray | None] | None = None) -> PCAEGAN:  # fmt: skip
        """Train on images (Dataset or uint8 array); validation is carved as in other methods."""
        pixels = self._pixels(x)
        labels = self._check_labels(y if y is not None else getattr(x, "labels", None), len(pixels))
        if validation is None:
            rng = np.random.default_rng(self.seed)
            train, held = carve_validation(labels, self.hparams.validation_fraction, rng)
            validation = (pixels[held], labels[held]) if len(held) else None
            pixels, labels = pixels[train], labels[train]
        self._train_pixels = pixels_to_tensor(pixels)
        self._game: AdversarialGame | None = None
        super().fit(pixels, labels, validation=validation)
        self.extra_config_["adversarial"] = getattr(self, "_adversarial_record", {})
        return self

    # -- the hash network's loss (Eq. 14) ---------------------------------------------------
    def hash_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L_F = L_Fc + beta L_Fq over all pairs of the batch (Eq. 14-16, or the cosine pair)."""
        config = self.hparams
        s = self.similarity(labels, labels)
        if config.hash_losses == "cauchy":
            return (cauchy_cross_entropy(outputs, outputs, s, config.gamma)  # Eq. 15, Eq. 4
                    + config.quantization_weight * cauchy_quantization(outputs, config.gamma))
        return (cosine_cross_entropy(outputs, outputs, s, config.cosine_alpha)
                + config.quantization_weight * cosine_quantization(outputs))  # fmt: skip

    def _hash_outputs(self, network: nn.Module, images: torch.Tensor, grad: bool) -> torch.Tensor:
        """F(images); ``grad=False`` keeps the frozen backbone out of the autograd graph."""
        if self.hparams.mode == "finetune":
            return network(images).float()
        with torch.set_grad_enabled(grad):
            features = self._upsampled()(images)
        return network(features).float()

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        if not config.use_generated:
            return self.hash_loss(outputs, labels)
        indices = torch.from_numpy(state.batch_indices).to(state.device)
        real = self._train_pixels[indices.cpu()].to(state.device)
        k = config.generated_per_batch

        def hash_loss_of_fakes(fakes: torch.Tensor, fake_labels: torch.Tensor) -> torch.Tensor:
            # the fakes against the batch's real codes, so G is pulled towards its class's codes
            fake_outputs = self._hash_outputs(state.network, fakes[:k], grad=True)
            return self.hash_loss(torch.cat([outputs.detach(), fake_outputs]),
                                  torch.cat([labels, fake_labels[:k]]))  # fmt: skip

        fakes, fake_labels = self._game.step(
            real, indices, hash_loss_of_fakes if config.generator_hash_loss else None
        )
        fake_outputs = self._hash_outputs(state.network, fakes[:k], grad=False)
        return self.hash_loss(torch.cat([outputs, fake_outputs]),  # F on real and generated
                              torch.cat([labels, fake_labels[:k]]))  # fmt: skip

    # -- trainer hooks ----------------------------------------------------------------------
    def _new_game(self, state: TrainState) -> AdversarialGame:
        config = self.hparams
        settings = GameSettings(
            n_bits=self.n_bits, image_size=config.image_size,
            code_discriminator=config.code_discriminator, noise_dim=config.noise_dim,
            generator_channels=config.generator_channels,
            discriminator_channels=config.discriminator_channels, code_hidden=config.code_hidden,
            lr=config.gan_lr, eta=config.eta, gp_weight=config.gp_weight, code_lr=config.code_lr,
            code_pretrain_steps=config.code_pretrain_steps, code_pairs=config.code_pairs,
        )  # fmt: skip
        self._upsampled().to(state.device)
        return AdversarialGame(settings, state.train_labels, state.device)

    def on_train_start(self, state: TrainState) -> None:
        if not self.hparams.use_generated:
            return
        self._game = self._new_game(state)
        stage1 = self._game.pretrain_codes()  # stage 1: Eq. 6
        codes = self._game.binary_codes().float()
        self._adversarial_record = {"stage1_code_loss": [stage1[0], stage1[-1]],
                                    "stage1_bit_mean": float(codes.mean())}  # fmt: skip

    def on_epoch_start(self, state: TrainState) -> None:
        if self.hparams.use_generated and getattr(self, "_game", None) is None:  # resumed run
            self._game = self._new_game(state)
            self._game.load_state_dict(state.extras["game"])

    def on_epoch_end(self, state: TrainState) -> None:
        if not self.hparams.use_generated:
            return
        state.extras["game"] = self._game.state_dict()  # what a resumed run restarts from
        if self.hparams.sample_dir:
            name = f"samples_epoch{state.epoch + 1:03d}.png"
            self.write_samples(Path(self.hparams.sample_dir) / name, state.train_labels)

    def on_train_end(self, state: TrainState) -> None:
        if not self.hparams.use_generated or self._game is None:
            return
        history = self._game.history
        curves = {name: [row[name] for row in history if name in row]
                  for name in history[0]} if history else {}  # fmt: skip
        record = getattr(self, "_adversarial_record", {})
        record["steps"] = len(history)
        record["last_100_steps_mean"] = {k: float(np.mean(v[-100:])) for k, v in curves.items()}
        self._adversarial_record = record
        self.loss_curves_ = curves
        if self.hparams.sample_dir and curves:
            folder = Path(self.hparams.sample_dir)
            self.write_samples(folder / "samples.png", state.train_labels)
            plot_loss_curves(curves, folder / "loss_curves.png", smooth=20,
                             title=f"{self.name} {self.n_bits} bits: adversarial game per step")

    def write_samples(self, path: Path, train_labels: torch.Tensor, per_class: int = 8) -> Path:
        """One row of generated images per class (up to 10), each from a training item's H."""
        classes = train_labels.argmax(1).cpu()
        rows = [torch.nonzero(classes == c).flatten()[:per_class]
                for c in range(min(int(train_labels.shape[1]), 10))]  # fmt: skip
        chosen = torch.cat([r for r in rows if len(r) == per_class])
        return save_image_grid(self._game.render(chosen.to(self._game.device)), path, per_class)


@dataclass
class PCWGANConfig(PCAEGANConfig):
    hash_losses: str = "cosine"
    code_discriminator: bool = False


@register("pc_wgan")
class PCWGAN(PCAEGAN):
    """HashGAN's PC-WGAN: the same pipeline, no code discriminator, cosine losses."""

    Config = PCWGANConfig
