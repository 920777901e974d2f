"""Model inputs as pictures a person reads: un-normalising with the model's preset, per modality.

A TSN's input is normalised (``data.augment.normalize``): RGB with the preset's mean, scale and
colour order, flow as ``(q - 128) * s`` on the quantised byte, RGB difference as differences of
normalised frames. Visualisations work in *pixel units* instead, the values the stored frames
hold (RGB 0..255, flow bytes 0..255, RGB differences -255..255), where one step size, one
jitter and one clipping range mean the same thing for every preset. ``InputScale`` is that
per-channel affine map; ``snippet_pictures`` cuts a snippet in pixel units into the pictures
of the paper's Fig. 3: a colour image for RGB, the x and y maps of each of the L stacked flow
fields in grayscale, the L differences for RGB difference.

Example:
    >>> scale = input_scale("flow", "keras_tf", new_length=5)  # doctest: +SKIP
    >>> pixels = scale.to_pixels(model_input)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfrecords_tools.flow import dequantize_flow, flow_to_color
from tsn_keras.data.augment import get_preset
from tsn_keras.vocab import input_channels, is_flow

# The byte of zero motion in the quantised flow (TSN_SEMANTICS.md) and mid-grey for RGB.
NEUTRAL_BYTE = 128.0
# Gap between the maps of one snippet in a mosaic, in pixels.
MOSAIC_GAP = 2


@dataclass(frozen=True)
class InputScale:
    """``model input = (pixels - offset) * scale`` per channel, with the pixels' valid range.

    Args:
        offset, scale: ``(C,)`` arrays in the model's channel order.
        low, high: ``(C,)`` the range pixel values can take (what a stored frame can hold).
        neutral: ``(C,)`` the picture of "nothing": mid-grey, zero motion, zero difference.
    """

    offset: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray
    neutral: np.ndarray

    def to_input(self, pixels):
        """Pixel units -> the normalised model input (NumPy arrays or tensors, channels last)."""
        return (pixels - self.offset) * self.scale

    def to_pixels(self, inputs) -> np.ndarray:
        """The normalised model input -> pixel units."""
        return np.asarray(inputs, np.float32) / self.scale + self.offset


def input_scale(modality: str, normalization: str, new_length: int) -> InputScale:
    """The ``InputScale`` of a model's input (its modality, L and normalisation preset)."""
    preset = get_preset(normalization)
    channels = input_channels(modality, new_length)
    if is_flow(modality):
        full = np.full(channels, 1.0, np.float32)
        return InputScale(full * NEUTRAL_BYTE, full * preset.flow_scale, full * 0.0, full * 255.0,
                          full * NEUTRAL_BYTE)
    mean, scale = np.asarray(preset.mean, np.float32), np.asarray(preset.scale, np.float32)
    if modality == "rgb":
        return InputScale(mean, scale, np.zeros(3, np.float32), np.full(3, 255.0, np.float32),
                          np.full(3, NEUTRAL_BYTE, np.float32))
    # RGB difference: differences of normalised frames, so the means cancel and only scales remain.
    repeats = channels // 3
    zeros = np.zeros(channels, np.float32)
    return InputScale(zeros, np.tile(scale, repeats), zeros - 255.0, zeros + 255.0, zeros)


def _rgb_order(image: np.ndarray, normalization: str) -> np.ndarray:
    """Channels in RGB order for display (BGR presets hold them reversed)."""
    return image[..., ::-1] if get_preset(normalization).bgr else image


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def snippet_pictures(pixels: np.ndarray, modality: str, normalization: str) -> list[tuple[str, np.ndarray]]:
    """The pictures of one snippet ``(H, W, C)`` in pixel units, labelled, as ``uint8``.

    RGB: one RGB image. Flow and warped flow: ``x0, y0, x1, y1, ...`` grayscale maps (128 is
    no motion, as stored). RGB difference: ``d0, d1, ...`` RGB images of ``128 + d / 2``.
    """
    pixels = np.asarray(pixels, np.float32)
    if modality == "rgb":
        return [("rgb", _to_uint8(_rgb_order(pixels, normalization)))]
    if is_flow(modality):
        return [(f"{'xy'[c % 2]}{c // 2}", _to_uint8(pixels[..., c])) for c in range(pixels.shape[-1])]
    return [(f"d{i}", _to_uint8(NEUTRAL_BYTE + _rgb_order(pixels[..., 3 * i:3 * i + 3], normalization) / 2))
            for i in range(pixels.shape[-1] // 3)]


def mosaic(pictures: list[tuple[str, np.ndarray]], modality: str) -> np.ndarray:
    """One RGB ``uint8`` image of a snippet's pictures, laid out as in the paper's Fig. 3.

    Flow: the x maps in the top row, the y maps below, one column per stacked field. RGB
    difference: the differences in a row. RGB: the image itself.
    """
    images = [image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1) for _, image in pictures]
    if len(images) == 1:
        return images[0]
    rows = [images[0::2], images[1::2]] if is_flow(modality) else [images]
    height, width = images[0].shape[:2]
    columns = len(rows[0])
    canvas = np.full((len(rows) * (height + MOSAIC_GAP) - MOSAIC_GAP, columns * (width + MOSAIC_GAP) - MOSAIC_GAP, 3),
                     255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + MOSAIC_GAP), c * (width + MOSAIC_GAP)
            canvas[y:y + height, x:x + width] = image
    return canvas


def flow_picture(pixels: np.ndarray) -> np.ndarray:
    """The middle field of a flow snippet ``(H, W, 2L)`` in pixel units, colour-coded (RGB ``uint8``).

    Hue is the direction and brightness the speed, as ``tsn inspect`` shows flow.
    """
    middle = (pixels.shape[-1] // 2) // 2
    flow_x = dequantize_flow(np.asarray(pixels[..., 2 * middle], np.float32))
    flow_y = dequantize_flow(np.asarray(pixels[..., 2 * middle + 1], np.float32))
    return flow_to_color(flow_x, flow_y)
