"""The Temporal Segment Network (Wang et al., ECCV 2016), one readable module.

``build_tsn`` puts together what Sec. 3 of the paper describes:

1. a backbone shared by all snippets, run once on the segments folded into the batch
   (``(B, S, H, W, C) -> (B*S, H, W, C)``), so BatchNorm sees all B*S frames and the graph is
   not unrolled S times (``FoldedTimeDistributed``);
2. dropout after global pooling (0.8 for RGB and RGB difference, 0.7 for flow) and a new
   fully connected layer initialised N(0, 0.001);
3. the segmental consensus over the snippet logits (``SegmentConsensus``);
4. partial BN: every BatchNorm layer but the first frozen, statistics and affine parameters
   (``set_partial_bn``);
5. cross-modality initialisation of flow and RGB-difference networks from an RGB one
   (``init_from``; formula in ``transfer.cross_modality_weights``).

The input is ``(B, S, H, W, C)`` with S unknown: the same model trains on K segments and is
tested on T snippets. The output is the logits ``(B, classes)`` in float32, also under a
mixed-precision policy.

The model is a ``TSN``, a functional ``keras.Model`` that carries its protocol in its config
(modality, new length, segments, backbone, consensus, normalisation preset, input size, class
names), so a ``.keras`` file loaded on its own says how its input must be prepared
(keras-hub's pattern: the task knows its preprocessing).
"""

from __future__ import annotations

from pathlib import Path
from zipfile import BadZipFile, is_zipfile

import keras

from tsn_keras.errors import ConfigError, DataError
from tsn_keras.models.backbones import build_backbone
from tsn_keras.models.consensus import SegmentConsensus, check_consensus
from tsn_keras.models.layers import DeviceClipViews, FoldedTimeDistributed
from tsn_keras.models.transfer import cross_modality_weights, find_backbone, transfer_weights
from tsn_keras.models.weights import load_backbone_weights
from tsn_keras.vocab import (
    AUTO,
    DEFAULT_DROPOUT,
    FEATURE_MODES,
    NORMALIZATIONS,
    backbone_preset,
    check_choice,
    input_channels,
    resolve_new_length,
)

__all__ = [
    "TSN",
    "FoldedTimeDistributed",
    "build_tsn",
    "cross_modality_weights",
    "input_channels",
    "load_tsn",
    "set_partial_bn",
    "snippet_model",
    "with_device_views",
]

# Layer names other modules rely on (snippet_model, evaluation, export, visualisation).
BACKBONE_LAYER, DROPOUT_LAYER, FC_LAYER, CONSENSUS_LAYER = "backbone", "dropout", "fc", "consensus"
# The new classifier layer of the paper: weights N(0, 0.001), bias 0.
FC_STDDEV = 0.001


