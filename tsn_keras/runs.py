"""A trained run: the model, its class names, and the input protocol that feeds it.

``load_run`` takes a run folder written by ``tsn train`` (``model.keras``, ``config.yaml``,
``classes.json``), a bare ``.keras`` file or an in-memory ``keras.Model`` and resolves what the
test pipeline needs: modality, frames per snippet, input size and normalisation. The evaluation,
export and prediction commands all start here.

Example:
    >>> run = load_run("runs/ucf101_rgb-20240101-120000")  # doctest: +SKIP
    >>> run.modality, run.input_size, run.normalization  # doctest: +SKIP
    ('rgb', 224, 'caffe_bgr')
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsn_keras.errors import ConfigError, DataError


@dataclass
class RunInfo:
    """A trained model with its class names and input protocol, from a run folder or a ``.keras`` file."""

    model: Any
    model_path: Path | None
    run_dir: Path | None
    class_names: list[str] | None
    config: Any  # tsn_keras.config.Config, or None for a bare model
    modality: str
    new_length: int
    input_size: int
    normalization: str

    def default_output_dir(self, name: str) -> Path:
        """``<run>/<name>`` for a run folder, ``<model stem>-<name>`` beside a bare model file."""
        if self.run_dir is not None:
            return self.run_dir / name
        if self.model_path is not None:
            return self.model_path.with_name(f"{self.model_path.stem}-{name}")
        return Path(name)


def read_class_names(source: str | os.PathLike) -> list[str]:
    """Class names from a ``classes.json`` (a list, or ``{"classes": [...]}``), a text file with one
    name per line, or a conversion folder (its manifest)."""
    from tsn_keras.data.records import load_manifest

    path = Path(source)
    if path.is_dir():
        return [str(c) for c in load_manifest(path)["classes"]]
    if not path.is_file():
        raise DataError(f"class names file {path} not found (give a classes.json, a text file or a conversion folder)")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            value = json.loads(text)
        except ValueError as err:
            raise DataError(f"cannot read class names from {path}: {err}") from None
        value = value.get("classes") if isinstance(value, dict) else value
        if not isinstance(value, list) or not value:
            raise DataError(f"{path} must hold a list of class names (or {{\"classes\": [...]}})")
        return [str(c) for c in value]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path} holds no class names")
    return names


def load_run(model_or_run, *, classes: str | os.PathLike | None = None, modality: str | None = None,
             normalization: str | None = None) -> RunInfo:
    """Load a trained TSN and resolve its input protocol.

    Args:
        model_or_run: a run folder (``model.keras``, ``config.yaml``, ``classes.json``), a
            ``.keras`` file, or a ``keras.Model``.
        classes: class names for a bare model (see ``read_class_names``); a run folder has its own.
        modality: needed for a bare model whose input channels do not tell (anything but RGB).
        normalization: needed for a bare model without a recognisable backbone.
    """
    import keras

    import tsn_keras.models  # noqa: F401  (registers the custom layers before loading)
    from tsn_keras.config import MODALITIES, load_config

    run_dir = model_path = config = None
    class_names = read_class_names(classes) if classes is not None else None
    if isinstance(model_or_run, keras.Model):
        model = model_or_run
    else:
        path = Path(model_or_run)
        if path.is_dir():
            run_dir, model_path = path, path / "model.keras"
            if not model_path.is_file():
                raise DataError(f"{path} is not a run folder: model.keras not found (train one with `tsn train`)")
            if (path / "config.yaml").is_file():
                config = load_config(path / "config.yaml")
            if class_names is None and (path / "classes.json").is_file():
                class_names = read_class_names(path / "classes.json")
        elif path.is_file() and path.suffix == ".keras":
            model_path = path
        else:
            raise DataError(f"{path} is neither a run folder nor a .keras model file")
        try:
            model = keras.saving.load_model(model_path)
        except (OSError, ValueError, TypeError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot load model {model_path}: {err}") from None

    shape = tuple(model.inputs[0].shape)
    if len(shape) != 5 or shape[2] != shape[3] or shape[4] is None:
        raise DataError(f"model {model.name!r} takes input {shape}; a TSN takes (batch, snippets, H, W, C) square crops")
    channels = int(shape[4])
    num_classes = int(model.outputs[0].shape[-1])
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"the model has {num_classes} classes but {len(class_names)} class names were given")
    if modality is None:
        modality = config.data.modality if config is not None else _name_parts(model)[0]
        if modality is None and channels == 3:
            modality = "rgb"
        if modality is None:
            raise ConfigError(f"the model takes {channels} channels per snippet; say which modality it is "
                              f"(--modality {' or '.join(m for m in MODALITIES if m != 'rgb')})")
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
    from tsn_keras.models.tsn import input_channels

    new_length = 1 if modality == "rgb" else channels // (3 if modality == "rgb_diff" else 2)
    if new_length < 1 or input_channels(modality, new_length) != channels:
        raise DataError(f"a {modality} model cannot take {channels} channels per snippet")
    if config is not None and config.data.resolved_new_length() != new_length:
        raise DataError(f"the run's config says new_length {config.data.resolved_new_length()} but the model "
                        f"takes {channels} channels ({modality}: {new_length} frames)")
    if normalization is None:
        normalization = _resolve_normalization(model, config)
    return RunInfo(model, model_path, run_dir, class_names, config, modality, new_length, int(shape[2]),
                   normalization)


def _name_parts(model) -> tuple[str | None, str | None]:
    """``(modality, backbone)`` from a ``build_tsn`` model name ``tsn_<modality>_<backbone>``."""
    from tsn_keras.config import MODALITIES
    from tsn_keras.models.backbones import BACKBONES

    name = model.name
    for backbone in BACKBONES:
        for modality in MODALITIES:
            if name == f"tsn_{modality}_{backbone}":
                return modality, backbone
    return None, None


def _resolve_normalization(model, config) -> str:
    from tsn_keras.models.backbones import preprocessing_preset

    if config is not None:
        if config.data.normalization != "auto":
            return config.data.normalization
        return preprocessing_preset(config.model.backbone)
    backbone = _name_parts(model)[1]
    if backbone is None:
        raise ConfigError(f"cannot tell which backbone model {model.name!r} uses; give its normalisation "
                          "(--normalization caffe_bgr, keras_caffe, keras_tf, keras_torch, raw or tf_lite)")
    return preprocessing_preset(backbone)
