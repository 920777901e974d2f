"""TSN's crops, flips and input normalisation, as plain-Python references and graph functions.

The plain functions (``multiscale_crop_sizes``, ``fixed_crop_offsets``) give the candidate lists
in the reference order (``TSN_SEMANTICS.md``, "Training augmentation"; tsn-pytorch's
``GroupMultiScaleCrop``). The graph functions draw from exactly the same tables, with the frame
size read from the JPEG header at run time, so frames of any stored size work.

All crops of a clip share one window and one flip decision: every frame and both flow
components are cropped and flipped together, and a flip inverts the flow's x component on the
quantised byte (``x -> 255 - x``), in training and in the flipped test crops alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from tsn_keras.data.sampling import stateless_seed, uniform_ints
from tsn_keras.errors import ConfigError

# tsn-pytorch's fixed crop offsets in units of ((W - w) // 4, (H - h) // 4): the four corners and
# the centre, then (more_fix_crop) the edge centres and the four quarter points.
_CORNER_AND_CENTRE_STEPS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))
_MORE_FIX_CROP_STEPS = ((0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))

# A candidate crop size within this many pixels of the input size becomes the input size.
_SNAP_PIXELS = 3


def offset_steps(more_fix_crop: bool) -> tuple[tuple[int, int], ...]:
    """The fixed offset grid: 13 positions with ``more_fix_crop``, else 5 (corners and centre)."""
    return _CORNER_AND_CENTRE_STEPS + (_MORE_FIX_CROP_STEPS if more_fix_crop else ())


def _size_pairs(num_scales: int, max_distort: int) -> list[tuple[int, int]]:
    """(height index, width index) pairs of candidate sizes whose aspect distortion is allowed."""
    return [(i, j) for i in range(num_scales) for j in range(num_scales) if abs(i - j) <= max_distort]


def multiscale_crop_sizes(width: int, height: int, scales, max_distort: int,
                          input_size: int) -> list[tuple[int, int]]:
    """Candidate ``(w, h)`` crop sizes of the multi-scale crop, in the reference order.

    ``base = min(width, height)``; sizes are ``int(base * s)``, snapped to ``input_size`` when
    within 3 px, paired as (w = size_j, h = size_i) with ``|i - j| <= max_distort``. A size larger
    than the frame (only possible through the snap) is clamped to the frame.

    Example:
        >>> multiscale_crop_sizes(340, 256, (1, 0.875), 1, 224)
        [(256, 256), (224, 256), (256, 224), (224, 224)]
    """
    base = min(width, height)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < _SNAP_PIXELS else s for s in sizes]
    return [(min(sizes[j], width), min(sizes[i], height)) for i, j in _size_pairs(len(sizes), max_distort)]


def fixed_crop_offsets(width: int, height: int, crop_w: int, crop_h: int,
                       more_fix_crop: bool) -> list[tuple[int, int]]:
    """The ``(x, y)`` offsets of a ``crop_w`` x ``crop_h`` crop, in the reference order.

    Example:
        >>> fixed_crop_offsets(340, 256, 224, 224, more_fix_crop=False)
        [(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)]
    """
    w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
    return [(a * w_step, b * h_step) for a, b in offset_steps(more_fix_crop)]


# --- graph versions -----------------------------------------------------------------------

def random_crop_window(width, height, scales, max_distort: int, input_size: int, more_fix_crop: bool,
                       seed=None) -> tf.Tensor:
    """One multi-scale crop ``[x, y, w, h]`` (int32) for a frame of ``width`` x ``height``.

    The size is drawn uniformly from ``multiscale_crop_sizes`` and the offset uniformly from
    ``fixed_crop_offsets`` for that size, both computed here in the graph.
    """
    width, height = tf.cast(width, tf.int32), tf.cast(height, tf.int32)
    base = tf.cast(tf.minimum(width, height), tf.float64)
    sizes = tf.cast(tf.floor(base * tf.constant(tuple(scales), tf.float64)), tf.int32)
    sizes = tf.where(tf.abs(sizes - input_size) < _SNAP_PIXELS, input_size, sizes)
    pairs = tf.constant(_size_pairs(len(scales), max_distort), tf.int32)
    steps = tf.constant(offset_steps(more_fix_crop), tf.int32)
    seeds = (None, None) if seed is None else tf.unstack(
        tf.random.experimental.stateless_split(stateless_seed(seed), 2))
    pair = pairs[uniform_ints([], pairs.shape[0], seeds[0])]
    crop_h = tf.minimum(tf.gather(sizes, pair[0]), height)
    crop_w = tf.minimum(tf.gather(sizes, pair[1]), width)
    step = steps[uniform_ints([], steps.shape[0], seeds[1])]
    return tf.stack([step[0] * ((width - crop_w) // 4), step[1] * ((height - crop_h) // 4), crop_w, crop_h])


def scale_size(input_size: int) -> int:
    """Short side frames are scaled to before evaluation crops (256 for 224, as tsn-pytorch)."""
    return input_size * 256 // 224


def centre_crop_window(width, height, input_size: int) -> tf.Tensor:
    """The validation crop ``[x, y, c, c]`` in stored-frame pixels.

    tsn-pytorch scales the short side to ``input_size * 256 / 224`` and centre-crops
    ``input_size``; the same field of view taken before scaling is a ``c = short * 224/256``
    square, which is then resized to ``input_size``. For 340x256 frames and 224 this is the
    identical 224 crop at (58, 16).
    """
    width, height = tf.cast(width, tf.int32), tf.cast(height, tf.int32)
    short = tf.minimum(width, height)
    side = tf.cast(tf.round(tf.cast(short, tf.float64) * input_size / scale_size(input_size)), tf.int32)
    side = tf.clip_by_value(side, 1, short)
    return tf.stack([_centre(width, side), _centre(height, side), side, side])


def _centre(total, size) -> tf.Tensor:
    """torchvision's CenterCrop offset, ``round((total - size) / 2)`` (half to even)."""
    return tf.cast(tf.round(tf.cast(total - size, tf.float64) / 2.0), tf.int32)


