"""``tsn fuse``: weighted fusion of the score files of several streams (RGB 1 : flow 1.5 by default)."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", nargs="+", help="score files (scores.npz) written by `tsn evaluate` on the same split")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per score file (default: by modality, RGB 1 : flow 1.5; "
                             "with warped flow RGB 1, flow 1, warped 0.5)")
    parser.add_argument("--out", default=None, help="folder for the fused scores.npz and metrics.json")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.scores import fuse, summary_line

    metrics = fuse(args.scores, weights=args.weights, output_dir=args.out)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    fusion = metrics["fusion"]
    for path, modality, weight, top1 in zip(fusion["files"], fusion["modalities"], fusion["weights"],
                                            fusion["streams_top1"]):
        print(f"  {modality:<12} weight {weight:<5g} top-1 {100 * top1:.2f}%  {path}")
    print(f"fused: {summary_line(metrics)}")
    if args.out:
        print(f"wrote {metrics['scores_file']} and metrics.json")
    return 0
