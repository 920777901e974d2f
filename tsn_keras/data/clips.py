"""From the sampled JPEG strings of one video to model input: decode, crop, flip, normalise.

``ClipSpec`` holds everything that decides what a clip looks like (modality, mode, K or T,
L, input size, augmentation, normalisation). Its two graph methods are the whole per-clip work:

- ``frame_indices(count, seed)``: which frames to read (``sampling.sample_offsets`` +
  ``snippet_frames``), so that the readers fetch only those;
- ``make_views(jpegs, seed)``: ``[num_keys, n]`` JPEG strings of the sampled frames -> float32
  ``[K, S, S, C]`` (train/val) or ``[crops * T, S, S, C]`` crop-major (test).

Train and val decode only the crop window (``decode_and_crop_jpeg``); test decodes whole frames
once and cuts all crops from them. Both read paths of ``pipeline.make_dataset`` and the
SavedModel export call these same functions, so they give identical tensors.

With ``device_resize`` (RGB, train/val) the host stops after the decode: a clip is its uint8
crops, their size and its flip decision, and ``device_views`` (the first step on the
accelerator, ``models.layers.DeviceClipViews``) mirrors, resizes and normalises whole batches
there. The bilinear resize to S x S, flip and normalisation were about half of the host's CPU
time per clip; ``device_views`` computes TensorFlow's half-pixel bilinear weights itself, in the same
float32 operations in the same order, so its views equal the host's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from tsn_keras.data import augment, sampling
from tsn_keras.errors import ConfigError
from tsn_keras.vocab import (
    AUTO,
    CROP_COUNTS,
    DEFAULT_SCALES,
    MODALITIES,
    MODALITY_KEYS,
    MODES,
    check_choice,
    frames_per_snippet,
    input_channels,
    is_flow,
    resolve_new_length,
)

# libjpeg's accurate integer IDCT, the default of PIL and OpenCV that tsn-pytorch and the
# converter use; TensorFlow's own default is the faster, less exact one.
_DCT_METHOD = "INTEGER_ACCURATE"
# Up to this many frames per clip the decodes are separate graph ops (run in parallel, no loop
# overhead); beyond, e.g. 25 test snippets of 5 flow fields, a loop keeps the graph small.
_MAX_UNROLLED = 32


@dataclass(frozen=True)
class ClipSpec:
    """What one clip (train/val) or one video's test views look like: the typed spec of ``make_dataset``.

    Build one by hand, from a recipe (``from_config``), or from a trained model's protocol
    (``evaluation.test_clip_spec``).

    Args:
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.
        mode: ``train`` (random segment sampling, multi-scale crop, flip), ``val`` (segment
            centres, centre crop) or ``test`` (``num_snippets`` snippets x ``num_crops``).
        num_segments: K, the segments of a train/val clip.
        new_length: L; ``None`` is the modality's default (1 for rgb, 5 otherwise). RGB
            difference reads L+1 frames and gives L differences.
        input_size: side S of the square network input.
        scales, max_distort, more_fix_crop, flip: training augmentation; ``scales=None`` is the
            modality's default.
        normalization: a preset of ``vocab.NORMALIZATIONS`` (not ``"auto"``: resolve it first).
        num_snippets, num_crops: the test protocol (T = 25; 1, 3 or 10 crops).
        device_resize: rgb train/val only: clips are ``{"crops": uint8 [K, h, w, 3] RGB,
            "crop_size": int32 [2], "flip": bool}``, to be mirrored, resized and normalised on
            the accelerator by ``device_views``; batches are zero-padded to the largest crop.

    Example:
        >>> spec = ClipSpec("flow", "train", num_segments=3, input_size=112)  # doctest: +SKIP
        >>> spec.output_shape  # doctest: +SKIP
        (3, 112, 112, 10)
    """

    modality: str
    mode: str = "train"
    num_segments: int = 3
    new_length: int | None = None
    input_size: int = 224
    scales: tuple[float, ...] | None = None
    max_distort: int = 1
    more_fix_crop: bool = True
    flip: bool = True
    normalization: str = "caffe_bgr"
    num_snippets: int = 25
    num_crops: int = 1
    device_resize: bool = False

    def __post_init__(self) -> None:
        check_choice("modality", self.modality, MODALITIES)
        check_choice("mode", self.mode, MODES)
        # Resolve the modality's defaults once, so every reader of the spec sees numbers.
        object.__setattr__(self, "new_length", resolve_new_length(self.modality, self.new_length))
        scales = DEFAULT_SCALES[self.modality] if self.scales is None else tuple(self.scales)
        object.__setattr__(self, "scales", scales)
        for name in ("num_segments", "input_size", "num_snippets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ConfigError(f"scales must be a non-empty list of numbers in (0, 1], got {list(self.scales)}")
        if self.max_distort < 0:
            raise ConfigError(f"max_distort must be >= 0, got {self.max_distort}")
        check_choice("num_crops", self.num_crops, CROP_COUNTS)
        if self.normalization == AUTO:
            raise ConfigError("normalization 'auto' must be resolved to the backbone's preset first "
                              "(vocab.backbone_preset)")
        augment.get_preset(self.normalization)
        if self.device_resize and (self.modality != "rgb" or self.mode == "test"):
            raise ConfigError(f"device_resize is for rgb clips in train or val mode, not {self.modality} in "
                              f"{self.mode} mode")

    @classmethod
    def from_config(cls, data, mode: str, normalization: str, *, num_snippets: int = 25,
                    num_crops: int = 1) -> ClipSpec:
        """The spec of a recipe's ``data`` section (``config.DataConfig``) in ``mode``.

        ``data.device_resize`` applies in train and val mode when it is ``True`` (a resolved
        recipe's; ``"auto"`` is resolved by ``training.resolved``).
        """
        return cls(modality=data.modality, mode=mode, num_segments=data.num_segments, new_length=data.new_length,
                   input_size=data.input_size, scales=data.scales, max_distort=data.max_distort,
                   more_fix_crop=data.more_fix_crop, flip=data.flip, normalization=normalization,
                   num_snippets=num_snippets, num_crops=num_crops,
                   device_resize=data.device_resize is True and mode != "test")

    @property
    def keys(self) -> tuple[str, ...]:
        """Stored feature lists read, in channel order (flow: x then y)."""
        return MODALITY_KEYS[self.modality]

    @property
    def is_flow(self) -> bool:
        return is_flow(self.modality)

    @property
    def snippets(self) -> int:
        """Snippets per clip: K in train/val, T in test."""
        return self.num_snippets if self.mode == "test" else self.num_segments

    @property
    def num_views(self) -> int:
        """Network inputs per clip: K in train/val, ``num_crops * T`` (crop-major) in test."""
        return self.snippets * (self.num_crops if self.mode == "test" else 1)

    @property
    def frames_per_snippet(self) -> int:
        return frames_per_snippet(self.modality, self.new_length)

    @property
    def frames_per_clip(self) -> int:
        return self.snippets * self.frames_per_snippet

    @property
    def channels(self) -> int:
        return input_channels(self.modality, self.new_length)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """The shape of the network input of one clip (after ``device_views`` with ``device_resize``)."""
        return (self.num_views, self.input_size, self.input_size, self.channels)

    def ensure_views(self, views):
        """``make_views``' output with its static shapes set (a dict of crops and size with ``device_resize``)."""
        if self.device_resize:
            return {"crops": tf.ensure_shape(views["crops"], [self.num_views, None, None, self.channels]),
                    "crop_size": tf.ensure_shape(views["crop_size"], [2]), "flip": tf.ensure_shape(views["flip"], [])}
        return tf.ensure_shape(views, self.output_shape)

    def empty_views(self):
        """A placeholder of ``make_views``' structure, for a clip that could not be read."""
        if self.device_resize:
            return {"crops": tf.zeros([self.num_views, 1, 1, self.channels], tf.uint8),
                    "crop_size": tf.ones([2], tf.int32), "flip": tf.constant(False)}
        return tf.zeros(self.output_shape)

    # --- graph functions ---------------------------------------------------------------

    def frame_indices(self, count, seed=None) -> tf.Tensor:
        """int32 ``[K * frames_per_snippet]``: snippet by snippet, the frames to read."""
        offsets = sampling.sample_offsets(count, self.snippets, self.frames_per_snippet, self.mode, seed)
        return tf.reshape(sampling.snippet_frames(offsets, self.frames_per_snippet, count), [-1])

    def make_views(self, jpegs, seed=None) -> tf.Tensor:
        """float32 ``output_shape`` from the ``[len(keys), frames_per_clip]`` sampled JPEG strings."""
        jpegs = tf.ensure_shape(tf.convert_to_tensor(jpegs, tf.string), [len(self.keys), self.frames_per_clip])
        # All frames of a video share one size; read it from the first JPEG's header.
        size = tf.io.extract_jpeg_shape(jpegs[0, 0])
        height, width = size[0], size[1]
        if self.mode == "test":
            return tf.ensure_shape(self._test_views(jpegs, width, height), self.output_shape)
        if self.mode == "train":
            crop_seed, flip_seed = (None, None) if seed is None else (
                tf.random.experimental.stateless_fold_in(sampling.stateless_seed(seed), i) for i in (1, 2))
            window = augment.random_crop_window(width, height, self.scales, self.max_distort, self.input_size,
                                                self.more_fix_crop, crop_seed)
            flip = sampling.uniform_ints([], 2, flip_seed) > 0 if self.flip else False
        else:
            window, flip = augment.centre_crop_window(width, height, self.input_size), False
        if self.device_resize:
            # The mirror and the colour order too are left to the device, where they are a
            # choice of gather indices and part of the normalisation: the host only decodes.
            return {"crops": self._decode(jpegs[0], 3, window), "crop_size": tf.stack([window[3], window[2]]),
                    "flip": tf.convert_to_tensor(flip)}
        # Mirror and colour order on the decoded uint8 crops, before the resize: both commute
        # with bilinear resizing (and so does the flow's 255 - x), and the crops are 4x smaller
        # than the float frames the resize makes.
        crops = self._orient({key: self._decode(jpegs[i], self._key_channels(key), window)
                              for i, key in enumerate(self.keys)}, flip)
        frames = {key: self._resize(value, self.input_size, self.input_size) for key, value in crops.items()}
        return tf.ensure_shape(self._assemble(frames), self.output_shape)

    # --- helpers -----------------------------------------------------------------------

    def _orient(self, frames: dict[str, tf.Tensor], flip) -> dict[str, tf.Tensor]:
        """The flip (flow x inverted) and, for BGR presets, RGB -> BGR, in one reverse per key."""
        bgr = augment.get_preset(self.normalization).bgr and not self.is_flow
        return augment.flip_frames(frames, flip, self.keys[0] if self.is_flow else None,
                                   reverse_channels=("rgb",) if bgr else ())

    @staticmethod
    def _key_channels(key: str) -> int:
        return 3 if key == "rgb" else 1  # flow components are grayscale JPEGs

    def _decode(self, jpegs, channels: int, window=None) -> tf.Tensor:
        """uint8 ``[n, h, w, c]``; with ``window = [x, y, w, h]`` only that window is decoded."""
        if window is not None:
            crop = tf.stack([window[1], window[0], window[3], window[2]])

            def decode(jpeg):
                return tf.image.decode_and_crop_jpeg(jpeg, crop, channels=channels, dct_method=_DCT_METHOD)
        else:
            def decode(jpeg):
                return tf.io.decode_jpeg(jpeg, channels=channels, dct_method=_DCT_METHOD)
        if self.frames_per_clip <= _MAX_UNROLLED:
            return tf.stack([decode(jpegs[i]) for i in range(self.frames_per_clip)])
        return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8))

    @staticmethod
    def _resize(frames, height, width) -> tf.Tensor:
        """Bilinear resize of uint8 ``[n, h, w, c]`` to float32, skipped when the size already matches.

        Casting first is faster: TensorFlow's bilinear kernel takes twice as long on uint8 input
        as the cast and the float resize together.
        """
        frames = tf.cast(frames, tf.float32)
        shape = tf.shape(frames)
        same = tf.logical_and(tf.equal(shape[1], height), tf.equal(shape[2], width))
        return tf.cond(same, lambda: frames, lambda: tf.image.resize(frames, tf.stack([height, width])))

    def device_views(self, crops, crop_size, flip=None) -> tf.Tensor:
        """float32 ``[B, K, S, S, 3]`` network input from a batch of ``device_resize`` clips.

        ``crops``: uint8 ``[B, K, P, Q, 3]`` RGB, clip b's crops in its top-left ``crop_size[b]``
        (h, w) corner (zero padding around it is never read); ``flip``: bool ``[B]``, mirror
        clip b (``None``: none). The mirror is a choice of column indices (the host mirrors the
        uint8 crop before resizing: the same pixels) and the preset's colour order is applied
        by the normalisation. The bilinear resize follows TensorFlow's ``ResizeBilinear`` with
        half-pixel centres, which the host path uses: the same sample positions, clamped
        indices, lerp weights and float32 operations in the same order, so the result equals
        the host's ``make_views`` bit for bit. A crop that is already S x S is resized with zero
        weights, i.e. copied, as the host skips it.
        """
        crops = tf.convert_to_tensor(crops)
        shape = tf.shape(crops)
        size = self.input_size
        frames = tf.cast(tf.reshape(crops, tf.concat([[-1], shape[2:]], 0)), tf.float32)  # [B*K, P, Q, 3]
        # Every crop of a clip shares its clip's size and mirror.
        sizes = tf.repeat(tf.cast(crop_size, tf.int32), shape[1], axis=0)
        y_low, y_high, y_lerp = _bilinear_axis(sizes[:, 0], size)
        x_low, x_high, x_lerp = _bilinear_axis(sizes[:, 1], size)
        if flip is not None:
            mirrored = tf.repeat(tf.convert_to_tensor(flip, tf.bool), shape[1], axis=0)[:, None]
            last = sizes[:, 1:] - 1
            x_low, x_high = tf.where(mirrored, last - x_low, x_low), tf.where(mirrored, last - x_high, x_high)
        top, bottom = (tf.gather(frames, rows, axis=1, batch_dims=1) for rows in (y_low, y_high))
        x_weight, y_weight = x_lerp[:, None, :, None], y_lerp[:, :, None, None]

        def across(rows):
            left = tf.gather(rows, x_low, axis=2, batch_dims=1)
            return left + (tf.gather(rows, x_high, axis=2, batch_dims=1) - left) * x_weight

        top, bottom = across(top), across(bottom)
        resized = top + (bottom - top) * y_weight
        views = augment.normalize(resized, "rgb", self.normalization)
        return tf.reshape(views, tf.concat([shape[:2], [size, size, self.channels]], 0))

    def _test_views(self, jpegs, width, height) -> tf.Tensor:
        size = self.input_size
        scaled_w, scaled_h = augment.scaled_frame_size(width, height, size)
        frames = {key: self._resize(self._decode(jpegs[i], self._key_channels(key)), scaled_h, scaled_w)
                  for i, key in enumerate(self.keys)}
        frames = self._orient(frames, False)  # the colour order once, before cutting the crops
        flow_x = self.keys[0] if self.is_flow else None
        views = []
        for x, y, flipped in augment.multi_crop_boxes(scaled_w, scaled_h, size, self.num_crops):
            crop = {key: tf.ensure_shape(value[:, y:y + size, x:x + size, :], [None, size, size, None])
                    for key, value in frames.items()}
            views.append(self._assemble(augment.flip_frames(crop, flipped, flow_x)))
        return tf.concat(views, axis=0)  # crop-major: [crop 0: snippets 0..T-1, crop 1: ...]

    def _assemble(self, frames: dict[str, tf.Tensor]) -> tf.Tensor:
        """Per-snippet channel stacking and normalisation: ``[K * F, S, S, c]`` -> ``[K, S, S, C]``."""
        k, f, s = self.snippets, self.frames_per_snippet, self.input_size
        if self.modality == "rgb":
            return augment.normalize(frames["rgb"], "rgb", self.normalization, channels_reversed=True)
        if self.modality == "rgb_diff":
            return augment.normalize(tf.reshape(frames["rgb"], [k, f, s, s, 3]), "rgb_diff", self.normalization,
                                     channels_reversed=True)
        x_key, y_key = self.keys
        x = tf.reshape(frames[x_key], [k, f, s, s])
        y = tf.reshape(frames[y_key], [k, f, s, s])
        # tsn-pytorch's channel order: x0, y0, x1, y1, ...
        stacked = tf.transpose(tf.stack([x, y], axis=-1), [0, 2, 3, 1, 4])
        return augment.normalize(tf.reshape(stacked, [k, s, s, 2 * f]), self.modality, self.normalization)


def _bilinear_axis(in_sizes, out_size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Lower and upper source indices and lerp weights ``[N, out_size]`` along one axis, for
    ``N`` inputs of ``in_sizes`` pixels: TensorFlow's ``HalfPixelScaler`` and
    ``compute_interpolation_weights`` (resize_bilinear_op.cc), in float32 as there."""
    scale = tf.cast(in_sizes, tf.float32) / float(out_size)
    position = (tf.range(out_size, dtype=tf.float32)[None, :] + 0.5) * scale[:, None] - 0.5
    floor = tf.floor(position)
    low = tf.maximum(tf.cast(floor, tf.int32), 0)
    high = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), tf.cast(in_sizes, tf.int32)[:, None] - 1)
    return low, high, position - floor