@keras.saving.register_keras_serializable(package="tsn_keras")
class TSN(keras.Model):
    """A Temporal Segment Network: ``(B, S, H, W, C)`` clips -> logits ``(B, num_classes)``.

    A functional model whose config is its constructor's arguments: the architecture and the
    protocol its input needs. A ``.keras`` file of a TSN therefore reloads as a ``TSN`` whose
    attributes say how to prepare its input, with no side files.

    Args:
        num_classes: number of action classes.
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.
        num_segments: K, the segments of a training clip (used by the ``weighted`` consensus;
            the model accepts any number of snippets).
        new_length: L, frames per snippet; ``None``: 1 for rgb, 5 otherwise.
        backbone: one of ``vocab.BACKBONES``.
        consensus: one of ``vocab.CONSENSUS_MODES``.
        consensus_k: k of the ``topk`` consensus.
        dropout: rate after global pooling; ``None``: 0.8 (rgb, rgb_diff) or 0.7 (flow).
        partial_bn: freeze every BatchNorm layer but the first (use with pre-trained weights).
        input_size: height and width of the crops.
        normalization: the input normalisation preset (``vocab.NORMALIZATIONS``); ``"auto"``
            is the backbone's (``vocab.backbone_preset``).
        class_names: the names of the classes (index = class), or ``None``.
        **kwargs: standard model arguments (``name``, ``trainable``).

    Example:
        >>> model = TSN(101, "flow", backbone="tiny", input_size=112)  # doctest: +SKIP
        >>> model.input_shape, model.normalization  # doctest: +SKIP
        ((None, None, 112, 112, 10), 'keras_tf')

    Reference:
        Wang et al., "Temporal Segment Networks: Towards Good Practices for Deep Action
        Recognition", ECCV 2016.
    """

    def __init__(
        self,
        num_classes: int,
        modality: str = "rgb",
        num_segments: int = 3,
        new_length: int | None = None,
        backbone: str = "bn_inception",
        consensus: str = "avg",
        consensus_k: int = 3,
        dropout: float | None = None,
        partial_bn: bool = True,
        input_size: int = 224,
        normalization: str = AUTO,
        class_names: list[str] | None = None,
        **kwargs,
    ):
        new_length = resolve_new_length(modality, new_length)
        channels = input_channels(modality, new_length)
        check_consensus(consensus)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if num_segments < 1:
            raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
        rate = DEFAULT_DROPOUT[modality] if dropout is None else dropout
        if not 0 <= rate < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {rate}")
        normalization = backbone_preset(backbone) if normalization == AUTO else normalization
        check_choice("normalization", normalization, NORMALIZATIONS)
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != num_classes:
                raise ConfigError(f"{len(class_names)} class names for a model of {num_classes} classes")

        # The layers take the global dtype policy; a reloaded model must get the one it was built
        # with (mixed precision), which its config records.
        previous_policy = keras.config.dtype_policy()
        dtype = kwargs.pop("dtype", None)
        if dtype is not None:
            keras.config.set_dtype_policy(dtype)
        try:
            base = build_backbone(backbone, (input_size, input_size, channels))
            clips = keras.Input(shape=(None, input_size, input_size, channels), name="clips")
            features = FoldedTimeDistributed(base, name=BACKBONE_LAYER)(clips)
            dropped = keras.layers.Dropout(rate, name=DROPOUT_LAYER)(features)
            # float32 consensus: logits and loss stay float32 under mixed precision.
            if consensus == "gru":
                outputs = SegmentConsensus("gru", num_classes=num_classes, dtype="float32", name=CONSENSUS_LAYER)(dropped)
            else:
                logits = keras.layers.Dense(
                    num_classes,
                    kernel_initializer=keras.initializers.RandomNormal(stddev=FC_STDDEV),
                    bias_initializer="zeros",
                    name=FC_LAYER,
                )(dropped)
                head = SegmentConsensus(consensus, k=consensus_k, num_segments=num_segments, dtype="float32",
                                        name=CONSENSUS_LAYER)
                outputs = head([features, logits] if consensus == "attention" else logits)
            kwargs.setdefault("name", f"tsn_{modality}_{backbone}")
        finally:
            keras.config.set_dtype_policy(previous_policy)
        super().__init__(inputs=clips, outputs=outputs, **kwargs)

        self.num_classes = num_classes
        self.modality = modality
        self.num_segments = num_segments
        self.new_length = new_length
        self.backbone = backbone
        self.consensus = consensus
        self.consensus_k = consensus_k
        self.dropout = rate
        self.input_size = input_size
        self.normalization = normalization
        self.class_names = class_names
        self.partial_bn = partial_bn
        set_partial_bn(self, partial_bn)

    @property
    def channels(self) -> int:
        """Input channels of one snippet."""
        return input_channels(self.modality, self.new_length)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy.name,
            "num_classes": self.num_classes,
            "modality": self.modality,
            "num_segments": self.num_segments,
            "new_length": self.new_length,
            "backbone": self.backbone,
            "consensus": self.consensus,
            "consensus_k": self.consensus_k,
            "dropout": self.dropout,
            "partial_bn": self.partial_bn,
            "input_size": self.input_size,
            "normalization": self.normalization,
            "class_names": self.class_names,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> TSN:
        return cls(**config)


def build_tsn(
    num_classes: int,
    modality: str = "rgb",
    *,
    weights: str | Path | None = None,
    init_from: keras.Model | str | Path | None = None,
    **architecture,
) -> TSN:
    """Build a ``TSN`` and load its starting weights.

    Args:
        num_classes, modality: as ``TSN``.
        weights: backbone weights: ``None``, ``"imagenet"`` (keras.applications backbones), a
            ``.weights.h5`` file of the backbone (any channel count: 3-channel weights get the
            cross-modality initialisation) or a ``.keras`` model whose backbone is copied.
        init_from: cross-modality initialisation from an RGB network: a TSN ``keras.Model``,
            a ``.keras`` path, or backbone weights (``.weights.h5``). The backbone's first conv
            gets the averaged kernel, every other backbone layer is copied; the classifier and
            consensus are copied where their shapes match (same number of classes).
        **architecture: the other arguments of ``TSN`` (``num_segments``, ``new_length``,
            ``backbone``, ``consensus``, ``consensus_k``, ``dropout``, ``partial_bn``,
            ``input_size``, ``normalization``, ``class_names``).

    Returns:
        A ``TSN`` named ``tsn_<modality>_<backbone>``, not compiled.

    Example:
        >>> model = build_tsn(101, "flow", backbone="tiny", input_size=112)  # doctest: +SKIP
        >>> model.input_shape  # doctest: +SKIP
        (None, None, 112, 112, 10)
    """
    if weights is not None and init_from is not None:
        raise ConfigError("give model.weights or model.init_from, not both (init_from already sets the backbone)")
    model = TSN(num_classes, modality, **architecture)
    backbone, input_size = model.backbone, model.input_size
    if weights == "imagenet":
        transfer_weights(build_backbone(backbone, (input_size, input_size, 3), weights="imagenet"),
                         find_backbone(model))
    elif weights is not None and Path(weights).name.endswith(".keras"):
        transfer_weights(find_backbone(load_tsn(weights)), find_backbone(model))
    elif weights is not None:
        load_backbone_weights(find_backbone(model), weights,
                              lambda c: build_backbone(backbone, (input_size, input_size, c)))
    if init_from is not None:
        _init_from(model, init_from, backbone, input_size)
    return model