def scaled_frame_size(width, height, input_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``(w, h)`` of a frame whose short side is scaled to ``scale_size`` (torchvision ``Resize``)."""
    width, height = tf.cast(width, tf.int32), tf.cast(height, tf.int32)
    scale = scale_size(input_size)
    short, long = tf.minimum(width, height), tf.maximum(width, height)
    scaled_long = tf.cast(tf.floor(tf.cast(long, tf.float64) * scale / tf.cast(short, tf.float64)), tf.int32)
    landscape = width >= height
    return tf.where(landscape, scaled_long, scale), tf.where(landscape, scale, scaled_long)


def multi_crop_boxes(width, height, input_size: int, num_crops: int) -> list[tuple[tf.Tensor, tf.Tensor, bool]]:
    """``(x, y, flipped)`` of each test crop of an ``input_size`` square in the scaled frame.

    1 crop: the centre. 3 crops: left, centre, right squares, vertically centred (top, centre,
    bottom for portrait frames). 10 crops: the 4 corners and the centre (the 5 fixed offsets),
    then the same 5 flipped, as in the paper's test protocol.
    """
    width, height = tf.cast(width, tf.int32), tf.cast(height, tf.int32)
    if num_crops == 1:
        return [(_centre(width, input_size), _centre(height, input_size), False)]
    if num_crops == 3:
        landscape = width >= height
        x_mid, y_mid = (width - input_size) // 2, (height - input_size) // 2
        x_end, y_end = width - input_size, height - input_size
        starts = (tf.zeros([], tf.int32), tf.where(landscape, x_mid, y_mid), tf.where(landscape, x_end, y_end))
        return [(tf.where(landscape, along, x_mid), tf.where(landscape, y_mid, along), False) for along in starts]
    if num_crops == 10:
        w_step, h_step = (width - input_size) // 4, (height - input_size) // 4
        corners = [(a * w_step, b * h_step) for a, b in offset_steps(False)]
        return [(x, y, False) for x, y in corners] + [(x, y, True) for x, y in corners]
    raise ConfigError(f"num_crops must be one of 1, 3, 10; got {num_crops!r}")


def flip_frames(frames: dict[str, tf.Tensor], flip, flow_x_key: str | None,
                reverse_channels: tuple[str, ...] = ()) -> dict[str, tf.Tensor]:
    """Mirror ``[..., H, W, C]`` frames when ``flip`` (a bool, or a scalar bool tensor).

    The flow x component changes sign under a mirror; on the quantised byte (0..255, zero
    motion at 128) that is ``255 - q``, for uint8 or float values of that byte. The keys in
    ``reverse_channels`` also get their colour channels reversed (RGB -> BGR), in the same
    ``tf.reverse`` as the mirror: one pass over the pixels instead of two.
    """
    def oriented(key, value, mirror):
        axes = ([-2] if mirror else []) + ([-1] if key in reverse_channels else [])
        value = tf.reverse(value, axis=axes) if axes else value
        if mirror and key == flow_x_key:
            return 255 - value if value.dtype == tf.uint8 else 255.0 - value
        return value

    if isinstance(flip, bool):
        return {k: oriented(k, v, flip) for k, v in frames.items()}
    return {k: tf.cond(flip, lambda k=k, v=v: oriented(k, v, True), lambda k=k, v=v: oriented(k, v, False))
            for k, v in frames.items()}


# --- normalisation ------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """``out = (x - mean) * scale`` per channel (in output channel order) on 0..255 input."""

    bgr: bool
    mean: tuple[float, float, float]
    scale: tuple[float, float, float]

    @property
    def flow_scale(self) -> float:
        """Flow is ``(q - 128) * flow_scale``: the preset's mean channel scale."""
        return sum(self.scale) / 3


_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

PRESETS: dict[str, Preset] = {
    # BN-Inception converted from Caffe: BGR, 0..255, mean (104, 117, 128), std 1 (TSN_SEMANTICS.md).
    "caffe_bgr": Preset(True, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0)),
    # keras.applications "caffe" mode (ResNet50, ...): BGR minus the ImageNet means.
    "keras_caffe": Preset(True, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    # keras.applications "tf" mode (InceptionV3, MobileNetV2, ...): RGB scaled to [-1, 1].
    "keras_tf": Preset(False, (127.5, 127.5, 127.5), (1 / 127.5,) * 3),
    # keras.applications "torch" mode: RGB / 255, ImageNet mean and std.
    "keras_torch": Preset(False, tuple(255.0 * m for m in _TORCH_MEAN),
                          tuple(1 / (255.0 * s) for s in _TORCH_STD)),
    "raw": Preset(False, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # Google's EfficientNet-Lite (efficientnet/lite/efficientnet_lite_builder.py): RGB, (x - 127) / 128.
    "tf_lite": Preset(False, (127.0, 127.0, 127.0), (1 / 128,) * 3),
}
NORMALIZATIONS: tuple[str, ...] = tuple(PRESETS)

_FLOW_ZERO = 128.0  # the quantised byte of zero motion


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"normalization must be one of {', '.join(NORMALIZATIONS)}; got {name!r}") from None


def normalize(frames, modality: str, preset: str, channels_reversed: bool = False) -> tf.Tensor:
    """Normalise frames of 0..255 values for the backbone; returns float32.

    Args:
        frames: ``rgb``: ``[..., 3]`` RGB. ``rgb_diff``: ``[..., L+1, H, W, 3]`` consecutive RGB
            frames; the result is ``[..., H, W, 3L]``, the L differences of the normalised frames
            (later minus earlier). ``flow``/``warped_flow``: quantised flow bytes of any shape,
            mapped to ``(q - 128) * scale``.
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.
        preset: one of ``NORMALIZATIONS``.
        channels_reversed: the colour channels of ``frames`` are already in the preset's order
            (BGR presets: reversed by ``flip_frames``).
    """
    spec = get_preset(preset)
    frames = tf.cast(frames, tf.float32)
    if modality in ("flow", "warped_flow"):
        return (frames - _FLOW_ZERO) * spec.flow_scale
    if modality not in ("rgb", "rgb_diff"):
        raise ConfigError(f"modality must be one of rgb, rgb_diff, flow, warped_flow; got {modality!r}")
    if spec.bgr and not channels_reversed:
        frames = tf.reverse(frames, axis=[-1])
    frames = _channel_affine(frames, spec.mean, spec.scale)
    if modality == "rgb":
        return frames
    diffs = frames[..., 1:, :, :, :] - frames[..., :-1, :, :, :]  # [..., L, H, W, 3]
    rank = diffs.shape.rank
    # Move the L axis next to the channels so each difference keeps its 3 channels together.
    order = [*range(rank - 4), rank - 3, rank - 2, rank - 4, rank - 1]
    diffs = tf.transpose(diffs, order)
    shape = tf.shape(diffs)
    length = diffs.shape[-2] if diffs.shape[-2] is not None else shape[-2]
    return tf.reshape(diffs, tf.concat([shape[:-2], [length * 3]], 0))


def _channel_affine(frames, mean, scale) -> tf.Tensor:
    """``(frames - mean) * scale`` per colour channel of ``[..., W, 3]`` float frames.

    Broadcasting a 3-vector over the last axis is Eigen's slow path (measured 4x slower than a
    scalar op, and slower than the JPEG decode itself); the same values as a row of W*3 over
    the flattened ``[-1, W*3]`` frames take the fast one.
    """
    if len(set(mean)) == 1 and len(set(scale)) == 1:
        frames = frames - mean[0] if mean[0] else frames
        return frames * scale[0] if scale[0] != 1 else frames
    shape = tf.shape(frames)
    rows = tf.reshape(frames, [-1, shape[-2] * 3])
    rows = rows - tf.tile(tf.constant(mean, tf.float32), [shape[-2]])
    if any(s != 1 for s in scale):
        rows = rows * tf.tile(tf.constant(scale, tf.float32), [shape[-2]])
    out = tf.reshape(rows, shape)
    out.set_shape(frames.shape)
    return out
