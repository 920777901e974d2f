"""BN-Inception (Ioffe & Szegedy, 2015) in the layout TSN used, as a Keras functional model.

The network matches the widely used PyTorch port (``bninception`` of the ``pretrainedmodels``
package, itself converted from TSN's Caffe model) layer for layer, so that its ImageNet
checkpoint converts exactly (``tsn convert-weights``):

- layer names are that port's state-dict keys (``conv1_7x7_s2``, ``conv1_7x7_s2_bn``, ...,
  ``inception_5b_pool_proj_bn``, ``last_linear``);
- every convolution is followed by BatchNorm (eps 1e-5, momentum 0.9: PyTorch's) and ReLU;
- max pools use Caffe's/PyTorch's ``ceil_mode``: Keras has none, so the bottom/right edge is
  zero-padded until the last window fits (exact here because every max pool reads a ReLU
  output, which is >= 0);
- the inception average pools count the padding (``count_include_pad=True``): Keras' "same"
  average pooling excludes it, so they zero-pad by 1 and pool "valid";
- stride-2 convolutions pad symmetrically like PyTorch (Keras "same" would pad 2/3, not 3/3);
- the pool branch of 5b is a max pool (5a and earlier use average pools);
- global average pooling ends the network (the port's 7x7 average pool at 224 px).

Input: BGR, 0..255, minus the means (104, 117, 128) — the ``caffe_bgr`` preset of the pipeline.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras

from tsn_keras.errors import ConfigError
from tsn_keras.models.weights import load_backbone_weights

# PyTorch's BatchNorm2d default; Keras' default (1e-3) would change every activation.
BN_EPSILON = 1e-5
# Moving averages keep 0.9 of the old value per step, as Caffe's BN layer and PyTorch's
# (momentum 0.1) did when TSN was trained. Under partial BN only the first layer updates them,
# re-estimating flow's or RGB difference's statistics; Keras' default 0.99 would still hold
# mostly ImageNet's after a few hundred of the 3,500-18,000 iterations.
BN_MOMENTUM = 0.9

# Inception modules with four branches (1x1; 3x3; double 3x3; pool + 1x1 projection):
# name -> (1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool projection, pool kind).
INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, int, str]] = {
    "3a": (64, 64, 64, 64, 96, 32, "avg"),
    "3b": (64, 64, 96, 64, 96, 64, "avg"),
    "4a": (224, 64, 96, 96, 128, 128, "avg"),
    "4b": (192, 96, 128, 96, 128, 128, "avg"),
    "4c": (160, 128, 160, 128, 160, 128, "avg"),
    "4d": (96, 128, 192, 160, 192, 128, "avg"),
    "5a": (352, 192, 320, 160, 224, 128, "avg"),
    "5b": (352, 192, 320, 192, 224, 128, "max"),
}
# Grid-reduction modules (stride-2 3x3; stride-2 double 3x3; stride-2 max pool):
# name -> (3x3 reduce, 3x3, double reduce, double 3x3).
REDUCTION_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "3c": (128, 160, 64, 96),
    "4e": (128, 192, 192, 256),
}
BLOCK_ORDER = ("3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
FEATURE_DIM = 1024


def _conv_bn_relu(x, filters: int, kernel: int, name: str, relu_name: str, strides: int = 1):
    if strides > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"  # odd kernel, stride 1: symmetric, as PyTorch's padding=k//2
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=relu_name)(x)


def _ceil_mode_padding(size: int, pool: int, stride: int) -> int:
    """Extra bottom/right padding that makes a "valid" pool produce PyTorch's ceil_mode size."""
    out = math.ceil((size - pool) / stride) + 1
    if (out - 1) * stride >= size:  # PyTorch drops a last window that would start in the padding
        out -= 1
    return max((out - 1) * stride + pool - size, 0)


def _size_fits(size: int) -> bool:
    """Whether the two grid reductions see even sizes, so their conv and pool branches agree."""
    size = (size + 2 * 3 - 7) // 2 + 1  # conv1, stride 2
    size = _ceil_mode_output(size)  # pool1
    size = _ceil_mode_output(size)  # pool2
    for _ in REDUCTION_BLOCKS:
        conv = (size + 2 - 3) // 2 + 1
        if conv != _ceil_mode_output(size):
            return False
        size = conv
    return True


def _ceil_mode_output(size: int, pool: int = 3, stride: int = 2) -> int:
    return (size + _ceil_mode_padding(size, pool, stride) - pool) // stride + 1


