"""``CentreHooks``: the set-up shared by the methods that train against fixed class codewords
(CSQ, OrthoHash, DPN).

At the start of a fresh run the centres are drawn once for the training labels' C classes and
the code length (``hashlab.losses.centres``, seeded by the model's seed), together with the
tie-breaking bits of multi-label centres; both live in ``state.extras`` (so a resumed run
keeps them) and end as the learned array ``centres_`` (saved with the weights). The centre
report (kind, minimum / mean pairwise Hamming distance, any fallback) goes to
``config.json`` under ``extra.centres``.
"""

from __future__ import annotations

import numpy as np
import torch

from hashlab.losses.centres import make_centres
from hashlab.train.trainer import TrainState

__all__ = ["CentreHooks"]


class CentreHooks:
    """Mixin for a :class:`DeepHashMethod` whose config has a ``centres`` field."""

    def on_train_start(self, state: TrainState) -> None:
        n_classes = int(state.train_labels.shape[1])
        # a generator of its own: the centres depend on the seed, not on the trainer's draws
        rng = np.random.default_rng([self.seed, 0xC5])
        centres, report = make_centres(self.hparams.centres, n_classes, self.n_bits, rng)
        tie_bits = np.where(rng.random(self.n_bits) < 0.5, -1.0, 1.0).astype(np.float32)
        state.extras["centres"] = torch.from_numpy(centres).to(state.device)
        state.extras["tie_bits"] = torch.from_numpy(tie_bits).to(state.device)
        self.extra_config_ = {**getattr(self, "extra_config_", {}), "centres": report}

    def on_train_end(self, state: TrainState) -> None:
        self.centres_ = state.extras["centres"].cpu().numpy()

    @staticmethod
    def centres(state: TrainState) -> torch.Tensor:
        return state.extras["centres"]
