"""Cross-modal (image <-> text) hashing: two modalities, one Hamming space.

Importing this package registers ``lbo_cmh`` (:class:`LBOCMH`, Zhang & Zhou 2021, the
large-batch / orthogonal-regularisation method), ``dcmh`` (:class:`DCMH`, Jiang & Li, CVPR
2017, on features), ``seph`` (:class:`SePH`, Lin et al., CVPR 2015) and ``cmfh``
(:class:`CMFH`, Ding et al., CVPR 2014). All follow :class:`CrossModalMethod`:
``fit(dataset, validation=None)`` on paired items (``features`` = image side, ``text``,
``labels``), ``encode(x, modality=...)``. DCMH and LBOCMH train on the one Trainer.
"""

from hashlab.methods.cross_modal.base import (
    MODALITIES,
    CrossModalMethod,
    TrainedCrossModalMethod,
    label_similarity,
)
from hashlab.methods.cross_modal.cmfh import CMFH
from hashlab.methods.cross_modal.dcmh import DCMH
from hashlab.methods.cross_modal.lbo_cmh import LBOCMH, paper_margin, scaled_learning_rate
from hashlab.methods.cross_modal.seph import SePH
from hashlab.methods.cross_modal.text import text_features_from_file, text_to_features

__all__ = [
    "CMFH",
    "DCMH",
    "LBOCMH",
    "MODALITIES",
    "CrossModalMethod",
    "SePH",
    "TrainedCrossModalMethod",
    "label_similarity",
    "paper_margin",
    "scaled_learning_rate",
    "text_features_from_file",
    "text_to_features",
]
