"""``FoldedTimeDistributed``: one backbone call on all snippets of a batch; ``DeviceClipViews``:
the resize and normalisation of training clips, on the accelerator.

Keras 3's ``TimeDistributed`` loops over the time axis in Python (or vectorises a map when S is
unknown); TSN needs the backbone to run once on ``B*S`` frames, so that BatchNorm sees them all
and the graph does not grow with S.
"""

from __future__ import annotations

import keras
from keras import ops

from tsn_keras.data.clips import ClipSpec


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


@keras.saving.register_keras_serializable(package="tsn_keras")
class DeviceClipViews(keras.layers.Layer):
    """The accelerator's half of the input pipeline: resize and normalise batches of uint8 crops.

    Takes the clips of ``make_dataset`` with ``ClipSpec(device_resize=True)`` — ``{"crops":
    uint8 (B, K, P, Q, 3), "crop_size": int32 (B, 2), "flip": bool (B,)}`` — and returns the float32
    ``(B, K, S, S, 3)`` views the host path would have made (bit for bit; see
    ``ClipSpec.device_views``). Put it in front of a TSN for training (``tsn.with_device_views``),
    so that the host only decodes the crop windows.

    Args:
        input_size: side S of the network input.
        normalization: the model's normalisation preset (``vocab.NORMALIZATIONS``).
        **kwargs: standard layer arguments.

    Example:
        >>> views = DeviceClipViews(224, "caffe_bgr")(next(iter(dataset))[0])  # doctest: +SKIP
    """

    def __init__(self, input_size: int, normalization: str, **kwargs):
        super().__init__(**kwargs)
        self.input_size = input_size
        self.normalization = normalization
        self._spec = ClipSpec("rgb", "train", input_size=input_size, normalization=normalization, device_resize=True)

    def call(self, inputs):
        return self._spec.device_views(inputs["crops"], inputs["crop_size"], inputs.get("flip"))

    def compute_output_shape(self, input_shape):
        crops = input_shape["crops"]
        return (crops[0], crops[1], self.input_size, self.input_size, 3)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_size": self.input_size, "normalization": self.normalization}
