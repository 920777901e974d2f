"""Dual TV-L1 optical flow in TensorFlow: OpenCV's algorithm, a batch of frame pairs at a time.

This is the only module of ``tfrecords_tools`` that imports TensorFlow; the flow engines
(:mod:`tfrecords_tools.flow_engines`) import it only when the ``tf`` engine is chosen.

The algorithm is OpenCV's CPU ``DualTVL1OpticalFlow`` (``modules/optflow/src/tvl1flow.cpp``),
step for step, so that both engines give the same flow:

- input: grayscale frames as float32 in 0..255;
- pyramid: each level is the previous one resized by ``scale_step`` (0.8) with bilinear
  interpolation (no Gaussian pre-filter), down to 5 levels or 16 pixels; the flow starts at
  zero on the coarsest level and is carried to the next finer one by bilinear resizing and
  multiplication by ``1 / scale_step``;
- per level: centred gradients of the second image (one-sided at the border); the dual
  variables start at zero and persist over the level's warps;
- per warp: the second image and its gradients are sampled at ``x + u`` with bicubic
  interpolation (``a = -0.75``, exact coordinates, zero outside the image: ``cv::remap`` with
  ``INTER_CUBIC`` and a constant border), then the data term is linearised around ``u``;
- iterations: thresholding step for ``v``, ``u = v + theta * div p``, forward-difference
  gradient of ``u``, projected dual step for ``p``; before every ``inner_iterations`` steps
  the flow goes through a 5x5 median filter (replicated border, ``cv::medianBlur``);
- stopping rule: a warp ends when the summed squared change of ``u`` in one step falls to
  ``epsilon**2 * pixels`` or after ``inner * outer`` steps.

The stopping rule is applied per pair: every pair of the batch carries an ``active`` flag, a
pair's state is copied out in the iteration it converges (it then runs on with the others,
unused) and the loop ends when no pair is active, so a pair gets exactly the iterations it
would get alone. A level is two nested
``tf.while_loop`` (warps, iterations) and the whole pyramid one XLA-compiled function per
input shape. The same code runs on CPU and GPU.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrecords_tools.tvl1_common import TVL1Params, linear_resize_taps, median_network, pyramid_sizes

# cv::remap's bicubic kernel (interpolateCubic): Keys' cubic with a = -0.75.
CUBIC_A = -0.75
_MEDIAN_25 = median_network(25)


def _resize_axis(x: tf.Tensor, n_out: int, scale: float, axis: int) -> tf.Tensor:
    i0, i1, w = linear_resize_taps(int(x.shape[axis]), n_out, scale)
    shape = [1] * x.shape.rank
    shape[axis] = n_out
    w = tf.constant(w.reshape(shape))
    return tf.gather(x, i0, axis=axis) * (1.0 - w) + tf.gather(x, i1, axis=axis) * w


def resize_linear(x: tf.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> tf.Tensor:
    """``cv::resize(INTER_LINEAR)`` of ``[B, H, W]`` images to ``size = (height, width)``.

    ``scale = (sy, sx)`` is the source step per output pixel: ``1 / scale_step`` for the pyramid
    (OpenCV resizes by a factor there), the size ratio when omitted. Horizontal pass first, as
    OpenCV does; gathers, not matmuls, so that no TF32 rounding can creep in on GPUs.
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    sy, sx = scale if scale is not None else (height / size[0], width / size[1])
    return _resize_axis(_resize_axis(x, size[1], sx, 2), size[0], sy, 1)


def _replicate_pad(x: tf.Tensor, pad: int) -> tf.Tensor:
    x = tf.concat([x[:, :1]] * pad + [x] + [x[:, -1:]] * pad, axis=1)
    return tf.concat([x[:, :, :1]] * pad + [x] + [x[:, :, -1:]] * pad, axis=2)


