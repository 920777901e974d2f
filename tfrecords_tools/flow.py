"""Optical flow as TSN stores it: TV-L1 (or DIS / Farnebäck), warped flow, byte quantisation.

``N`` frames give ``N-1`` flow fields, each between two consecutive grayscale frames at the
stored size. Each component is quantised to a byte with bound 20 exactly as the original
``dense_flow`` tool did (``TSN_SEMANTICS.md``, "Frames on disk")::

    q = clip(round(255 * (v + 20) / 40), 0, 255)

(``round`` is half-to-even, like OpenCV's ``cvRound`` that the original used).

Warped flow (TSN paper, Sec. 3.2, after iDT): estimate the camera motion between two frames
as a homography from feature matches with RANSAC, warp the second frame to cancel it and
compute flow again, so that what remains is the motion of the actors. As in the original,
matches come from keypoint descriptors (ORB here: SURF is not in free OpenCV builds) plus
points tracked by the plain flow field; the estimate is trusted only with more than 50
matches and more than 25 RANSAC inliers, otherwise the plain flow is stored for that field
(and counted as a fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BOUND = 20.0
ALGORITHMS: tuple[str, ...] = ("tvl1", "dis", "farneback")

# The original warp code's thresholds (iDT / dense_warp_flow): more than 50 matches and more
# than 25 inliers, else the identity homography (= plain flow).
MIN_MATCHES = 50
MIN_INLIERS = 25
RANSAC_REPROJ_PX = 1.0
ORB_FEATURES = 1000
FLOW_TRACK_POINTS = 1000


def quantize_flow(flow: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """Quantise flow values (pixels) to bytes: ``clip(round(255*(v+bound)/(2*bound)), 0, 255)``.

    Example:
        >>> quantize_flow(np.array([-30.0, -20.0, 0.0, 20.0])).tolist()
        [0, 0, 128, 255]
    """
    scaled = np.round(255.0 * (np.asarray(flow, np.float64) + bound) / (2.0 * bound))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """Back to pixels: ``q * 2*bound/255 - bound`` (error at most ``bound/255`` inside the bound)."""
    return (np.asarray(q, np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


class FlowEstimator:
    """Dense flow between two grayscale ``uint8`` frames; the OpenCV object is made once.

    Args:
        algorithm: ``tvl1`` (the paper's; ``cv2.optflow`` Dual TV-L1 with OpenCV's defaults,
            tau 0.25, lambda 0.15, theta 0.3, 5 scales, 5 warps, epsilon 0.01: the parameters
            of the GPU implementation ``dense_flow`` used), ``dis`` (DIS, medium preset: ~100x
            faster, for CPU-only users) or ``farneback``.

    Example:
        >>> estimator = FlowEstimator("dis")
        >>> estimator(np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)).shape
        (32, 32, 2)
    """

    def __init__(self, algorithm: str = "tvl1"):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown flow algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        self.algorithm = algorithm
        if algorithm == "tvl1":
            self._impl = cv2.optflow.DualTVL1OpticalFlow_create()
        elif algorithm == "dis":
            self._impl = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        else:
            self._impl = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` float32 such that ``nxt(p + flow(p)) ~ prev(p)``."""
        if self._impl is None:
            # OpenCV's sample parameters: pyramid 0.5, 3 levels, window 15, 3 iterations, poly 5/1.2.
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self._impl.calc(prev, nxt, None)


@dataclass
class HomographyEstimate:
    """The camera motion between two frames, or ``None`` when the evidence was too weak."""

    matrix: np.ndarray | None
    matches: int
    inliers: int