def _max_pool_ceil(x, name: str, pool: int = 3, stride: int = 2):
    height, width = x.shape[1], x.shape[2]
    pad_h, pad_w = _ceil_mode_padding(height, pool, stride), _ceil_mode_padding(width, pool, stride)
    if pad_h or pad_w:
        x = keras.layers.ZeroPadding2D(((0, pad_h), (0, pad_w)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(pool, strides=stride, padding="valid", name=name)(x)


def _inception(x, block: str):
    n1x1, n3r, n3, nd_r, nd, n_proj, pool_kind = INCEPTION_BLOCKS[block]
    p = f"inception_{block}"
    b1 = _conv_bn_relu(x, n1x1, 1, f"{p}_1x1", f"{p}_relu_1x1")
    b2 = _conv_bn_relu(x, n3r, 1, f"{p}_3x3_reduce", f"{p}_relu_3x3_reduce")
    b2 = _conv_bn_relu(b2, n3, 3, f"{p}_3x3", f"{p}_relu_3x3")
    b3 = _conv_bn_relu(x, nd_r, 1, f"{p}_double_3x3_reduce", f"{p}_relu_double_3x3_reduce")
    b3 = _conv_bn_relu(b3, nd, 3, f"{p}_double_3x3_1", f"{p}_relu_double_3x3_1")
    b3 = _conv_bn_relu(b3, nd, 3, f"{p}_double_3x3_2", f"{p}_relu_double_3x3_2")
    if pool_kind == "avg":
        b4 = keras.layers.ZeroPadding2D(1, name=f"{p}_pool_pad")(x)
        b4 = keras.layers.AveragePooling2D(3, strides=1, padding="valid", name=f"{p}_pool")(b4)
    else:  # max pool, stride 1, padding 1: the padding never wins, as with Keras "same"
        b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{p}_pool")(x)
    b4 = _conv_bn_relu(b4, n_proj, 1, f"{p}_pool_proj", f"{p}_relu_pool_proj")
    return keras.layers.Concatenate(name=f"{p}_output")([b1, b2, b3, b4])


def _reduction(x, block: str):
    n3r, n3, nd_r, nd = REDUCTION_BLOCKS[block]
    p = f"inception_{block}"
    b1 = _conv_bn_relu(x, n3r, 1, f"{p}_3x3_reduce", f"{p}_relu_3x3_reduce")
    b1 = _conv_bn_relu(b1, n3, 3, f"{p}_3x3", f"{p}_relu_3x3", strides=2)
    b2 = _conv_bn_relu(x, nd_r, 1, f"{p}_double_3x3_reduce", f"{p}_relu_double_3x3_reduce")
    b2 = _conv_bn_relu(b2, nd, 3, f"{p}_double_3x3_1", f"{p}_relu_double_3x3_1")
    b2 = _conv_bn_relu(b2, nd, 3, f"{p}_double_3x3_2", f"{p}_relu_double_3x3_2", strides=2)
    b3 = _max_pool_ceil(x, f"{p}_pool")
    return keras.layers.Concatenate(name=f"{p}_output")([b1, b2, b3])


def BNInception(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights: str | Path | None = None,
    include_top: bool = False,
    classes: int = 1000,
    pooling: str | None = "avg",
    name: str = "bn_inception",
) -> keras.Model:
    """BN-Inception, TSN's backbone, with the layer names of the PyTorch ``bninception`` port.

    Args:
        input_shape: ``(height, width, channels)``; height and width must be known (the
            ceil-mode pooling pads depend on them). Channels other than 3 are for flow and
            RGB difference.
        weights: ``None`` (random initialisation) or a path: a file written by
            ``tsn convert-weights``, or a ``.keras`` / ``.weights.h5`` of this backbone. Weights
            of a 3-channel model load into any number of channels with TSN's cross-modality
            initialisation.
        include_top: add the 1000-way ImageNet classifier ``last_linear`` after pooling.
        classes: size of ``last_linear`` (with ``include_top``).
        pooling: ``"avg"``: global average pooling, output ``(1024,)``; ``None``: the 5b feature
            map. Ignored with ``include_top`` (which always pools).
        name: the model's name.

    Returns:
        A ``keras.Model`` from ``(H, W, C)`` images (BGR, 0..255 minus 104/117/128) to
        pooled features, the feature map, or ImageNet logits.

    Example:
        >>> net = BNInception((224, 224, 3))  # doctest: +SKIP
        >>> net.output_shape  # doctest: +SKIP
        (None, 1024)

    Reference:
        Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
        Internal Covariate Shift", ICML 2015; Wang et al., "Temporal Segment Networks", ECCV 2016.
    """
    height, width, channels = input_shape
    if height is None or width is None:
        raise ConfigError(f"BNInception needs a known input height and width, got input_shape={input_shape}")
    for size in (height, width):
        if size < 32 or not _size_fits(size):
            # As in the PyTorch and Caffe originals: 3c and 4e concatenate a stride-2 conv with
            # a ceil-mode pool, whose sizes agree only for these inputs.
            raise ConfigError(
                f"BNInception needs a height and width from 32n-1 to 32n+6 (e.g. 160, 192, 224), got {height}x{width}"
            )
    if pooling not in ("avg", None):
        raise ConfigError(f"BNInception pooling must be 'avg' or None, got {pooling!r}")

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = _conv_bn_relu(inputs, 64, 7, "conv1_7x7_s2", "conv1_relu_7x7", strides=2)
    x = _max_pool_ceil(x, "pool1_3x3_s2")
    x = _conv_bn_relu(x, 64, 1, "conv2_3x3_reduce", "conv2_relu_3x3_reduce")
    x = _conv_bn_relu(x, 192, 3, "conv2_3x3", "conv2_relu_3x3")
    x = _max_pool_ceil(x, "pool2_3x3_s2")
    for block in BLOCK_ORDER:
        x = _reduction(x, block) if block in REDUCTION_BLOCKS else _inception(x, block)
    if include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if include_top:
        x = keras.layers.Dense(classes, name="last_linear")(x)
    model = keras.Model(inputs, x, name=name)

    if weights is not None:
        load_backbone_weights(
            model,
            weights,
            lambda c: BNInception((height, width, c), None, include_top, classes, pooling, name),
        )
    return model
