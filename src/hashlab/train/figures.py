"""Figures written during training: a grid of generated images and loss curves.

Generative methods (PC-AEGAN, PC-WGAN) write the grid after every epoch (the paper's Fig. 6)
and the curves at the end, so a run can be judged while it goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_image_grid", "plot_loss_curves"]


def save_image_grid(images: torch.Tensor, path: str | Path, columns: int) -> Path:
    """Save (N, 3, S, S) images in [-1, 1] as one PNG, ``columns`` images per row."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu().float().add(1.0).div(2.0).clamp(0.0, 1.0), path,
               nrow=columns, padding=1)  # fmt: skip
    return path


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, title: str = "", smooth: int = 1
) -> Path:
    """One panel per curve (their scales differ by orders of magnitude), x = update step.

    ``smooth`` > 1 draws a running mean over that many steps beside the raw values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, values in curves.items() if len(values)]
    if not names:
        raise ValueError("no loss values to plot")
    columns = min(3, len(names))
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    try:
        for axis, name in zip(axes.flat, names, strict=False):
            values = np.asarray(curves[name], dtype=float)
            steps = np.arange(1, len(values) + 1)
            axis.plot(steps, values, alpha=0.35 if smooth > 1 else 1.0, lw=0.8)
            if smooth > 1 and len(values) >= smooth:
                mean = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
                axis.plot(steps[smooth - 1 :], mean, lw=1.5)
            axis.set_title(name, fontsize="small")
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(names) :]:
            axis.set_visible(False)
        if title:
            figure.suptitle(title, fontsize="medium")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        return path
    finally:
        plt.close(figure)
