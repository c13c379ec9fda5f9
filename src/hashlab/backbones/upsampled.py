"""A backbone fed small images upsampled in torch: PC-AEGAN's hash network input.

PC-AEGAN trains its hash network on real and generated images, so both must take the same
path into the backbone: pixels in [-1, 1] (the generator's Tanh range), converted to the
backbone's normalisation and upsampled bilinearly to ``input_size`` inside torch (the paper
upsamples its 64 x 64 generated images to AlexNet's 224 x 224; the CPU configuration runs
EfficientNet-Lite0 at 64 x 64, about 12x cheaper than 224). :class:`UpsampledBackbone` is that
path as a module (trainable or frozen); :func:`upsampled_features` computes it once for a
uint8 image array and caches the result on disk, keyed by the array's bytes, the backbone and
the input size (``<key>-<backbone>-upsampled-<size>px-arr<digest>``), so it can never be
confused with the PIL-resized 224 px features of ``hashlab.backbones.cache``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn
from tqdm.auto import tqdm

from hashlab.backbones.cache import array_feature_cache_path
from hashlab.backbones.registry import Backbone

__all__ = ["UpsampledBackbone", "pixels_to_tensor", "upsampled_features"]


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [-1, 1]."""
    array = torch.from_numpy(np.ascontiguousarray(pixels))
    return array.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class UpsampledBackbone(nn.Module):
    """Images in [-1, 1] -> backbone normalisation -> bilinear resize -> backbone features."""

    def __init__(self, backbone: Backbone, input_size: int) -> None:
        super().__init__()
        self.net = backbone.module
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images + 1.0) * 127.5 - self.mean) / self.std
        if x.shape[-1] != self.input_size:
            x = functional.interpolate(x, size=self.input_size, mode="bilinear",
                                       align_corners=False)  # fmt: skip
        return self.net(x)


def upsampled_features(
    pixels: np.ndarray,
    module: UpsampledBackbone,
    backbone_name: str,
    dataset_key: str = "arrays",
    batch_size: int = 250,
    progress: bool = False,
) -> np.ndarray:
    """(N, D) float32 features of (N, S, S, 3) uint8 pixels through ``module``, cached."""
    folder = array_feature_cache_path(
        dataset_key, f"{backbone_name}-upsampled", module.input_size, pixels
    )
    target = folder / "features.npy"
    if target.is_file():
        return np.load(target)
    device = next(module.buffers()).device
    module.eval()
    chunks = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(pixels), batch_size), disable=not progress,
                          desc=f"features {backbone_name} {module.input_size}px"):  # fmt: skip
            batch = pixels_to_tensor(pixels[start : start + batch_size]).to(device)
            chunks.append(module(batch).float().cpu().numpy())
    features = np.concatenate(chunks).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "features.tmp.npy"
    np.save(tmp, features)
    os.replace(tmp, target)  # whole or absent: never a half-written cache
    return features