class CameraMotion:
    """Homography between consecutive frames from ORB matches plus flow-tracked corners, with RANSAC.

    ORB with brute-force Hamming matching and cross-check is deterministic, and OpenCV's
    RANSAC uses a fixed seed, so the same frames always give the same estimate.
    """

    def __init__(self) -> None:
        self._orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def _descriptor_matches(self, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kp1, des1 = self._orb.detectAndCompute(prev, None)
        kp2, des2 = self._orb.detectAndCompute(nxt, None)
        if des1 is None or des2 is None or len(kp1) == 0 or len(kp2) == 0:
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
        matches = self._matcher.match(des1, des2)
        src = np.array([kp1[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 2)
        dst = np.array([kp2[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 2)
        return src, dst

    @staticmethod
    def _flow_matches(prev: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Strong corners of the first frame carried by the plain flow, as the original did.
        corners = cv2.goodFeaturesToTrack(prev, FLOW_TRACK_POINTS, 0.001, 3)
        if corners is None:
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
        src = corners.reshape(-1, 2).astype(np.float32)
        cols = np.clip(np.round(src[:, 0]).astype(int), 0, flow.shape[1] - 1)
        rows = np.clip(np.round(src[:, 1]).astype(int), 0, flow.shape[0] - 1)
        return src, src + flow[rows, cols]

    def estimate(self, prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray) -> HomographyEstimate:
        """Homography mapping points of ``prev`` to ``nxt`` (``None`` if unreliable)."""
        src_d, dst_d = self._descriptor_matches(prev, nxt)
        src_f, dst_f = self._flow_matches(prev, flow)
        src = np.concatenate([src_d, src_f])
        dst = np.concatenate([dst_d, dst_f])
        if len(src) <= MIN_MATCHES:
            return HomographyEstimate(None, len(src), 0)
        matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_REPROJ_PX)
        inliers = int(mask.sum()) if mask is not None else 0
        if matrix is None or inliers <= MIN_INLIERS or not np.all(np.isfinite(matrix)):
            return HomographyEstimate(None, len(src), inliers)
        return HomographyEstimate(matrix, len(src), inliers)


def warp_to_previous(nxt: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """``nxt`` resampled at ``H p`` for every pixel ``p`` of the previous frame (camera motion undone)."""
    height, width = nxt.shape[:2]
    return cv2.warpPerspective(nxt, homography, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


class WarpedFlowEstimator:
    """Warped flow between two grayscale frames: flow after cancelling the camera's homography.

    Calling it returns ``(warped_flow, fell_back)``; ``fell_back`` is True when the homography
    was unreliable and the plain flow was returned instead.
    """

    def __init__(self, flow: FlowEstimator):
        self.flow = flow
        self.camera = CameraMotion()

    def __call__(self, prev: np.ndarray, nxt: np.ndarray, plain: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        if plain is None:
            plain = self.flow(prev, nxt)
        estimate = self.camera.estimate(prev, nxt, plain)
        if estimate.matrix is None:
            return plain, True
        return self.flow(prev, warp_to_previous(nxt, estimate.matrix)), False


def flow_to_color(flow_x: np.ndarray, flow_y: np.ndarray, max_magnitude: float | None = None,
                  min_magnitude: float = 1.0) -> np.ndarray:
    """Colour-code a flow field as an RGB ``uint8`` image: hue = direction, brightness = speed.

    Args:
        flow_x, flow_y: flow components in pixels.
        max_magnitude: speed shown at full brightness; default the field's 99th percentile
            (typical motion is a few pixels, far below the quantisation bound of 20), but at
            least ``min_magnitude`` so that a still scene (quantisation noise of +-0.08 px)
            stays dark instead of being stretched into bright noise.
    """
    magnitude, angle = cv2.cartToPolar(flow_x.astype(np.float32), flow_y.astype(np.float32), angleInDegrees=True)
    if max_magnitude is None:
        max_magnitude = float(np.percentile(magnitude, 99)) if magnitude.size else 1.0
        max_magnitude = max(max_magnitude, min_magnitude)
    max_magnitude = max(max_magnitude, 1e-3)
    hsv = np.zeros((*flow_x.shape, 3), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / max_magnitude * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
