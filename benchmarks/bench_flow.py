"""TV-L1 flow engines: frame pairs/s of TensorFlow against OpenCV's CPU TV-L1, and how well they agree.

On consecutive frames of the real UCF101 clips (``../shared/data``, else a synthetic pan) at the
stored size 340x256:

1. speed: frame pairs/s of the ``tf`` engine at batch sizes 1, 8 and 32, each timed chunk by
   chunk against OpenCV on the same chunk right after it (a shared machine's load changes by
   the minute: each ratio compares the two engines under the same load); the one-off XLA
   compilation per batch size is reported apart;
2. agreement between engines on the same pairs: median end-point difference (px) and mean
   absolute difference of the stored bytes (quantised flow, bound 20), plus the share of
   bytes more than 2 levels apart;
3. accuracy against ground truth: both engines' average end-point error on synthetic pairs
   with known flow (a real frame warped by translations, rotations and smooth random fields
   of up to 15 px).

    python -m benchmarks.bench_flow [--quick] [--pairs N] [--batch-sizes 1 8 32] [--size 340x256]

``run(quick)`` returns the figures as a dict (``rows``: one per batch size) so that a GPU
script (``benchmarks/gpu.py``) can include this benchmark. ``--quick`` (smaller frames,
2 pairs, batch sizes 1 and 2) only checks that everything runs: its figures are not results.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from tfrecords_tools.flow import quantize_flow
from tfrecords_tools.flow_engines import OpenCVFlow, TensorFlowTVL1
from tfrecords_tools.video import resize
from tsn_keras.commands import frame_size

SHARED_DATA = Path(os.environ.get("TSN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SIZE = (340, 256)  # (width, height) the converter stores
QUICK_SIZE = (96, 64)
MAX_SYNTHETIC_PX = 15.0


def real_frames(count: int, size: tuple[int, int] = SIZE, data: Path = SHARED_DATA,
                per_clip: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` pairs of consecutive grayscale frames: ``per_clip`` from each UCF101 clip in turn."""
    clips = sorted((data / "UCF-101").glob("*/*.avi"))
    # Round-robin over classes, so that a few pairs already mix scenes.
    by_class: dict[str, list[Path]] = {}
    for clip in clips:
        by_class.setdefault(clip.parent.name, []).append(clip)
    ordered = [c for group in itertools.zip_longest(*by_class.values()) for c in group if c is not None]
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for clip in ordered:
        capture = cv2.VideoCapture(str(clip))
        frames = []
        while len(frames) < per_clip + 1:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(resize(frame, size), cv2.COLOR_BGR2GRAY))
        capture.release()
        pairs.extend(itertools.pairwise(frames))
        if len(pairs) >= count:
            return pairs[:count]
    # No real clips here: a textured pan (the figures then say less about real video).
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (size[1] + 80, size[0] + 80)).astype(np.uint8), (0, 0), 2)
    while len(pairs) < count:
        t = len(pairs)
        pairs.append((big[20:20 + size[1], 20 + t:20 + t + size[0]], big[21:21 + size[1], 22 + t:22 + t + size[0]]))
    return pairs


