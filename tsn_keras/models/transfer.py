"""Copying weights between models of the same architecture, with TSN's cross-modality rule.

TSN initialises a flow or RGB-difference network from an RGB one (Wang et al., ECCV 2016,
Sec. 3.2; ``TSN_SEMANTICS.md``, "Cross-modality initialisation"): the first convolution's
kernel is averaged over its RGB input channels and replicated to the new number of channels,
without rescaling; the bias and every other layer are copied unchanged.

Layers are paired by position, not by name: Keras numbers automatically named layers per
session (``conv2d_94`` in a second InceptionV3), and Keras' own ``.weights.h5`` files are keyed
by position too. Every pair must have the same layer class and weight shapes, so a mismatch is
an error, never a silent partial copy.
"""

from __future__ import annotations

import keras
import numpy as np

from tsn_keras.errors import ConfigError


def cross_modality_weights(rgb_kernel, in_channels: int) -> np.ndarray:
    """The first-layer kernel of a flow / RGB-difference network from an RGB network's.

    ``W'[..., c, o] = mean_i W[..., i, o]`` for every new input channel ``c`` (TSN's
    cross-modality initialisation: average over the RGB channels, replicate, no rescaling).

    Args:
        rgb_kernel: a ``(kh, kw, in, out)`` convolution kernel (``in`` is 3 for RGB).
        in_channels: input channels of the new network: ``2 * new_length`` for flow,
            ``3 * new_length`` for RGB difference.

    Returns:
        A ``(kh, kw, in_channels, out)`` array of the kernel's dtype.

    Example:
        >>> cross_modality_weights(np.ones((7, 7, 3, 64)), 10).shape
        (7, 7, 10, 64)
    """
    kernel = np.asarray(rgb_kernel)
    if kernel.ndim != 4:
        raise ConfigError(f"cross-modality initialisation needs a (kh, kw, in, out) conv kernel, got shape {kernel.shape}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    mean = kernel.mean(axis=2, keepdims=True, dtype=np.float64)
    return np.repeat(mean, in_channels, axis=2).astype(kernel.dtype)


def weighted_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers that own weights, in the model's (topological) order, through nested models.

    Wrappers (``TimeDistributed``, the TSN's folded wrapper) are entered, so a TSN model lists
    its backbone's layers followed by its head.
    """
    found: list[keras.layers.Layer] = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            found.extend(weighted_layers(layer))
        elif isinstance(layer, keras.layers.Wrapper):
            inner = layer.layer
            if isinstance(inner, keras.Model):
                found.extend(weighted_layers(inner))
            elif inner.weights:
                found.append(inner)
        elif layer.weights:
            found.append(layer)
    return found


def transfer_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy ``source``'s weights into ``target`` layer by layer, adapting the first conv's channels.

    Args:
        source: a model of the same architecture (a classifier on top of it, such as
            BN-Inception's ``last_linear``, is ignored).
        target: the model to overwrite; its input may have another number of channels, in which
            case the first convolution gets :func:`cross_modality_weights`.

    Raises:
        ConfigError: the architectures differ (the message names the first differing layer).
    """
    src_layers, dst_layers = weighted_layers(source), weighted_layers(target)
    if len(src_layers) < len(dst_layers):
        raise ConfigError(
            f"cannot copy weights from {source.name!r} ({len(src_layers)} layers with weights) into "
            f"{target.name!r} ({len(dst_layers)}): not the same architecture"
        )
    for index, (src, dst) in enumerate(zip(src_layers, dst_layers)):
        values = [np.asarray(v) for v in src.get_weights()]
        shapes = [tuple(w.shape) for w in dst.weights]
        if type(src) is not type(dst) or len(values) != len(shapes):
            raise ConfigError(
                f"cannot copy weights from {source.name!r} into {target.name!r}: layer {index} is "
                f"{type(src).__name__} {src.name!r} in the source but {type(dst).__name__} {dst.name!r} in the target"
            )
        if [v.shape for v in values] != shapes:
            if index == 0 and isinstance(dst, keras.layers.Conv2D) and _differs_in_input_channels(values[0].shape, shapes[0]):
                values[0] = cross_modality_weights(values[0], shapes[0][2])
            else:
                raise ConfigError(
                    f"cannot copy weights of layer {dst.name!r}: shapes {[v.shape for v in values]} in "
                    f"{source.name!r}, {shapes} in {target.name!r}"
                )
        dst.set_weights(values)


def _differs_in_input_channels(src_shape: tuple, dst_shape: tuple) -> bool:
    return len(src_shape) == len(dst_shape) == 4 and src_shape[:2] == dst_shape[:2] and src_shape[3] == dst_shape[3]


def find_backbone(model: keras.Model) -> keras.Model:
    """The per-frame backbone inside a TSN model (the model itself if it is not a TSN)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Wrapper) and isinstance(layer.layer, keras.Model):
            return layer.layer
    return model
