"""``FoldedTimeDistributed``: one backbone call on all snippets of a batch.

Keras 3's ``TimeDistributed`` loops over the time axis in Python (or vectorises a map when S is
unknown); TSN needs the backbone to run once on ``B*S`` frames, so that BatchNorm sees them all
and the graph does not grow with S.
"""

from __future__ import annotations

import keras
from keras import ops


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
        >>> folded = FoldedTimeDistributed(backbones.build_backbone("tiny", (64, 64, 3)))  # doctest: +SKIP
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
