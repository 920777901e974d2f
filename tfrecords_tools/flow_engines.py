"""Flow engines: who computes the flow of a batch of frame pairs (OpenCV on the CPU, or TensorFlow).

``opencv`` runs ``cv2.optflow`` / ``cv2`` pair by pair (every algorithm). ``tf`` runs TV-L1
in TensorFlow (:mod:`tfrecords_tools.tvl1_tf`, XLA-compiled, CPU or GPU, a batch of pairs
per call); it is imported only when chosen, so the converter's workers stay TensorFlow-free
otherwise. ``auto`` is resolved once, before any work, by :func:`resolve_engine`:

- TV-L1: ``tf``. ``benchmarks/bench_flow.py`` measured it faster than OpenCV's CPU TV-L1
  even on a 2-core CPU at 340x256 (and a GPU is far faster still), for the same flow: median
  end-point difference under 0.1 px; the first call per frame size pays a one-off XLA
  compilation (seconds to tens of seconds, per process);
- DIS and Farnebäck: ``opencv`` (the only implementation).

Both engines return ``(H, W, 2)`` float32 flow with ``nxt(p + flow(p)) ~ prev(p)``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from tfrecords_tools.flow import ALGORITHMS, CameraMotion, FlowEstimator, warp_to_previous
from tfrecords_tools.tvl1_common import TVL1Params

ENGINES: tuple[str, ...] = ("auto", "tf", "opencv")
# Pairs per TensorFlow call. On a CPU one pair at a time is fastest (a pair's working set,
# ~6 MB at 340x256, stays in cache and no pair waits for the slowest of its batch); a GPU
# needs many pairs in flight to fill it.
CPU_BATCH = 1
GPU_BATCH = 32


def resolve_engine(algorithm: str, engine: str = "auto") -> str:
    """The concrete engine (``tf`` or ``opencv``) for ``algorithm``; raises ``ValueError`` if impossible.

    Example:
        >>> resolve_engine("dis"), resolve_engine("tvl1"), resolve_engine("tvl1", "opencv")
        ('opencv', 'tf', 'opencv')
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown flow algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown flow engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "tf" and algorithm != "tvl1":
        raise ValueError(f"the tf flow engine implements tvl1 only, not {algorithm}; use --flow-engine opencv")
    if engine == "auto":
        return "tf" if algorithm == "tvl1" else "opencv"
    return engine


class OpenCVFlow:
    """The ``opencv`` engine: :class:`~tfrecords_tools.flow.FlowEstimator`, pair by pair."""

    engine = "opencv"

    def __init__(self, algorithm: str = "tvl1"):
        self.algorithm = algorithm
        self.batch_size = 1
        self._estimator = FlowEstimator(algorithm)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` of one pair of grayscale ``uint8`` frames."""
        return self._estimator(prev, nxt)

    def batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow of each pair."""
        return [self._estimator(p, n) for p, n in zip(prevs, nexts)]


@lru_cache(maxsize=4)
def _solver(params: TVL1Params, jit_compile: bool):
    # One solver (and so one set of compiled programs) per process and parameter set: every
    # converter and CLI call in the process shares the compilation.
    from tfrecords_tools.tvl1_tf import TVL1Solver

    return TVL1Solver(params, jit_compile=jit_compile)


def _prepare_gpus() -> bool:
    """Whether TensorFlow sees a GPU; if so, set it up for the flow engine (process-wide)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Several converter workers may share one GPU: none may reserve all its memory. (A GPU
        # already initialised in this process keeps its setting.)
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        # A GPU reduction may sum in a different order from run to run (atomics), and the
        # stopping rule compares that sum with a threshold: deterministic ops (XLA's included)
        # keep the converter's output the same bytes on every run. On the CPU XLA's
        # reductions are already deterministic. Not verified on a GPU here (none was lent).
        tf.config.experimental.enable_op_determinism()
    return bool(gpus)


class TensorFlowTVL1:
    """The ``tf`` engine: TV-L1 on batches of ``batch_size`` pairs (the last one padded).

    Args:
        batch_size: pairs per solver call; default 1 on a CPU, 32 on a GPU. Every call has
            this many pairs (padding pairs are not iterated on), so each frame size is
            compiled once and a pair's flow never depends on the other pairs of its call.
        params: TV-L1 parameters (OpenCV's defaults).
        jit_compile: XLA compilation (off only to save compile time on tiny test frames).
    """

    engine = "tf"
    algorithm = "tvl1"

    def __init__(self, batch_size: int | None = None, params: TVL1Params | None = None, jit_compile: bool = True):
        on_gpu = _prepare_gpus()
        if batch_size is None:
            batch_size = GPU_BATCH if on_gpu else CPU_BATCH
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._solver = _solver(params or TVL1Params(), bool(jit_compile))
        self.iterations = 0  # primal-dual iterations run so far (all pairs, levels and warps)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` of one pair of grayscale ``uint8`` frames."""
        return self.batch([prev], [nxt])[0]

    def batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow of each pair, ``batch_size`` pairs per solver call."""
        if len(prevs) != len(nexts):
            raise ValueError(f"{len(prevs)} first frames but {len(nexts)} second frames")
        flows: list[np.ndarray] = []
        for start in range(0, len(prevs), self.batch_size):
            first = np.stack(prevs[start:start + self.batch_size])
            second = np.stack(nexts[start:start + self.batch_size])
            count = len(first)
            valid = np.arange(self.batch_size) < count
            if count < self.batch_size:
                pad = np.zeros((self.batch_size - count, *first.shape[1:]), first.dtype)
                first, second = np.concatenate([first, pad]), np.concatenate([second, pad])
            flow, iterations = self._solver(first, second, valid)
            self.iterations += int(iterations[:count].sum())
            flows.extend(flow[:count])
        return flows


def make_flow(algorithm: str = "tvl1", engine: str = "auto", batch_size: int | None = None):
    """The flow engine object for ``algorithm`` (``auto`` resolved by :func:`resolve_engine`).

    Returns an object with ``batch(prevs, nexts) -> list of flows``, ``__call__(prev, nxt)``,
    ``engine``, ``algorithm`` and ``batch_size``.
    """
    if resolve_engine(algorithm, engine) == "tf":
        return TensorFlowTVL1(batch_size)
    return OpenCVFlow(algorithm)


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's CPU threads (for worker processes that share the cores); call before TF runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this process: keep its pools
        pass


def warped_flow_batch(flow, camera: CameraMotion, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray],
                      plains: Sequence[np.ndarray]) -> list[tuple[np.ndarray, bool]]:
    """Warped flow of a batch of pairs with ``flow``'s engine for the second pass.

    Per pair as :class:`~tfrecords_tools.flow.WarpedFlowEstimator`: the camera's homography
    from ORB matches and the plain flow, the second frame warped to cancel it, and the flow
    computed again; ``(plain, True)`` where the homography is unreliable. The second flow
    pass runs as one batch over the pairs whose homography was trusted.
    """
    estimates = [camera.estimate(p, n, f) for p, n, f in zip(prevs, nexts, plains)]
    trusted = [i for i, e in enumerate(estimates) if e.matrix is not None]
    second = flow.batch([prevs[i] for i in trusted],
                        [warp_to_previous(nexts[i], estimates[i].matrix) for i in trusted])
    results = [(plain, True) for plain in plains]
    for i, warped in zip(trusted, second):
        results[i] = (warped, False)
    return results
