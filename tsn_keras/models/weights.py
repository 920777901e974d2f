"""Loading weight files into a backbone, with 3-channel (RGB) weights adapted to any channel count.

A ``.weights.h5`` file is read into the same architecture; when its first convolution was
written for 3 channels and the backbone takes another number (flow 2L, RGB difference 3L), it
is read into a 3-channel copy and transferred with TSN's cross-modality initialisation
(``transfer.transfer_weights``). Whole ``.keras`` models are loaded by ``tsn.load_tsn``, which
hands its backbone to ``transfer_weights``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import keras

from tsn_keras.errors import ConfigError
from tsn_keras.models.transfer import transfer_weights


def load_backbone_weights(
    model: keras.Model,
    weights: str | Path,
    rebuild: Callable[[int], keras.Model],
) -> None:
    """Load a weights file or ``.keras`` model into ``model``, adapting 3-channel weights.

    Args:
        model: the backbone to overwrite.
        weights: a ``.weights.h5`` file of this architecture with any number of input channels.
        rebuild: ``rebuild(channels)`` builds the same architecture with ``channels`` inputs
            and random weights, to read a file written for another channel count.
    """
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"weights file {path} not found (weights are None, 'imagenet' or a .weights.h5 path)")
    if not path.name.endswith(".h5"):
        raise ConfigError(f"weights file {path} must be a .weights.h5 file (a whole .keras model: model.init_from)")
    try:
        load_weights_file(model, path)
        return
    except ValueError as err:
        if model.input_shape[-1] == 3:
            raise ConfigError(f"weights file {path} does not fit backbone {model.name!r}: {_first_line(err)}") from None
    rgb = rebuild(3)
    try:
        load_weights_file(rgb, path)
    except ValueError as err:
        raise ConfigError(
            f"weights file {path} fits neither a {model.input_shape[-1]}-channel nor a 3-channel "
            f"{model.name!r}: {_first_line(err)}"
        ) from None
    transfer_weights(rgb, model)


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3])


def load_weights_file(model: keras.Model, path: str | Path) -> None:
    """``model.load_weights(path)`` without Keras' warning about empty nested containers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping nested container")
        model.load_weights(path)
