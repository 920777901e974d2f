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
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops

from tsn_keras.config import DEFAULT_DROPOUT, DEFAULT_NEW_LENGTH, MODALITIES
from tsn_keras.errors import ConfigError
from tsn_keras.models.backbones import build_backbone, load_backbone_weights
from tsn_keras.models.consensus import FEATURE_MODES, SegmentConsensus, check_consensus
from tsn_keras.models.transfer import (
    cross_modality_weights,
    find_backbone,
    load_keras_file,
    transfer_weights,
)

__all__ = [
    "FoldedTimeDistributed",
    "build_tsn",
    "cross_modality_weights",
    "input_channels",
    "set_partial_bn",
    "snippet_model",
]

# Layer names other modules rely on (snippet_model, evaluation, export).
BACKBONE_LAYER, DROPOUT_LAYER, FC_LAYER, CONSENSUS_LAYER = "backbone", "dropout", "fc", "consensus"
# The new classifier layer of the paper: weights N(0, 0.001), bias 0.
FC_STDDEV = 0.001


@keras.saving.register_keras_serializable(package="tsn_keras")
class FoldedTimeDistributed(keras.layers.Wrapper):
    """Applies a per-frame model to every snippet by folding the snippets into the batch.

    ``(B, S, H, W, C) -> (B*S, H, W, C) -> model -> (B*S, ...) -> (B, S, ...)``. Unlike
    ``keras.layers.TimeDistributed`` (one call per time step, or a vectorised map when S is
    unknown) the wrapped model runs once on a batch of B*S frames: faster, a graph that does
    not grow with S, and BatchNorm statistics over all B*S frames, as in TSN.

    Args:
        layer: the per-frame model or layer (for a TSN: the backbone).
        **kwargs: standard layer arguments.

    Example:
        >>> folded = FoldedTimeDistributed(build_backbone("tiny", (64, 64, 3)))  # doctest: +SKIP
        >>> folded(keras.ops.zeros((2, 5, 64, 64, 3))).shape  # doctest: +SKIP
        (2, 5, 256)
    """

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        folded = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        outputs = self.layer(folded, training=training)
        return ops.reshape(outputs, (shape[0], shape[1], *outputs.shape[1:]))


def input_channels(modality: str, new_length: int | None = None) -> int:
    """Channels of one snippet: 3 (rgb), 2L (flow, warped_flow), 3L (rgb_diff)."""
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; valid modalities: {', '.join(MODALITIES)}")
    length = DEFAULT_NEW_LENGTH[modality] if new_length is None else new_length
    if length < 1:
        raise ConfigError(f"new_length must be >= 1, got {length}")
    if modality == "rgb":
        return 3
    return 3 * length if modality == "rgb_diff" else 2 * length


def build_tsn(
    num_classes: int,
    modality: str = "rgb",
    num_segments: int = 3,
    new_length: int | None = None,
    backbone: str = "bn_inception",
    consensus: str = "avg",
    dropout: float | None = None,
    partial_bn: bool = True,
    input_size: int = 224,
    weights: str | Path | None = None,
    consensus_k: int = 3,
    init_from: keras.Model | str | Path | None = None,
) -> keras.Model:
    """Build a TSN: ``(B, S, H, W, C)`` clips -> logits ``(B, num_classes)``.

    Args:
        num_classes: number of action classes.
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.
        num_segments: K, the segments of a training clip (used by the ``weighted`` consensus;
            the model accepts any number of snippets).
        new_length: L, frames per snippet; ``None``: 1 for rgb, 5 otherwise.
        backbone: one of ``backbones.BACKBONES``.
        consensus: one of ``consensus.CONSENSUS_MODES``.
        dropout: rate after global pooling; ``None``: 0.8 (rgb, rgb_diff) or 0.7 (flow).
        partial_bn: freeze every BatchNorm layer but the first (use with pre-trained weights).
        input_size: height and width of the crops.
        weights: backbone weights: ``None``, ``"imagenet"`` (keras.applications backbones) or
            a path (``backbones.build_backbone``).
        consensus_k: k of the ``topk`` consensus.
        init_from: cross-modality initialisation from an RGB network: a TSN ``keras.Model``,
            a ``.keras`` path, or backbone weights (``.weights.h5``). The backbone's first conv
            gets the averaged kernel, every other backbone layer is copied; the classifier and
            consensus are copied where their shapes match (same number of classes).

    Returns:
        A ``keras.Model`` named ``tsn_<modality>_<backbone>``, not compiled.

    Example:
        >>> model = build_tsn(101, "flow", backbone="tiny", input_size=112)  # doctest: +SKIP
        >>> model.input_shape  # doctest: +SKIP
        (None, None, 112, 112, 10)
    """
    channels = input_channels(modality, new_length)
    check_consensus(consensus)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if num_segments < 1:
        raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
    rate = DEFAULT_DROPOUT[modality] if dropout is None else dropout
    if not 0 <= rate < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {rate}")
    if weights is not None and init_from is not None:
        raise ConfigError("give model.weights or model.init_from, not both (init_from already sets the backbone)")

    base = build_backbone(backbone, (input_size, input_size, channels), weights=weights)
    clips = keras.Input(shape=(None, input_size, input_size, channels), name="clips")
    features = FoldedTimeDistributed(base, name=BACKBONE_LAYER)(clips)
    dropped = keras.layers.Dropout(rate, name=DROPOUT_LAYER)(features)
    # float32 consensus: logits and loss stay float32 under mixed precision.
    if consensus == "gru":
        head = SegmentConsensus("gru", num_classes=num_classes, dtype="float32", name=CONSENSUS_LAYER)
        outputs = head(dropped)
    else:
        logits = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=FC_STDDEV),
            bias_initializer="zeros",
            name=FC_LAYER,
        )(dropped)
        head = SegmentConsensus(
            consensus, k=consensus_k, num_segments=num_segments, dtype="float32", name=CONSENSUS_LAYER
        )
        outputs = head([features, logits] if consensus == "attention" else logits)
    model = keras.Model(clips, outputs, name=f"tsn_{modality}_{backbone}")

    if init_from is not None:
        _init_from(model, init_from, backbone, input_size)
    set_partial_bn(model, partial_bn)
    return model


def _init_from(model: keras.Model, source: keras.Model | str | Path, backbone: str, input_size: int) -> None:
    target = find_backbone(model)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.name.endswith(".keras"):
            load_backbone_weights(target, path, lambda c: build_backbone(backbone, (input_size, input_size, c)))
            return
        if not path.is_file():
            raise ConfigError(f"model.init_from: no such file {path}")
        source = load_keras_file(path)
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
