"""Losses of deep hashing as pure functions: (relaxed codes, similarity, weights) -> scalar.

One family per file; methods in ``hashlab.methods.deep`` compose them:

| file | functions | used by |
|---|---|---|
| ``pairwise.py`` | label_similarity, class_balance_weights, pairwise_likelihood_loss, |
|  | weighted_pairwise_cross_entropy | DPSH, DHN, HashNet |
| ``cauchy.py`` | cauchy_distance, cauchy_cross_entropy, cauchy_quantization | DCH, PC-AEGAN |
| ``contrastive.py`` | contrastive_hashing_loss, plus_minus_one_regularizer | DSH |
| ``triplet.py`` | triplet_ranking_loss, batch_triplet_ranking_loss | DNNH |
| ``asymmetric.py`` | asymmetric_inner_product_loss | ADSH |
| ``quantization.py`` | sign_quantization_loss, log_cosh_quantization_loss | DPSH, DHN |

``eddh.py`` and ``cross_modal.py`` (EDDH, cross-modal methods) live here too and are imported
from their modules directly, as are ``discrete.py`` (DSDH, CNNH, DDSH), ``triplet_likelihood.py``
(DTSH), ``fisher.py`` (DFH), ``soft_similarity.py`` (IDHN) and ``priority.py`` (DPH), and
``centres.py`` (hash centres), ``hash_centre.py`` (CSQ, OrthoHash, DPN) and ``greedy.py``
(GreedyHash). Importing this package imports torch.
"""

from hashlab.losses.asymmetric import asymmetric_inner_product_loss
from hashlab.losses.cauchy import cauchy_cross_entropy, cauchy_distance, cauchy_quantization
from hashlab.losses.contrastive import (
    contrastive_hashing_loss,
    plus_minus_one_regularizer,
    squared_distances,
)
from hashlab.losses.pairwise import (
    class_balance_weights,
    label_similarity,
    pairwise_likelihood_loss,
    weighted_pairwise_cross_entropy,
)
from hashlab.losses.quantization import log_cosh_quantization_loss, sign_quantization_loss
from hashlab.losses.triplet import batch_triplet_ranking_loss, triplet_ranking_loss

__all__ = [
    "asymmetric_inner_product_loss",
    "batch_triplet_ranking_loss",
    "cauchy_cross_entropy",
    "cauchy_distance",
    "cauchy_quantization",
    "class_balance_weights",
    "contrastive_hashing_loss",
    "label_similarity",
    "log_cosh_quantization_loss",
    "pairwise_likelihood_loss",
    "plus_minus_one_regularizer",
    "sign_quantization_loss",
    "squared_distances",
    "triplet_ranking_loss",
    "weighted_pairwise_cross_entropy",
]
