"""`tsn convert-weights`: PyTorch BN-Inception ImageNet checkpoint -> Keras ``.weights.h5``.

Reads the checkpoint of the ``pretrainedmodels`` package's ``bninception`` (or any state dict
with its keys), converts every tensor to the Keras layout and writes the weights of a
``BNInception(include_top=True)``. The file then serves as ``model.weights`` of a recipe:
``build_backbone("bn_inception", ..., weights=path)`` loads it into any number of input
channels (flow and RGB difference get TSN's cross-modality initialisation).

torch is imported here only: install it with ``pip install 'tsn-keras[torch]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tsn_keras.errors import ConfigError, DataError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="PyTorch checkpoint (.pth) with the bninception state dict")
    parser.add_argument("output", help="Keras weights file to write; must end in .weights.h5")


def _read_state_dict(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "tsn convert-weights needs PyTorch to read the checkpoint: install the torch extra "
            "with `pip install 'tsn-keras[torch]'`"
        ) from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "not a checkpoint"
        raise DataError(f"cannot read {path} as a PyTorch checkpoint: {err}") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]  # training checkpoints wrap the weights
    if not isinstance(checkpoint, dict) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise DataError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {key: value.detach().cpu().float().numpy() for key, value in checkpoint.items()}


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.is_file():
        raise DataError(f"checkpoint {source} not found")
    if not target.name.endswith(".weights.h5"):
        raise ConfigError(f"output {target} must end in .weights.h5 (Keras weights file)")
    state_dict = _read_state_dict(source)

    from tsn_keras.models.bn_inception import BNInception
    from tsn_keras.models.pytorch_weights import classes_in_state_dict, load_state_dict

    classes = classes_in_state_dict(state_dict)
    model = BNInception((224, 224, 3), include_top=classes is not None, classes=classes or 1000)
    counts = load_state_dict(model, state_dict)
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(target)
    top = f"classifier last_linear ({classes} classes)" if classes else "no classifier"
    print(
        f"converted {counts['tensors']} tensors ({counts['parameters']:,} values; "
        f"{counts['ignored']} num_batches_tracked ignored), {top} -> {target}"
    )
    return 0
