"""Every GPU measurement of the project in one run (under 8 minutes on one GPU), as one table.

1. Training frames/s of a TSN (BN-Inception; EfficientNet-Lite0 when this checkout has it) at
   224 px, float32 and mixed float16 (bfloat16 in a dry run), each without and with XLA (``jit_compile``), with the
   project's optimiser (``make_optimizer``: CaffeSGD, loss scaling under float16).
2. Folded vs stock ``TimeDistributed`` training steps (``bench_folding``; target >= 3x on a GPU).
3. The input pipeline with every host core (train mode, K = 3, 224 px) against what the fastest
   training step above consumes: the pipeline must not be the bottleneck (ratio >= 1).
4. Evaluation videos/s (25 snippets x 10 crops) and its ratio to the bare forward pass
   (``bench_evaluate``).
5. The TensorFlow TV-L1 engine (``benchmarks/bench_flow.py``'s ``run``) when that file exists.

    python -m benchmarks.gpu              # on a GPU machine
    python -m benchmarks.gpu --dry-run    # the whole script on CPU at tiny sizes (seconds)

Within a row, the figures compared were measured in one process, interleaved where they share
the device; rows are separate measurements.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# On a GPU: the paper's setting (batch 32 clips of 3 segments at 224 px). Dry run: seconds on CPU.
# Mixed precision is float16 on a GPU; a CPU emulates float16 (hundreds of times slower), so
# the dry run uses bfloat16, the CPU's mixed precision, through the same code.
GPU = {"size": 224, "batch": 32, "segments": 3, "steps": 10, "folding_size": 224, "folding_batch": 32,
       "pipeline_s": 10.0, "eval_videos": 8, "eval_batch": 4, "eval_size": 224, "mixed": "float16"}
DRY = {"size": 32, "batch": 2, "segments": 3, "steps": 1, "folding_size": 32, "folding_batch": 2,
       "pipeline_s": 0.5, "eval_videos": 2, "eval_batch": 1, "eval_size": 32, "mixed": "bfloat16"}
BACKBONES = ("bn_inception", "efficientnet_lite0")
CLASSES = 101


def _available(backbone: str) -> bool:
    from tsn_keras.vocab import BACKBONES as KERAS_BACKBONES

    return backbone in KERAS_BACKBONES


def _training_model(backbone: str, size: int, batch: int, precision: str, xla: bool):
    import keras

    from tsn_keras.config import TrainConfig
    from tsn_keras.distribute import dtype_policy
    from tsn_keras.models.tsn import build_tsn
    from tsn_keras.optimization import make_optimizer

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy(precision))
    try:
        keras.utils.set_random_seed(0)
        model = build_tsn(CLASSES, "rgb", backbone=backbone, input_size=size)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer=make_optimizer(TrainConfig(batch_size=batch, mixed_precision=precision)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=xla)
    return model


def training_rows(sizes: dict, backbones: tuple[str, ...]) -> tuple[list[tuple[str, str]], float]:
    """Rows of training frames/s per backbone x precision x XLA; also the best clips/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (sizes["batch"], sizes["segments"], sizes["size"], sizes["size"], 3)).astype(np.float32)
    y = rng.integers(0, CLASSES, sizes["batch"])
    rows, best = [], 0.0
    for backbone in backbones:
        if not _available(backbone):
            rows.append((f"training {backbone}", "not available (no such Keras backbone on this checkout)"))
            continue
        variants = {(p, xla): _training_model(backbone, sizes["size"], sizes["batch"], p, xla)
                    for p in ("float32", sizes["mixed"]) for xla in (False, True)}
        _, step = interleaved({k: (lambda m=m: m.train_on_batch(x, y)) for k, m in variants.items()}, sizes["steps"],
                              desc=f"training {backbone}")
        base = step[("float32", False)]
        for (precision, xla), seconds in step.items():
            frames = sizes["batch"] * sizes["segments"] / seconds
            best = max(best, sizes["batch"] / seconds)
            rows.append((f"training {backbone} {precision}{' + XLA' if xla else ''}",
                         f"{frames:9.1f} frames/s  {base / seconds:5.2f}x float32"))
        del variants
    return rows, best


