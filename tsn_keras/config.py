"""Typed configuration for training and evaluation runs, read from recipe YAML files.

A recipe has four sections, each a dataclass below: ``data``, ``model``, ``train`` and
``evaluate``, plus a ``name``. Defaults are the paper's values (``TSN_SEMANTICS.md``); fields
left ``None`` take the modality's default (``new_length``, ``scales``, ``dropout``).

Loading is strict: an unknown key or a value of the wrong kind is a ``ConfigError`` that
names the key and what is allowed, raised before any work starts.

Example:
    >>> cfg = load_config("recipes/ucf101_rgb.yaml", overrides=["train.lr=0.01"])  # doctest: +SKIP
    >>> cfg.data.resolved_new_length()  # doctest: +SKIP
    1
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tsn_keras.errors import ConfigError
from tsn_keras.vocab import (
    AUTO,
    BACKBONES,
    CONSENSUS_MODES,
    CROP_COUNTS,
    DEFAULT_DROPOUT,
    DEFAULT_NEW_LENGTH,
    DEFAULT_SCALES,
    MODALITIES,
    NORMALIZATIONS,
    PRECISIONS,
    STRATEGIES,
    check_choice,
)


@dataclass
class DataConfig:
    """Where the converted shards are and how clips are sampled from them."""

    root: str = ""  # conversion folder: manifest.json plus one folder of shards per split
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation during training
    test_split: str = "test"
    modality: str = "rgb"
    num_segments: int = 3  # K
    new_length: int | None = None  # L; None: 1 for rgb, 5 otherwise
    input_size: int = 224
    scales: tuple[float, ...] | None = None  # multi-scale crop; None: the modality's default
    max_distort: int = 1
    more_fix_crop: bool = True
    flip: bool = True
    normalization: str = "auto"  # auto: the backbone's preset
    shuffle_buffer: int = 64
    skip_corrupt: bool = False
    # RGB training: resize, mirror and normalise crops on the accelerator, the host only decodes
    # (ClipSpec.device_resize). auto: when a GPU is visible; a run keeps its first choice.
    device_resize: bool | str = AUTO

    def resolved_new_length(self) -> int:
        return self.new_length if self.new_length is not None else DEFAULT_NEW_LENGTH[self.modality]

    def resolved_scales(self) -> tuple[float, ...]:
        return tuple(self.scales) if self.scales is not None else DEFAULT_SCALES[self.modality]


@dataclass
class ModelConfig:
    """The network: backbone, consensus and the paper's regularisers."""

    backbone: str = "bn_inception"
    weights: str | None = None  # None, "imagenet" or a path to weights
    consensus: str = "avg"
    consensus_k: int = 3  # for consensus "topk"
    dropout: float | None = None  # None: 0.8 for rgb/rgb_diff, 0.7 for flow
    partial_bn: bool = True
    init_from: str | None = None  # an RGB model (.keras / .weights.h5) for cross-modality initialisation

    def resolved_dropout(self, modality: str) -> float:
        return self.dropout if self.dropout is not None else DEFAULT_DROPOUT[modality]


@dataclass
class TrainConfig:
    """Optimisation, in the paper's units: iterations of ``batch_size`` clips."""

    batch_size: int = 256  # clips per optimiser update, accumulated over replicas and micro-batches
    micro_batch_size: int | None = None  # clips per replica per forward pass; None: batch_size / replicas
    lr: float = 0.001
    lr_steps: tuple[int, ...] = (2000, 4000)  # iterations at which lr is multiplied by lr_decay
    lr_decay: float = 0.1
    max_iterations: int = 4500
    momentum: float = 0.9
    weight_decay: float = 5e-4  # Caffe-style L2 on conv/dense kernels only
    clip_norm: float | None = 40.0  # global gradient norm; None: no clipping
    strategy: str = "auto"
    mixed_precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    validate_every: int = 1  # epochs between validation passes
    output_dir: str = "runs"
    steps_per_execution: int = 1


@dataclass
class EvalConfig:
    """The test protocol: T snippets x crops per video, logits averaged before softmax."""

    num_snippets: int = 25
    num_crops: int = 10
    batch_size: int = 4


