"""The TensorFlow-free half of the TV-L1 engine: OpenCV's parameters and the tables derived from them.

The TensorFlow solver (:mod:`tfrecords_tools.tvl1_tf`) reproduces OpenCV's CPU Dual TV-L1
(``opencv_contrib/modules/optflow/src/tvl1flow.cpp``, the formulation of Sánchez,
Meinhardt-Llopis and Facciolo, IPOL 2013). Everything here is plain NumPy so that it can be
imported (and tested) without TensorFlow: the parameter set, the pyramid's sizes, the linear
resampling taps that reproduce ``cv::resize`` and the selection network of the 5x5 median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TVL1Params:
    """Dual TV-L1 parameters; the defaults are those of ``cv2.optflow.DualTVL1OpticalFlow_create()``.

    Attributes:
        tau: time step of the dual variables' update.
        lambda_: weight of the data term (smaller: smoother flow).
        theta: coupling between the flow ``u`` and the auxiliary ``v`` of the data term.
        nscales: pyramid levels (fewer when a level would be under 16 pixels on a side).
        warps: warpings of the second image per level.
        epsilon: stopping threshold: a warp's iterations stop once the summed squared update of
            the flow falls to ``epsilon**2 * pixels`` (a root-mean-square step of ``epsilon`` px).
        inner_iterations: primal-dual iterations between two median filterings.
        outer_iterations: median filterings per warp (so at most ``inner * outer`` iterations).
        scale_step: size ratio between levels (OpenCV's default is 0.8, not 0.5).
        median_filtering: size of the median filter applied to the flow before each outer
            iteration (5 in OpenCV; 1 disables it).
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def __post_init__(self) -> None:
        if self.nscales < 1 or self.warps < 1 or self.inner_iterations < 1 or self.outer_iterations < 1:
            raise ValueError("nscales, warps, inner_iterations and outer_iterations must be at least 1")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"scale_step must be in (0, 1), got {self.scale_step}")
        if self.median_filtering not in (1, 5):
            # OpenCV's medianBlur on float images supports 3 and 5; the default 5 is what we reproduce.
            raise ValueError(f"median_filtering must be 5 (OpenCV's default) or 1 (off), got {self.median_filtering}")


# OpenCV stops adding levels once one would be narrower or lower than this.
MIN_LEVEL_SIDE = 16


def pyramid_sizes(height: int, width: int, params: TVL1Params = TVL1Params()) -> list[tuple[int, int]]:
    """``(height, width)`` of each level, finest first, as OpenCV builds them.

    Each level is ``resize(previous, Size(), scaleStep, scaleStep)``, whose size is the previous
    one times ``scaleStep`` rounded to nearest; the first level under 16 pixels ends the pyramid.

    Example:
        >>> pyramid_sizes(256, 340)
        [(256, 340), (205, 272), (164, 218), (131, 174), (105, 139)]
    """
    sizes = [(int(height), int(width))]
    for _ in range(1, params.nscales):
        h, w = sizes[-1]
        # saturate_cast<int>(double) rounds half to even, like Python's round().
        nh, nw = round(h * params.scale_step), round(w * params.scale_step)
        if nh < MIN_LEVEL_SIDE or nw < MIN_LEVEL_SIDE:
            break
        sizes.append((nh, nw))
    return sizes


def linear_resize_taps(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv::resize``'s bilinear interpolation along one axis: ``out[d] = in[i0]*(1-w) + in[i1]*w``.

    ``scale`` is OpenCV's source step per destination pixel: ``1 / scaleStep`` when the pyramid
    is built with a scale factor (the rounded size does not change the sampling positions),
    ``n_in / n_out`` when the flow is resized to a given size. The source position is
    ``(d + 0.5) * scale - 0.5`` (computed in float32, as OpenCV does), clamped to the image.

    Returns ``(i0, i1, w)``: int32 indices and float32 weights of length ``n_out``.

    Example:
        >>> [a.tolist() for a in linear_resize_taps(4, 2, 2.0)]
        [[0, 2], [1, 3], [0.5, 0.5]]
    """
    i0 = np.zeros(n_out, np.int32)
    w = np.zeros(n_out, np.float32)
    for d in range(n_out):
        position = np.float32((d + 0.5) * scale - 0.5)
        s = int(np.floor(position))
        f = np.float32(position - np.float32(s))
        if s < 0:
            s, f = 0, np.float32(0)
        if s >= n_in - 1:
            s, f = n_in - 1, np.float32(0)
        i0[d], w[d] = s, f
    return i0, np.minimum(i0 + 1, n_in - 1).astype(np.int32), w


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort for ``n`` (a power of two) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def median_network(n: int) -> list[tuple[int, int, bool, bool]]:
    """A min/max network whose wire ``n // 2`` ends holding the median of ``n`` (odd) inputs.

    Batcher's sorting network for the next power of two, with the comparators that touch the
    padding wires dropped (padding with +inf leaves them no-ops) and those that do not reach
    the median wire pruned. Each entry is ``(low, high, keep_min, keep_max)``: after it, wire
    ``low`` holds ``min(low, high)`` if ``keep_min`` and wire ``high`` holds the max if
    ``keep_max`` (the other output is never read again). For 25 inputs: 202 min/max operations.

    Example:
        >>> values = [5.0, 1.0, 4.0, 2.0, 3.0]
        >>> for low, high, keep_min, keep_max in median_network(5):
        ...     values[low], values[high] = min(values[low], values[high]), max(values[low], values[high])
        >>> values[2]
        3.0
    """
    if n < 1 or n % 2 == 0:
        raise ValueError(f"median_network needs an odd number of inputs, got {n}")
    size = 1
    while size < n:
        size *= 2
    pairs = [(a, b) for a, b in _batcher_pairs(size) if b < n]
    needed, network = {n // 2}, []
    for low, high in reversed(pairs):
        keep_min, keep_max = low in needed, high in needed
        if keep_min or keep_max:
            network.append((low, high, keep_min, keep_max))
            needed |= {low, high}
    return network[::-1]
