"""TSN models: BN-Inception and other backbones, the segmental consensus, and ``TSN`` / ``build_tsn``.

Modules, lowest first (each imports only those above it in this list):

- ``transfer``: copying weights between models, TSN's cross-modality initialisation.
- ``weights``: weight files into a backbone, 3-channel weights adapted to any channel count.
- ``bn_inception``: the paper's backbone, matching the PyTorch ``bninception`` port layer for layer.
- ``efficientnet_lite``: Google's EfficientNet-Lite0/1/2, matching the ``efficientnet-lite-pytorch`` port.
- ``pytorch_weights``: PyTorch state-dict layouts -> Keras.
- ``imagenet``: reading checkpoints, the cache of converted ImageNet weights (``weights: imagenet``),
  ``tsn convert-weights``.
- ``backbones``: backbones by name (``build_backbone``).
- ``layers``: ``FoldedTimeDistributed``; ``consensus``: ``SegmentConsensus``.
- ``tsn``: ``TSN`` (a model that carries its protocol), ``build_tsn``, partial BN, ``snippet_model``.

Importing this package registers the library's Keras classes, so ``keras.saving.load_model``
reads every ``.keras`` file the library writes; ``import tsn_keras`` arranges that without
importing Keras itself (see ``tsn_keras/__init__.py``).

Example:
    >>> from tsn_keras.models import build_tsn  # doctest: +SKIP
    >>> model = build_tsn(101, modality="flow", backbone="bn_inception", weights="bn_inception.weights.h5")  # doctest: +SKIP
"""

from tsn_keras.models.backbones import build_backbone
from tsn_keras.models.bn_inception import BNInception
from tsn_keras.models.consensus import SegmentConsensus
from tsn_keras.models.efficientnet_lite import EfficientNetLite
from tsn_keras.models.layers import FoldedTimeDistributed
from tsn_keras.models.transfer import cross_modality_weights
from tsn_keras.models.tsn import TSN, build_tsn, load_tsn, set_partial_bn, snippet_model

__all__ = [
    "TSN",
    "BNInception",
    "EfficientNetLite",
    "FoldedTimeDistributed",
    "SegmentConsensus",
    "build_backbone",
    "build_tsn",
    "cross_modality_weights",
    "load_tsn",
    "set_partial_bn",
    "snippet_model",
]
