"""TSN models: BN-Inception and other backbones, the segmental consensus, and ``build_tsn``.

- ``bn_inception``: the paper's backbone, matching the PyTorch ``bninception`` port layer for layer.
- ``efficientnet_lite``: Google's EfficientNet-Lite0/1/2, matching the ``efficientnet-lite-pytorch`` port.
- ``backbones``: backbones by name (``build_backbone``) and their input normalisation presets.
- ``consensus``: ``SegmentConsensus`` (avg, max, weighted, topk, attention, gru, identity).
- ``tsn``: ``build_tsn``, the folded time-distributed wrapper, partial BN, ``snippet_model``.
- ``transfer``: copying weights between models, TSN's cross-modality initialisation.
- ``pytorch_weights``: PyTorch state-dict layouts -> Keras (``tsn convert-weights``).
- ``weights``: reading checkpoints, and the cache of converted ImageNet weights (``weights: imagenet``).

Example:
    >>> from tsn_keras.models import build_tsn  # doctest: +SKIP
    >>> model = build_tsn(101, modality="flow", backbone="bn_inception", weights="bn_inception.weights.h5")  # doctest: +SKIP
"""

from tsn_keras.models.backbones import BACKBONES, build_backbone, preprocessing_preset
from tsn_keras.models.bn_inception import BNInception
from tsn_keras.models.consensus import CONSENSUS_MODES, SegmentConsensus
from tsn_keras.models.efficientnet_lite import EfficientNetLite
from tsn_keras.models.transfer import cross_modality_weights
from tsn_keras.models.tsn import (
    FoldedTimeDistributed,
    build_tsn,
    input_channels,
    set_partial_bn,
    snippet_model,
)

__all__ = [
    "BACKBONES",
    "CONSENSUS_MODES",
    "BNInception",
    "EfficientNetLite",
    "FoldedTimeDistributed",
    "SegmentConsensus",
    "build_backbone",
    "build_tsn",
    "cross_modality_weights",
    "input_channels",
    "preprocessing_preset",
    "set_partial_bn",
    "snippet_model",
]
