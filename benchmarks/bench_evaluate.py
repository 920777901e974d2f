"""How close ``tsn evaluate`` comes to the bare forward pass of its model, as ratios from one run.

``evaluation.evaluate`` (pipeline: decode, scale, 10 crops, flips, normalisation; the forward
passes on every replica of the strategy; scores and metrics files) is timed against the bare
forward pass of the same scorer on the same videos' views, already in memory, at the same
batch size. The ratio of their frames/s (views/s; 25 snippets x 10 crops = 250 per video) is
what the protocol costs on top of the network (target >= 0.9). Also printed: the test-mode
pipeline alone (videos/s the host can prepare), and, when the batch holds several videos, the
bare forward pass one video at a time (whether batching across videos pays on this device).

Both evaluation and forward pass reuse one traced scorer (``evaluate`` caches it on the model),
so neither includes tracing; calls are interleaved so that the ratio sees the same load.

    python -m benchmarks.bench_evaluate [--quick] [--backbone bn_inception] [--videos 4] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._defaults import default_help, resolve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL = {"backbone": "bn_inception", "size": 224, "snippets": 25, "crops": 10, "videos": 3, "batch": 1, "rounds": 2}
QUICK = {"backbone": "tiny", "size": 64, "snippets": 5, "crops": 10, "videos": 2, "batch": 1, "rounds": 1}


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: tiny backbone, 2 videos")
    for name, kind in (("backbone", str), ("size", int), ("snippets", int), ("crops", int), ("videos", int),
                       ("batch", int), ("rounds", int)):
        parser.add_argument(f"--{name}", type=kind, default=None, help=default_help(name, FULL, QUICK))
    parser.add_argument("--strategy", default="auto", help="distribution strategy name (default auto)")
    args = resolve(parser.parse_args(argv), FULL, QUICK)

    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks._data import write_conversion
    from tsn_keras.data.pipeline import make_dataset
    from tsn_keras.distribute import make_strategy
    from tsn_keras.evaluation import evaluate, replica_model, replicated_scorer, test_clip_spec, video_scorer
    from tsn_keras.models.tsn import build_tsn
    from tsn_keras.runs import load_run

    strategy = make_strategy(args.strategy)
    per_video = args.snippets * args.crops
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        root, real = write_conversion(Path(tmp) / "data", args.videos, frames=60 if not args.quick else 24)
        classes = json.loads((root / "manifest.json").read_text())["classes"]
        keras.utils.set_random_seed(0)
        model = replica_model(build_tsn(len(classes), "rgb", backbone=args.backbone, input_size=args.size,
                                        class_names=classes), strategy)
        clip = test_clip_spec(load_run(model), args.snippets, args.crops)
        dataset = make_dataset(root, clip, split="test", batch_size=args.batch, return_ids=True)
        batches = [views for views, _, _ in dataset]  # the same videos' views, in memory
        score = replicated_scorer(video_scorer(model, args.crops, args.snippets), strategy)
        one_video = video_scorer(model, args.crops, args.snippets)

        def run_evaluate():
            evaluate(model, root, "test", num_snippets=args.snippets, num_crops=args.crops, batch_size=args.batch,
                     output_dir=Path(tmp) / "eval", strategy=strategy)

        def bare():
            for views in batches:
                np.asarray(score(views))

        def bare_one_by_one():
            for views in batches:
                for i in range(views.shape[0]):
                    np.asarray(one_video(views[i:i + 1]))

        def pipeline_only():
            for _ in dataset:
                pass

        measures = {"evaluate": run_evaluate, "bare": bare, "pipeline": pipeline_only}
        if args.batch > 1:
            measures["bare_one_by_one"] = bare_one_by_one
        # Warm-up: the scorer's trace (cached on the model, shared by evaluate and the bare pass)
        # on one batch, and the pipeline's thread pools.
        np.asarray(score(batches[0]))
        np.asarray(one_video(batches[0][:1]))
        pipeline_only()
        times: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(args.rounds):
            for name, fn in measures.items():
                times[name].append(_time(fn))
    median = {name: statistics.median(values) for name, values in times.items()}
    videos = args.videos
    results = {
        "backbone": args.backbone, "size": args.size, "snippets": args.snippets, "crops": args.crops,
        "videos": videos, "batch": args.batch, "replicas": strategy.num_replicas_in_sync,
        **{f"{name}_videos_per_s": videos / t for name, t in median.items()},
        **{f"{name}_frames_per_s": videos * per_video / t for name, t in median.items()},
        "evaluate_vs_bare": median["bare"] / median["evaluate"],
    }
    print(f"\ntsn evaluate vs the bare forward pass: {args.backbone} at {args.size} px, {args.snippets} snippets x "
          f"{args.crops} crops = {per_video} views per video, {videos} {'UCF101' if real else 'synthetic'} videos, "
          f"batch {args.batch} video(s), {strategy.num_replicas_in_sync} replica(s) "
          f"({tf.config.list_logical_devices()[-1].device_type}), median of {args.rounds} interleaved rounds")
    labels = {"evaluate": "evaluate (pipeline + model + files)", "bare": "bare forward pass (views in memory)",
              "pipeline": "test-mode pipeline alone", "bare_one_by_one": "bare forward pass, one video at a time"}
    for name, label in labels.items():
        if name in median:
            print(f"  {label:<40} {results[f'{name}_videos_per_s']:8.3f} videos/s {results[f'{name}_frames_per_s']:9.1f} "
                  "frames/s")
    print(f"  ratio evaluate / bare forward pass (frames/s): {results['evaluate_vs_bare']:.2f}   (target >= 0.9)")
    if "bare_one_by_one" in median:
        results["batched_vs_one_by_one"] = median["bare_one_by_one"] / median["bare"]
        print(f"  ratio batch of {args.batch} / one video at a time (bare): {results['batched_vs_one_by_one']:.2f}")
    return results


if __name__ == "__main__":
    main()
