"""Model weights on disk: ``weights.safetensors`` when the ``safetensors`` package is installed,
else ``weights.pt`` (``torch.save`` of a tensor dict, read back with ``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hashlab.errors import HashlabFileNotFoundError, HashlabValueError

__all__ = ["load_tensors", "save_tensors"]


def save_tensors(tensors: dict[str, torch.Tensor], folder: Path) -> str:
    try:
        from safetensors.torch import save_file
    except ModuleNotFoundError:
        torch.save(tensors, folder / "weights.pt")
        return "weights.pt"
    save_file({k: v.clone() for k, v in tensors.items()}, str(folder / "weights.safetensors"))
    return "weights.safetensors"


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise HashlabFileNotFoundError(f"model weights {path} are missing")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ModuleNotFoundError:
            raise HashlabValueError(
                f"{path} needs the safetensors package to be read: pip install safetensors"
            ) from None
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