def folding_rows(sizes: dict) -> list[tuple[str, str]]:
    from benchmarks import bench_folding

    r = bench_folding.main(["--backbone", "bn_inception" if sizes is GPU else "tiny", "--size",
                            str(sizes["folding_size"]), "--batch", str(sizes["folding_batch"]),
                            "--steps", str(sizes["steps"])])
    return [("folded / stock TimeDistributed (S unknown)", f"{r['speedup_vs_stock']:9.2f}x   (target >= 3)"),
            ("folded / stock TimeDistributed (S = K, unrolled)", f"{r['speedup_vs_stock_static']:9.2f}x")]


def pipeline_rows(sizes: dict, consumed_clips_per_s: float) -> list[tuple[str, str]]:
    """The train-mode pipeline's clips/s with every host core, float views made on the host and
    ``device_resize`` crops, against what the fastest training step consumes."""
    from benchmarks._data import write_conversion
    from benchmarks.bench_pipeline import _rate
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_pipeline_") as tmp:
        root, real = write_conversion(Path(tmp), 4 if sizes is DRY else 16, frames=24 if sizes is DRY else 100,
                                      split="train")
        for device_resize in (False, True):
            clip = ClipSpec("rgb", "train", num_segments=sizes["segments"], input_size=sizes["size"],
                            device_resize=device_resize)
            ds = make_dataset(root, clip, split="train", batch_size=sizes["batch"], seed=0, repeat=True)
            clips_per_s, _ = _rate(ds, sizes["pipeline_s"], sizes["batch"])
            ratio = clips_per_s / consumed_clips_per_s if consumed_clips_per_s else float("nan")
            what = "uint8 crops, device_resize" if device_resize else "float views"
            rows.append((f"input pipeline, {what}, {os.cpu_count()} host cores ({'UCF101' if real else 'synthetic'})",
                         f"{clips_per_s:9.1f} clips/s = {ratio:.2f}x the fastest training step's consumption "
                         "(must be >= 1)"))
    return rows


def evaluation_rows(sizes: dict) -> list[tuple[str, str]]:
    from benchmarks import bench_evaluate

    r = bench_evaluate.main(["--backbone", "bn_inception" if sizes is GPU else "tiny", "--size", str(sizes["eval_size"]),
                             "--videos", str(sizes["eval_videos"]), "--batch", str(sizes["eval_batch"]),
                             "--rounds", "1", *(["--snippets", "5"] if sizes is DRY else [])])
    return [(f"evaluation, {r['snippets']} snippets x {r['crops']} crops",
             f"{r['evaluate_videos_per_s']:9.2f} videos/s = {r['evaluate_vs_bare']:.2f}x the bare forward pass "
             "(target >= 0.9)")]


def flow_rows(dry_run: bool) -> list[tuple[str, str]]:
    if importlib.util.find_spec("benchmarks.bench_flow") is None:
        return [("TensorFlow TV-L1", "not available (no benchmarks/bench_flow.py on this checkout)")]
    module = importlib.import_module("benchmarks.bench_flow")
    if not hasattr(module, "run"):
        return [("TensorFlow TV-L1", "not available (benchmarks/bench_flow.py has no run function)")]
    result = module.run(quick=dry_run)
    if isinstance(result, dict):
        return [(f"TV-L1: {key}", f"{value:9.2f}" if isinstance(value, float) else str(value))
                for key, value in result.items()]
    return [("TensorFlow TV-L1", str(result))]


def main(argv: list[str] | None = None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="run everything on CPU at tiny sizes (seconds)")
    args = parser.parse_args(argv)
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before TensorFlow starts
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.dry_run:
        print("no GPU visible to TensorFlow: run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return []
    sizes = DRY if args.dry_run else GPU
    start = time.perf_counter()
    # The dry run checks the script, not the backbones (their own tests do): the tiny one only,
    # since EfficientNet-Lite0 in bfloat16 under XLA took most of its ~100 s in the suite.
    backbones = BACKBONES if not args.dry_run else ("tiny",)
    rows, best = training_rows(sizes, backbones)
    sections = (lambda: folding_rows(sizes), lambda: pipeline_rows(sizes, best), lambda: evaluation_rows(sizes),
                lambda: flow_rows(args.dry_run))
    for section in sections:
        rows += section()
    device = gpus[0].name if gpus else "CPU (dry run)"
    print(f"\nbenchmarks.gpu on {device}: training {sizes['batch']} clips x {sizes['segments']} segments at "
          f"{sizes['size']} px, median of {sizes['steps']} steps; {time.perf_counter() - start:.0f} s in all")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return rows


if __name__ == "__main__":
    main()
