"""The segmental consensus: how a TSN turns per-snippet outputs into one video-level prediction.

Modes (Wang et al., ECCV 2016, Sec. 3.1 and Table 3; TPAMI 2018 for attention):

- ``avg`` (the paper's default), ``max``, ``topk`` (mean of the k largest snippet logits per
  class) and ``weighted`` (one learned weight per segment) reduce snippet logits ``(B, S, C)``.
- ``attention`` (TPAMI version): attention weights from the snippet features through a learned
  projection, softmax over the snippets, applied to the snippet logits. Input
  ``[features (B, S, D), logits (B, S, C)]``.
- ``gru``: a GRU over the snippet features, then two dense layers to the classes (the head of
  the student project in this repository's seeds, kept small: GRU(64), Dense(64), Dense(C)).
  Input: features ``(B, S, D)``.
- ``identity``: the snippet logits themselves ``(B, S, C)``.

Every mode accepts any number of snippets S, so the same model trains on K segments and tests
on T = 25 snippets.
"""

from __future__ import annotations

import keras
from keras import ops

from tsn_keras.errors import ConfigError
from tsn_keras.vocab import CONSENSUS_MODES, check_choice


def check_consensus(mode: str) -> None:
    """Raise ``ConfigError`` naming the valid modes if ``mode`` is not one of them."""
    check_choice("consensus", mode, CONSENSUS_MODES)


@keras.saving.register_keras_serializable(package="tsn_keras")
class SegmentConsensus(keras.layers.Layer):
    """Aggregates snippet-level outputs into a video-level prediction (TSN's consensus G).

    Args:
        mode: one of ``CONSENSUS_MODES``.
        k: for ``topk``: how many of the largest snippet logits per class are averaged
            (clipped to the number of snippets).
        num_segments: for ``weighted``: K, the number of learned segment weights. With S
            snippets, snippet ``t`` uses the weight of segment ``floor(t * K / S)`` and the sum
            is scaled by ``K / S``, so uniform weights ``1/K`` (the initial value) give the mean.
        num_classes: for ``gru``: the number of classes of its last dense layer.
        gru_units: for ``gru``: units of the GRU and of the hidden dense layer.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Example:
        >>> logits = keras.ops.ones((2, 3, 5))  # doctest: +SKIP
        >>> SegmentConsensus("avg")(logits).shape  # doctest: +SKIP
        (2, 5)

    Reference:
        Wang et al., "Temporal Segment Networks: Towards Good Practices for Deep Action
        Recognition", ECCV 2016; "Temporal Segment Networks for Action Recognition in Videos",
        TPAMI 2018.
    """

    def __init__(
        self,
        mode: str = "avg",
        k: int = 3,
        num_segments: int | None = None,
        num_classes: int | None = None,
        gru_units: int = 64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_consensus(mode)
        if k < 1:
            raise ConfigError(f"consensus k (model.consensus_k) must be >= 1, got {k}")
        if mode == "weighted" and (num_segments is None or num_segments < 1):
            raise ConfigError(f"consensus 'weighted' needs num_segments >= 1, got {num_segments}")
        if mode == "gru" and (num_classes is None or num_classes < 1):
            raise ConfigError(f"consensus 'gru' needs num_classes >= 1, got {num_classes}")
        self.mode = mode
        self.k = int(k)
        self.num_segments = num_segments
        self.num_classes = num_classes
        self.gru_units = int(gru_units)
        if mode == "gru":
            policy = self.dtype_policy
            self.gru = keras.layers.GRU(self.gru_units, dtype=policy, name="gru")
            self.hidden = keras.layers.Dense(self.gru_units, activation="relu", dtype=policy, name="gru_hidden")
            self.classifier = keras.layers.Dense(num_classes, dtype=policy, name="gru_classifier")

    def build(self, input_shape):
        if self.mode == "weighted":
            self.segment_weights = self.add_weight(
                name="segment_weights",
                shape=(self.num_segments,),
                initializer=keras.initializers.Constant(1.0 / self.num_segments),
            )
        elif self.mode == "attention":
            feature_dim = input_shape[0][-1]
            # Zero init: uniform attention at the start, i.e. the paper's average consensus.
            self.attention_kernel = self.add_weight(name="attention_kernel", shape=(feature_dim, 1), initializer="zeros")
            self.attention_bias = self.add_weight(name="attention_bias", shape=(1,), initializer="zeros")
        elif self.mode == "gru":
            self.gru.build(input_shape)
            self.hidden.build((input_shape[0], self.gru_units))
            self.classifier.build((input_shape[0], self.gru_units))

    def call(self, inputs):
        if self.mode == "attention":
            features, logits = (ops.cast(x, self.compute_dtype) for x in inputs)
        elif self.mode == "gru":
            features = ops.cast(inputs, self.compute_dtype)
            return self.classifier(self.hidden(self.gru(features)))
        else:
            logits = ops.cast(inputs, self.compute_dtype)
        if self.mode == "avg":
            return ops.mean(logits, axis=1)
        if self.mode == "max":
            return ops.max(logits, axis=1)
        if self.mode == "topk":
            # A mask over the sorted snippets rather than top_k(k=min(k, S)): shapes stay static
            # when S is unknown, which XLA (train.jit_compile) needs.
            num_snippets = ops.shape(logits)[1]
            descending = ops.flip(ops.sort(logits, axis=1), axis=1)
            keep = ops.arange(num_snippets)[None, :, None] < self.k
            count = ops.cast(ops.minimum(self.k, num_snippets), self.compute_dtype)
            return ops.sum(ops.where(keep, descending, 0.0), axis=1) / count
        if self.mode == "weighted":
            num_snippets = ops.shape(logits)[1]
            segment = (ops.arange(num_snippets) * self.num_segments) // num_snippets
            weights = ops.take(self.segment_weights, segment)
            scale = self.num_segments / ops.cast(num_snippets, self.compute_dtype)
            return ops.sum(logits * weights[None, :, None], axis=1) * scale
        if self.mode == "attention":
            scores = ops.matmul(features, self.attention_kernel) + self.attention_bias  # (B, S, 1)
            attention = ops.softmax(scores, axis=1)
            return ops.sum(attention * logits, axis=1)
        return logits  # identity

    def compute_output_shape(self, input_shape):
        if self.mode == "attention":
            return (input_shape[1][0], input_shape[1][-1])
        if self.mode == "gru":
            return (input_shape[0], self.num_classes)
        if self.mode == "identity":
            return tuple(input_shape)
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "k": self.k,
                "num_segments": self.num_segments,
                "num_classes": self.num_classes,
                "gru_units": self.gru_units,
            }
        )
        return config