def _flow_field(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ground-truth flow ``(H, W, 2)`` of up to 15 px: translation, rotation or smooth random."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "translation":
        angle, magnitude = rng.uniform(0, 2 * np.pi), rng.uniform(2, MAX_SYNTHETIC_PX)
        return np.stack([np.full_like(xs, magnitude * np.cos(angle)), np.full_like(ys, magnitude * np.sin(angle))], -1)
    if kind == "rotation":
        cx, cy = (width - 1) / 2, (height - 1) / 2
        radius = np.hypot(cx, cy)
        angle = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * MAX_SYNTHETIC_PX / radius  # corners move up to 15 px
        dx, dy = xs - cx, ys - cy
        return np.stack([cx + np.cos(angle) * dx - np.sin(angle) * dy - xs,
                         cy + np.sin(angle) * dx + np.cos(angle) * dy - ys], -1)
    field = cv2.GaussianBlur(rng.normal(size=(height, width, 2)), (0, 0), max(height, width) / 6)
    return field * (rng.uniform(5, MAX_SYNTHETIC_PX) / np.abs(field).max())


def synthetic_pairs(frame: np.ndarray, size: tuple[int, int], count: int = 6,
                    seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(prev, nxt, flow)`` with known flow: ``nxt`` is a crop of ``frame`` (a real grayscale frame)
    and ``prev(x) = nxt(x + flow(x))``, sampled from the whole frame (no invented border).

    Kinds cycle through translation, rotation and smooth random field.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    margin_x, margin_y = (frame.shape[1] - width) // 2, (frame.shape[0] - height) // 2
    if min(margin_x, margin_y) < MAX_SYNTHETIC_PX + 2:
        raise ValueError(f"frame {frame.shape[::-1]} too small for {size} crops with {MAX_SYNTHETIC_PX:g} px motion")
    nxt = frame[margin_y:margin_y + height, margin_x:margin_x + width]
    pairs = []
    for i in range(count):
        flow = _flow_field(("translation", "rotation", "smooth")[i % 3], height, width, rng)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        map_x = (xs + margin_x + flow[..., 0]).astype(np.float32)
        map_y = (ys + margin_y + flow[..., 1]).astype(np.float32)
        prev = cv2.remap(frame.astype(np.float32), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        pairs.append((np.clip(np.round(prev), 0, 255).astype(np.uint8), nxt.copy(), flow.astype(np.float32)))
    return pairs


def end_point_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance between two ``(..., 2)`` flows."""
    return np.sqrt(np.sum((np.asarray(a, np.float64) - b) ** 2, axis=-1))


def agreement(flows_a: list[np.ndarray], flows_b: list[np.ndarray]) -> dict[str, float]:
    """Median end-point difference and stored-byte differences between two engines' flows."""
    epe = np.concatenate([end_point_error(a, b).ravel() for a, b in zip(flows_a, flows_b)])
    bytes_diff = np.concatenate([np.abs(quantize_flow(a).astype(int) - quantize_flow(b)).ravel()
                                 for a, b in zip(flows_a, flows_b)])
    return {"median_epe_px": float(np.median(epe)), "mean_epe_px": float(epe.mean()),
            "mean_byte_diff": float(bytes_diff.mean()), "bytes_over_2_levels": float(np.mean(bytes_diff > 2))}


def _speed(pairs, opencv: OpenCVFlow, batch_size: int) -> dict:
    engine = TensorFlowTVL1(batch_size=batch_size)
    prevs, nexts = [p for p, _ in pairs], [n for _, n in pairs]
    start = time.perf_counter()
    engine.batch(prevs[:batch_size], nexts[:batch_size])  # compiles for this shape, then solves
    first_s = time.perf_counter() - start
    tf_s = cv_s = 0.0
    flows, reference = [], []
    for lo in range(0, len(pairs), batch_size):
        start = time.perf_counter()
        flows.extend(engine.batch(prevs[lo:lo + batch_size], nexts[lo:lo + batch_size]))
        tf_s += time.perf_counter() - start
        start = time.perf_counter()
        reference.extend(opencv.batch(prevs[lo:lo + batch_size], nexts[lo:lo + batch_size]))
        cv_s += time.perf_counter() - start
    return {"batch": batch_size, "tf_pairs_per_s": len(pairs) / tf_s, "opencv_pairs_per_s": len(pairs) / cv_s,
            "ratio_tf_over_opencv": cv_s / tf_s, "first_call_s": first_s, "flows": flows, "reference": reference}


def _ground_truth(size: tuple[int, int], count: int) -> dict[str, float]:
    frame = real_frames(1, SIZE)[0][1]
    pairs = synthetic_pairs(frame, size, count)
    engines = {"tf": TensorFlowTVL1(batch_size=1), "opencv": OpenCVFlow("tvl1")}
    return {name: float(np.mean([end_point_error(engine(p, n), f).mean() for p, n, f in pairs]))
            for name, engine in engines.items()}


def run(quick: bool = False, pairs: int | None = None, batch_sizes: tuple[int, ...] | None = None,
        size: tuple[int, int] | None = None) -> dict:
    """Measure both engines; returns ``{"rows": [...], "agreement": {...}, "ground_truth_epe": {...}, ...}``.

    ``size`` (width, height) of the real frames; default 340x256 (96x64 with ``quick``).
    """
    import tensorflow as tf

    size = size or (QUICK_SIZE if quick else SIZE)
    batch_sizes = tuple(batch_sizes or ((1, 2) if quick else (1, 8, 32)))
    count = pairs or (2 if quick else max(batch_sizes))
    frames = real_frames(count, size)
    opencv = OpenCVFlow("tvl1")
    rows = [_speed(frames, opencv, b) for b in batch_sizes]
    agree = agreement(rows[0]["flows"], rows[0]["reference"])
    truth = _ground_truth((96, 64) if quick else (160, 120), 3 if quick else 9)
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "size": list(size), "pairs": len(frames), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "device": "GPU: " + ", ".join(g.name for g in gpus) if gpus else "CPU",
        "rows": [{k: v for k, v in row.items() if k not in ("flows", "reference")} for row in rows],
        "agreement": agree, "ground_truth_epe": truth,
    }


def report(results: dict) -> str:
    """The results as printed lines."""
    width, height = results["size"]
    lines = [f"TV-L1 on {results['pairs']} real frame pairs at {width}x{height}; tf engine on {results['device']}, "
             f"{results['cpus']} CPUs (shared machine: compare the ratios, measured side by side)"]
    for row in results["rows"]:
        lines.append(f"  batch {row['batch']:>3}: tf {row['tf_pairs_per_s']:6.2f} pairs/s, opencv "
                     f"{row['opencv_pairs_per_s']:6.2f} pairs/s, ratio tf/opencv {row['ratio_tf_over_opencv']:.2f}  "
                     f"(first call, with XLA compilation: {row['first_call_s']:.1f} s)")
    agree = results["agreement"]
    lines.append(f"  agreement tf vs opencv: median EPE {agree['median_epe_px']:.3f} px (mean {agree['mean_epe_px']:.3f}), "
                 f"mean |byte difference| {agree['mean_byte_diff']:.3f} levels, "
                 f"{100 * agree['bytes_over_2_levels']:.2f}% of bytes more than 2 levels apart")
    truth = results["ground_truth_epe"]
    lines.append(f"  ground truth (synthetic, up to 15 px): average EPE tf {truth['tf']:.3f} px, "
                 f"opencv {truth['opencv']:.3f} px (ratio {truth['tf'] / truth['opencv']:.3f})")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    width, height = frame_size(text)
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"frames of at least 16x16 px, got {text!r}")
    return width, height


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_flow", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small frames, 2 pairs: checks that it runs")
    parser.add_argument("--pairs", type=int, help="frame pairs timed [32, quick: 2]")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="tf engine batch sizes [1 8 32, quick: 1 2]")
    parser.add_argument("--size", type=_size, help="frame size WxH [340x256, quick: 96x64]; e.g. 170x128, the "
                                                   "size docs/RESULTS.md's conversions store")
    args = parser.parse_args(argv)
    results = run(args.quick, args.pairs, tuple(args.batch_sizes) if args.batch_sizes else None, args.size)
    print(report(results))
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
