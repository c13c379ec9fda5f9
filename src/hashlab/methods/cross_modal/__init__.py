"""Cross-modal (image <-> text) hashing: two modalities, one Hamming space.

Importing this package registers ``lbo_cmh`` (Zhang & Zhou 2021, the large-batch /
orthogonal-regularisation method), ``dcmh`` (Jiang & Li, CVPR 2017, on features), ``seph``
(Lin et al., CVPR 2015) and ``cmfh`` (Ding et al., CVPR 2014). All follow
:class:`CrossModalMethod`: ``fit(images, texts, labels)``, ``encode(x, modality=...)``.
"""

from hashlab.methods.cross_modal.base import MODALITIES, CrossModalMethod, label_similarity
from hashlab.methods.cross_modal.cmfh import Cmfh
from hashlab.methods.cross_modal.dcmh import Dcmh
from hashlab.methods.cross_modal.lbo_cmh import LboCmh, paper_margin, scaled_learning_rate
from hashlab.methods.cross_modal.seph import Seph
from hashlab.methods.cross_modal.text import text_features_from_file, text_to_features

__all__ = [
    "MODALITIES",
    "Cmfh",
    "CrossModalMethod",
    "Dcmh",
    "LboCmh",
    "Seph",
    "label_similarity",
    "paper_margin",
    "scaled_learning_rate",
    "text_features_from_file",
    "text_to_features",
]