def centered_gradient(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Half the central difference; at the border OpenCV takes half the one-sided difference,
    which is the central difference of the border-replicated image."""
    p = _replicate_pad(x, 1)
    dx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    dy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return dx, dy


def _pad_hw(x: tf.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> tf.Tensor:
    return tf.pad(x, [[0, 0]] * (x.shape.rank - 2) + [list(rows), list(cols)])


def forward_gradient(u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Forward differences over the last two axes (y, x), zero on the last column (for x) and
    the last row (for y), as OpenCV's ``forwardGradient``."""
    dx = _pad_hw(u[..., 1:] - u[..., :-1], (0, 0), (0, 1))
    dy = _pad_hw(u[..., 1:, :] - u[..., :-1, :], (0, 1), (0, 0))
    return dx, dy


def divergence(px: tf.Tensor, py: tf.Tensor) -> tf.Tensor:
    """Backward differences with ``p = 0`` before the first row/column: the negative adjoint of
    :func:`forward_gradient` (OpenCV's ``divergence``)."""
    return (px - _pad_hw(px[..., :-1], (0, 0), (1, 0))) + (py - _pad_hw(py[..., :-1, :], (1, 0), (0, 0)))


def median5(u: tf.Tensor) -> tf.Tensor:
    """5x5 median of ``[B, H, W]`` with a replicated border (``cv::medianBlur(u, 5)`` on float)."""
    height, width = int(u.shape[1]), int(u.shape[2])
    p = _replicate_pad(u, 2)
    wires = [p[:, i:i + height, j:j + width] for i in range(5) for j in range(5)]
    for low, high, keep_min, keep_max in _MEDIAN_25:
        a, b = wires[low], wires[high]
        if keep_min:
            wires[low] = tf.minimum(a, b)
        if keep_max:
            wires[high] = tf.maximum(a, b)
    return wires[12]


def _cubic_weights(t: tf.Tensor) -> list[tf.Tensor]:
    a = CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return [w0, w1, w2, 1.0 - w0 - w1 - w2]


def warp_cubic(images: tf.Tensor, u1: tf.Tensor, u2: tf.Tensor) -> tf.Tensor:
    """Sample ``images`` ``[B, H, W, C]`` at ``(x + u1, y + u2)``: bicubic, zero outside.

    This is ``cv::remap(INTER_CUBIC, BORDER_CONSTANT)``: the 4x4 taps around the position,
    a tap outside the image contributing 0 (OpenCV 5 uses the exact position, not the
    1/32-pixel grid of older versions).
    """
    batch, height, width, channels = (int(v) for v in images.shape)
    # Positions far outside sample only zeros; clipping them keeps the integer maths in range.
    xs = tf.clip_by_value(tf.range(width, dtype=tf.float32) + u1, -8.0, width + 8.0)
    ys = tf.clip_by_value(tf.range(height, dtype=tf.float32)[:, None] + u2, -8.0, height + 8.0)
    x0, y0 = tf.floor(xs), tf.floor(ys)
    wx = tf.stack(_cubic_weights(xs - x0), axis=-1)  # [B, H, W, 4]
    wy = tf.stack(_cubic_weights(ys - y0), axis=-1)
    offsets = tf.range(-1, 3)
    # One zero row/column around the image: every tap index is clamped into it or the image.
    cols = tf.clip_by_value(tf.cast(x0, tf.int32)[..., None] + offsets, -1, width) + 1
    rows = tf.clip_by_value(tf.cast(y0, tf.int32)[..., None] + offsets, -1, height) + 1
    index = rows[..., :, None] * (width + 2) + cols[..., None, :]  # [B, H, W, 4, 4]
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), [batch, -1, channels])
    taps = tf.gather(flat, tf.reshape(index, [batch, -1]), batch_dims=1)
    taps = tf.reshape(taps, [batch, height, width, 4, 4, channels])
    weights = wy[..., :, None] * wx[..., None, :]
    return tf.reduce_sum(taps * weights[..., None], axis=[3, 4])