def load_tsn(path: str | Path) -> keras.Model:
    """Load a ``.keras`` file written by this library (safe mode); a bad file is a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} not found")
    if path.suffix == ".keras" and not is_zipfile(path):
        # Keras reports any non-zip file as "File not found", which sends users looking for the wrong thing.
        raise DataError(f"cannot load the Keras model {path}: it is not a .keras archive (damaged, truncated or "
                        "another kind of file)")
    try:
        return keras.saving.load_model(path)
    except (OSError, ValueError, TypeError, KeyError, BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load the Keras model {path}: {first}") from None


def _init_from(model: keras.Model, source: keras.Model | str | Path, backbone: str, input_size: int) -> None:
    target = find_backbone(model)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.name.endswith(".keras"):
            load_backbone_weights(target, path, lambda c: build_backbone(backbone, (input_size, input_size, c)))
            return
        if not path.is_file():
            raise ConfigError(f"model.init_from: no such file {path}")
        source = load_tsn(path)
    transfer_weights(find_backbone(source), target)
    for name in (FC_LAYER, CONSENSUS_LAYER):
        src, dst = _layer_or_none(source, name), _layer_or_none(model, name)
        if src is None or dst is None or type(src) is not type(dst):
            continue
        if name == CONSENSUS_LAYER and src.mode != dst.mode:
            continue
        values = src.get_weights()
        if [v.shape for v in values] == [tuple(w.shape) for w in dst.weights]:
            dst.set_weights(values)


def _layer_or_none(model: keras.Model, name: str) -> keras.layers.Layer | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of a model in forward order, through nested models."""
    found = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
        if isinstance(inner, keras.Model):
            found.extend(batch_norm_layers(inner))
        elif isinstance(inner, keras.layers.BatchNormalization):
            found.append(inner)
    return found


def set_partial_bn(model: keras.Model, enabled: bool = True) -> list[str]:
    """Partial BN (Wang et al., Sec. 3.2): freeze every BatchNorm layer except the first.

    Frozen layers get ``trainable = False``: their gamma and beta get no gradient and, in
    Keras 3, they normalise with their moving statistics and stop updating them, as the
    original code froze mean, variance and the affine parameters. The first BN layer keeps
    learning and adapts to the new input distribution (e.g. flow). Compile (again) after
    calling this.

    Args:
        model: a TSN (or any model with BatchNorm layers, nested models included).
        enabled: ``False`` makes every BatchNorm layer trainable again.

    Returns:
        The names of the frozen BatchNorm layers.
    """
    layers = batch_norm_layers(model)
    for index, layer in enumerate(layers):
        layer.trainable = index == 0 or not enabled
    if isinstance(model, TSN):
        model.partial_bn = enabled  # the config says what the model is
    return [layer.name for layer in layers if not layer.trainable]


def snippet_model(model: keras.Model) -> keras.Model:
    """A model giving the per-snippet logits ``(B, S, classes)`` of a TSN (same weights).

    For the reducing consensuses (``avg``, ``max``, ``weighted``, ``topk``) and ``identity``,
    used by the test protocol, which averages snippet logits over all crops and snippets.
    ``attention`` and ``gru`` have no per-snippet score: run the whole model per crop instead.
    """
    mode = model.get_layer(CONSENSUS_LAYER).mode
    if mode in FEATURE_MODES:
        raise ConfigError(
            f"consensus {mode!r} has no per-snippet logits; evaluate it by running the model on each crop's snippets"
        )
    logits = model.get_layer(FC_LAYER).output
    logits = keras.layers.Activation("linear", dtype="float32", name="snippet_logits")(logits)
    return keras.Model(model.inputs[0], logits, name=f"{model.name}_snippets")


def with_device_views(model: TSN) -> keras.Model:
    """``model`` behind ``DeviceClipViews``: a model for the clips of ``ClipSpec(device_resize=True)``.

    The resize and normalisation of RGB training clips then run on the accelerator, as the
    model's first step, instead of on the host CPU; the weights are ``model``'s own (train
    this, save ``model``).
    """
    if model.modality != "rgb":
        raise ConfigError(f"device resizing is for rgb models, not {model.modality}")
    inputs = {"crops": keras.Input((None, None, None, 3), dtype="uint8", name="crops"),
              "crop_size": keras.Input((2,), dtype="int32", name="crop_size"),
              "flip": keras.Input((), dtype="bool", name="flip")}
    views = DeviceClipViews(model.input_size, model.normalization, name="device_views")(inputs)
    return keras.Model(inputs, model(views), name=f"{model.name}_device_views")
