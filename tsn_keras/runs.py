"""A trained run: the model, its class names, its recipe, and the protocol that feeds it.

``load_run`` takes a run folder written by ``tsn train`` (``model.keras``, ``config.yaml``,
``classes.json``), a bare ``.keras`` file or an in-memory ``TSN``. The model carries its own
protocol (modality, new length, input size, normalisation, class names: ``models.tsn.TSN``), so
nothing is guessed from channel counts or layer names; the run folder adds its recipe, whose
``evaluate:`` section is the default test protocol. The evaluation, export, prediction and
visualisation commands all start here.

Example:
    >>> run = load_run("runs/ucf101_rgb-20240101-120000")  # doctest: +SKIP
    >>> run.modality, run.input_size, run.normalization  # doctest: +SKIP
    ('rgb', 224, 'caffe_bgr')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras

from tfrecords_tools.manifest import load_manifest
from tsn_keras.config import Config, EvalConfig, load_config
from tsn_keras.errors import DataError
from tsn_keras.models.tsn import TSN, load_tsn

MODEL_FILE, CONFIG_FILE, CLASSES_FILE = "model.keras", "config.yaml", "classes.json"


@dataclass
class RunInfo:
    """A trained TSN with its class names, recipe and input protocol."""

    model: TSN
    model_path: Path | None
    run_dir: Path | None
    class_names: list[str] | None
    config: Config | None  # the run's recipe; None for a bare model

    @property
    def modality(self) -> str:
        return self.model.modality

    @property
    def new_length(self) -> int:
        return self.model.new_length

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @property
    def normalization(self) -> str:
        return self.model.normalization

    @property
    def data_root(self) -> str | None:
        """The conversion folder the run was trained on (its recipe's ``data.root``), if known."""
        return self.config.data.root if self.config is not None and self.config.data.root else None

    @property
    def protocol(self) -> EvalConfig:
        """The test protocol: the recipe's ``evaluate:`` section, or the paper's for a bare model."""
        return self.config.evaluate if self.config is not None else EvalConfig()

    @property
    def test_split(self) -> str:
        return self.config.data.test_split if self.config is not None else "test"

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


def load_run(model_or_run, *, classes: str | os.PathLike | None = None) -> RunInfo:
    """Load a trained TSN, its recipe and its class names.

    Args:
        model_or_run: a run folder (``model.keras``, ``config.yaml``, ``classes.json``), a
            ``.keras`` file written by this library, or a ``TSN``.
        classes: class names for a model that holds none (see ``read_class_names``); checked
            against the model's own names when it has them.
    """
    run_dir = model_path = config = None
    class_names = read_class_names(classes) if classes is not None else None
    if isinstance(model_or_run, keras.Model):
        model = model_or_run
    else:
        path = Path(model_or_run)
        if path.is_dir():
            run_dir, model_path = path, path / MODEL_FILE
            if not model_path.is_file():
                raise DataError(f"{path} is not a run folder: {MODEL_FILE} not found (train one with `tsn train`)")
            if (path / CONFIG_FILE).is_file():
                config = load_config(path / CONFIG_FILE)
            if class_names is None and (path / CLASSES_FILE).is_file():
                class_names = read_class_names(path / CLASSES_FILE)
        elif path.suffix == ".keras":
            model_path = path
        else:
            raise DataError(f"{path} is neither a run folder nor a .keras model file")
        model = load_tsn(model_path)
    if not isinstance(model, TSN):
        raise DataError(f"model {model.name!r} is not a TSN written by tsn-keras (a {type(model).__name__}); "
                        "its input protocol is unknown: build it with tsn_keras.models.build_tsn")
    if model.class_names is not None:
        if class_names is not None and list(class_names) != list(model.class_names):
            raise DataError(f"the class names given differ from the {len(model.class_names)} the model was "
                            "trained with")
        class_names = list(model.class_names)
    if class_names is not None and len(class_names) != model.num_classes:
        raise DataError(f"the model has {model.num_classes} classes but {len(class_names)} class names were given")
    return RunInfo(model, model_path, run_dir, class_names, config)