class TVL1Solver:
    """OpenCV's Dual TV-L1 on batches of frame pairs, XLA-compiled.

    Args:
        params: the algorithm's parameters (default: OpenCV's).
        jit_compile: compile with XLA (much faster on CPU and GPU; one compilation per input
            shape, a few seconds).

    Example:
        >>> solver = TVL1Solver()  # doctest: +SKIP
        >>> flows, iterations = solver(prev_frames, next_frames)  # [B, H, W] uint8 each  # doctest: +SKIP
    """

    def __init__(self, params: TVL1Params | None = None, jit_compile: bool = True):
        self.params = params or TVL1Params()
        self._solve = tf.function(self._solve_graph, jit_compile=jit_compile, autograph=False)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray,
                 valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flow of each pair: ``[B, H, W, 2]`` float32 with ``nxt(p + flow(p)) ~ prev(p)``.

        Args:
            prev, nxt: ``[B, H, W]`` grayscale frames (``uint8``, or float in 0..255).
            valid: ``[B]`` bool; pairs marked False (batch padding) are not iterated on.

        Returns:
            ``(flow, iterations)``: the flows and, per pair, the primal-dual iterations run
            over all levels and warps.
        """
        prev = np.asarray(prev)
        if prev.ndim != 3 or prev.shape != np.shape(nxt):
            raise ValueError(f"expected two [B, H, W] arrays of one shape, got {prev.shape} and {np.shape(nxt)}")
        if valid is None:
            valid = np.ones(prev.shape[0], bool)
        flow, iterations = self._solve(tf.constant(prev, tf.float32), tf.constant(np.asarray(nxt), tf.float32),
                                       tf.constant(np.asarray(valid, bool)))
        return flow.numpy(), iterations.numpy()

    def _solve_graph(self, i0: tf.Tensor, i1: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        params = self.params
        sizes = pyramid_sizes(int(i0.shape[1]), int(i0.shape[2]), params)
        step = 1.0 / params.scale_step
        levels = [(i0, i1)]
        for size in sizes[1:]:
            # Each level from the previous one, as OpenCV does (not from the full-size frame).
            levels.append(tuple(resize_linear(x, size, (step, step)) for x in levels[-1]))
        batch = tf.shape(i0)[0]
        u = tf.zeros([batch, 2, *sizes[-1]], tf.float32)  # the flow, (x, y) components first
        iterations = tf.zeros([batch], tf.int32)
        for s in range(len(sizes) - 1, -1, -1):
            u, count = self._level(*levels[s], u, valid)
            iterations += count
            if s > 0:
                finer = resize_linear(tf.reshape(u, [-1, *sizes[s]]), sizes[s - 1]) * np.float32(step)
                u = tf.reshape(finer, [batch, 2, *sizes[s - 1]])
        return tf.transpose(u, [0, 2, 3, 1]), iterations

    def _level(self, i0: tf.Tensor, i1: tf.Tensor, u: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """All warps of one pyramid level; returns the flow ``[B, 2, H, W]`` and the iterations per pair.

        The state is stacked so that one op serves both flow components: ``u`` is
        ``[B, 2, H, W]`` and the dual variable ``p`` is ``[B, 2 (component), 2 (x, y), H, W]``.
        """
        params = self.params
        l_t = np.float32(params.lambda_ * params.theta)
        taut = np.float32(params.tau / params.theta)
        theta = np.float32(params.theta)
        height, width = int(i0.shape[1]), int(i0.shape[2])
        threshold = np.float32(params.epsilon ** 2 * height * width)
        max_steps = params.inner_iterations * params.outer_iterations
        flt_eps = np.finfo(np.float32).eps
        i1x, i1y = centered_gradient(i1)
        sources = tf.stack([i1, i1x, i1y], axis=-1)

        def warp_body(w, steps, u, p):
            warped = warp_cubic(sources, u[:, 0], u[:, 1])
            i1w = warped[..., 0]
            g = tf.transpose(warped[..., 1:], [0, 3, 1, 2])  # the warped gradient, [B, 2, H, W]
            grad = tf.reduce_sum(g * g, axis=1)
            rho_c = i1w - tf.reduce_sum(g * u, axis=1) - i0

            def step_body(n, active, steps, u, p, final_u, final_p):
                if params.median_filtering > 1:
                    # OpenCV filters the flow at the start of each outer iteration.
                    u = tf.cond(n % params.inner_iterations == 0,
                                lambda: tf.reshape(median5(tf.reshape(u, [-1, height, width])), tf.shape(u)),
                                lambda: u)
                # Thresholding step (estimateV): v = u + fi * grad I1w, from the linearised residual.
                rho = rho_c + tf.reduce_sum(g * u, axis=1)
                lt_grad = l_t * grad
                fi = tf.where(rho < -lt_grad, l_t, tf.where(rho > lt_grad, -l_t, tf.where(
                    grad > flt_eps, -rho / tf.where(grad > flt_eps, grad, 1.0), 0.0)))
                # u = v + theta div p (estimateU), and the stopping rule's squared change.
                new_u = u + fi[:, None] * g + theta * divergence(p[:, :, 0], p[:, :, 1])
                change = new_u - u
                error = tf.reduce_sum(change * change, axis=[1, 2, 3])
                # Dual step (estimateDualVariables): p = (p + taut grad u) / (1 + taut |grad u|).
                ux, uy = forward_gradient(new_u)
                norm = 1.0 + taut * tf.sqrt(ux * ux + uy * uy)
                new_p = (p + taut * tf.stack([ux, uy], axis=2)) / norm[:, :, None]
                still = active & (error > threshold) & (n + 1 < max_steps)
                # A pair that stops now has its state copied out; it keeps iterating with the
                # others (unused work) rather than being masked in every iteration: masked
                # selects on the whole state double an iteration's time on a CPU, the copy
                # happens at most once per pair and warp.
                stopped = active & ~still
                final_u, final_p = tf.cond(
                    tf.reduce_any(stopped),
                    lambda: (tf.where(stopped[:, None, None, None], new_u, final_u),
                             tf.where(stopped[:, None, None, None, None], new_p, final_p)),
                    lambda: (final_u, final_p))
                return [n + 1, still, steps + tf.cast(active, tf.int32), new_u, new_p, final_u, final_p]

            # The pairs iterate together while any is active; each pair's result is its state
            # when it stopped (padding pairs, never active, keep their initial state).
            *_, steps, _, _, u, p = tf.while_loop(lambda n, active, *rest: tf.reduce_any(active), step_body,
                                                  [tf.constant(0), valid, steps, u, p, u, p])
            return [w + 1, steps, u, p]

        p = tf.zeros([tf.shape(u)[0], 2, 2, height, width], tf.float32)
        _, steps, u, _ = tf.while_loop(lambda w, *rest: w < params.warps, warp_body,
                                       [tf.constant(0), tf.zeros(tf.shape(valid), tf.int32), u, p])
        return u, steps
