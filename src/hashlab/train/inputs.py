"""What the trainer feeds a network: cached feature rows or images (with augmentation).

An input source answers ``len(source)`` and ``batches(order, batch_size, augment)``, which
yields ``(indices, inputs)`` with ``indices`` the positions (into the source) of the batch's
items, in ``order``'s order. Two sources:

* :class:`FeatureInputs`: a (N, D) float matrix (frozen mode: backbone features computed
  once, ``hashlab.backbones.extract_features``). Batches are row slices; no augmentation.
* :class:`ImageInputs`: a ``hashlab.data.Dataset`` of image paths or pixel arrays (fine-tune
  mode). Images are decoded on the fly (optionally in ``num_workers`` worker processes) and
  transformed by the backbone's training transform (random crop + horizontal flip, as in
  DCH / HashNet) or its evaluation transform (a plain resize, identical to the one used to
  cache frozen features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = ["FeatureInputs", "ImageInputs", "InputSource"]


class InputSource:
    """Base of the trainer's inputs."""

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} must define __len__")

    def batches(
        self, order: np.ndarray, batch_size: int, augment: bool
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        raise TypeError(f"{type(self).__name__} must define batches()")


class FeatureInputs(InputSource):
    """Rows of a feature matrix, kept as one float32 tensor."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.features)

    def batches(
        self, order: np.ndarray, batch_size: int, augment: bool
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        order = np.asarray(order, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            yield indices, self.features[torch.from_numpy(indices)]


class _TransformedImages(torch.utils.data.Dataset):
    def __init__(self, dataset: object, transform: Callable) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        from hashlab.data.images import dataset_images

        (image,) = dataset_images(self.dataset, [index])
        return self.transform(image)


class ImageInputs(InputSource):
    """Images of a Dataset through a backbone's train / eval transforms."""

    def __init__(
        self,
        dataset: object,
        train_transform: Callable,
        eval_transform: Callable,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.train_items = _TransformedImages(dataset, train_transform)
        self.eval_items = _TransformedImages(dataset, eval_transform)
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(
        self, order: np.ndarray, batch_size: int, augment: bool
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        order = np.asarray(order, dtype=np.int64)
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(
            self.train_items if augment else self.eval_items,
            batch_sampler=[chunk.tolist() for chunk in chunks],
            num_workers=self.num_workers,
        )
        yield from zip(chunks, loader, strict=True)