@dataclass
class Config:
    """A whole run: what ``tsn train`` reads from a recipe."""

    name: str = "tsn"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> Config:
        """Check values that do not depend on the data; returns ``self``."""
        d, m, t, e = self.data, self.model, self.train, self.evaluate
        check_choice("data.modality", d.modality, MODALITIES)
        check_choice("data.normalization", d.normalization, (AUTO, *NORMALIZATIONS))
        check_choice("model.backbone", m.backbone, BACKBONES)
        check_choice("model.consensus", m.consensus, CONSENSUS_MODES)
        check_choice("train.strategy", t.strategy, STRATEGIES)
        check_choice("train.mixed_precision", t.mixed_precision, PRECISIONS)
        check_choice("evaluate.num_crops", e.num_crops, CROP_COUNTS)
        _at_least("data.num_segments", d.num_segments, 1)
        if d.new_length is not None:
            _at_least("data.new_length", d.new_length, 1)
        _at_least("data.input_size", d.input_size, 8)
        _at_least("data.max_distort", d.max_distort, 0)
        _at_least("data.shuffle_buffer", d.shuffle_buffer, 1)
        if d.device_resize not in (True, False, AUTO):
            raise ConfigError(f"data.device_resize must be true, false or auto, got {d.device_resize!r}")
        if d.device_resize is True and d.modality != "rgb":
            raise ConfigError(f"data.device_resize is for rgb training, not {d.modality}; set it to auto or false")
        if d.scales is not None and (not d.scales or any(not 0 < s <= 1 for s in d.scales)):
            raise ConfigError(f"data.scales must be a non-empty list of numbers in (0, 1], got {list(d.scales)}")
        _at_least("model.consensus_k", m.consensus_k, 1)
        if m.dropout is not None and not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
        _at_least("train.batch_size", t.batch_size, 1)
        if t.micro_batch_size is not None:
            _at_least("train.micro_batch_size", t.micro_batch_size, 1)
        if not math.isfinite(t.lr) or t.lr <= 0:
            raise ConfigError(f"train.lr must be a finite number > 0, got {t.lr}")
        _at_least("train.max_iterations", t.max_iterations, 1)
        if list(t.lr_steps) != sorted(t.lr_steps) or any(s < 1 for s in t.lr_steps):
            raise ConfigError(f"train.lr_steps must be increasing positive iterations, got {list(t.lr_steps)}")
        if not 0 < t.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay must be in (0, 1], got {t.lr_decay}")
        if not 0 <= t.momentum < 1:
            raise ConfigError(f"train.momentum must be in [0, 1), got {t.momentum}")
        if t.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {t.weight_decay}")
        if t.clip_norm is not None and t.clip_norm <= 0:
            raise ConfigError(f"train.clip_norm must be > 0 or null, got {t.clip_norm}")
        _at_least("train.validate_every", t.validate_every, 1)
        _at_least("train.steps_per_execution", t.steps_per_execution, 1)
        _at_least("evaluate.num_snippets", e.num_snippets, 1)
        _at_least("evaluate.batch_size", e.batch_size, 1)
        return self


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- building from dictionaries ----------------------------------------------------------

def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a dataclass field annotation (the few types configs use)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, option)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: unsupported value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_type = args[0]
        return tuple(_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, key)
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _from_dict(cls, values: Any, prefix: str = ""):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; valid keys{' in ' + prefix if prefix else ''}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(f"{prefix}.{name}" if prefix else name, value, hints[name])
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build and validate a ``Config`` from a (YAML-shaped) dictionary."""
    return _from_dict(Config, values).validate()


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a config dictionary."""
    values = _plain(values)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        target = values
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            target[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:  # also a !!python tag: safe_load refuses to construct it
            reason = " ".join(str(err).split())
            raise ConfigError(f"override {item!r}: the value is not plain YAML ({reason})") from None
    return values


def resolve_recipe(path: str | Path) -> Path:
    """A recipe path, or the name of one in the repository's ``recipes/`` folder."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    bundled = Path(__file__).resolve().parents[1] / "recipes"
    for name in (str(path), f"{path}.yaml"):
        if (bundled / name).is_file():
            return bundled / name
    available = sorted(p.stem for p in bundled.glob("*.yaml")) if bundled.is_dir() else []
    raise ConfigError(f"recipe {path} not found; bundled recipes: {', '.join(available) or 'none'}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a recipe YAML, apply ``key=value`` overrides and validate it."""
    recipe = resolve_recipe(path)
    try:
        values = yaml.safe_load(recipe.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{recipe} is not valid YAML: {err}") from None
    return config_from_dict(apply_overrides(values, overrides))
