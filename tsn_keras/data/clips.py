"""From the sampled JPEG strings of one video to model input: decode, crop, flip, normalise.

``ClipSpec`` holds everything that decides what a clip looks like (modality, mode, K or T,
L, input size, augmentation, normalisation). Its two graph methods are the whole per-clip work:

- ``frame_indices(count, seed)``: which frames to read (``sampling.sample_offsets`` +
  ``snippet_frames``), so that the readers fetch only those;
- ``views(jpegs, seed)``: ``[num_keys, n]`` JPEG strings of the sampled frames -> float32
  ``[K, S, S, C]`` (train/val) or ``[crops * T, S, S, C]`` crop-major (test).

Train and val decode only the crop window (``decode_and_crop_jpeg``); test decodes whole frames
once and cuts all crops from them. Both read paths of ``pipeline.make_dataset`` and the
SavedModel export call these same functions, so they give identical tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from tsn_keras.data import augment, sampling
from tsn_keras.data.records import MODALITY_KEYS
from tsn_keras.errors import ConfigError

CROP_COUNTS = (1, 3, 10)
# libjpeg's accurate integer IDCT, the default of PIL and OpenCV that tsn-pytorch and the
# converter use; TensorFlow's own default is the faster, less exact one.
_DCT_METHOD = "INTEGER_ACCURATE"
# Up to this many frames per clip the decodes are separate graph ops (run in parallel, no loop
# overhead); beyond, e.g. 25 test snippets of 5 flow fields, a loop keeps the graph small.
_MAX_UNROLLED = 32


@dataclass(frozen=True)
class ClipSpec:
    """What one clip (train/val) or one video's test views look like.

    Args:
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.
        mode: ``train``, ``val`` or ``test``.
        num_segments: K in train/val, T (snippets) in test.
        new_length: L (1 for rgb; RGB difference reads L+1 frames and gives L differences).
        input_size: side S of the square network input.
        scales, max_distort, more_fix_crop, flip: training augmentation.
        normalization: a preset of ``augment.NORMALIZATIONS``.
        num_crops: test crops, 1, 3 or 10.
    """

    modality: str
    mode: str
    num_segments: int
    new_length: int
    input_size: int = 224
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    more_fix_crop: bool = True
    flip: bool = True
    normalization: str = "caffe_bgr"
    num_crops: int = 1

    def __post_init__(self) -> None:
        if self.modality not in MODALITY_KEYS:
            raise ConfigError(f"modality must be one of {', '.join(MODALITY_KEYS)}; got {self.modality!r}")
        if self.mode not in sampling.MODES:
            raise ConfigError(f"mode must be one of {', '.join(sampling.MODES)}; got {self.mode!r}")
        for name in ("num_segments", "new_length", "input_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.modality == "rgb" and self.new_length != 1:
            raise ConfigError(f"new_length must be 1 for modality rgb (one frame per snippet), "
                              f"got {self.new_length}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ConfigError(f"scales must be a non-empty list of numbers in (0, 1], got {list(self.scales)}")
        if self.max_distort < 0:
            raise ConfigError(f"max_distort must be >= 0, got {self.max_distort}")
        if self.num_crops not in CROP_COUNTS:
            raise ConfigError(f"num_crops must be one of 1, 3, 10; got {self.num_crops!r}")
        augment.get_preset(self.normalization)

    @property
    def keys(self) -> tuple[str, ...]:
        """Stored feature lists read, in channel order (flow: x then y)."""
        return MODALITY_KEYS[self.modality]

    @property
    def is_flow(self) -> bool:
        return self.modality in ("flow", "warped_flow")

    @property
    def frames_per_snippet(self) -> int:
        return self.new_length + 1 if self.modality == "rgb_diff" else self.new_length

    @property
    def frames_per_clip(self) -> int:
        return self.num_segments * self.frames_per_snippet

    @property
    def channels(self) -> int:
        return {"rgb": 3, "rgb_diff": 3 * self.new_length}.get(self.modality, 2 * self.new_length)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        views = self.num_segments * (self.num_crops if self.mode == "test" else 1)
        return (views, self.input_size, self.input_size, self.channels)

    # --- graph functions ---------------------------------------------------------------

    def frame_indices(self, count, seed=None) -> tf.Tensor:
        """int32 ``[K * frames_per_snippet]``: snippet by snippet, the frames to read."""
        offsets = sampling.sample_offsets(count, self.num_segments, self.frames_per_snippet, self.mode, seed)
        return tf.reshape(sampling.snippet_frames(offsets, self.frames_per_snippet, count), [-1])

    def views(self, jpegs, seed=None) -> tf.Tensor:
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
        k, f, s = self.num_segments, self.frames_per_snippet, self.input_size
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
