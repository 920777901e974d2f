"""``tsn predict``: the top classes of a video file (RGB, flow computed on the fly, or both fused)."""

from __future__ import annotations

import argparse

from tsn_keras.vocab import CROP_COUNTS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file")
    parser.add_argument("--model", required=True,
                        help="a run folder, a .keras file or an export folder (`tsn export`), any modality")
    parser.add_argument("--flow-model", default=None,
                        help="a flow (or warped flow) model to fuse with --model (two-stream)")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="stream weights (default: RGB 1 : flow 1.5, the paper's)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default: 5)")
    parser.add_argument("--crops", type=int, choices=CROP_COUNTS, default=None,
                        help="test crops (default: the run's evaluate.num_crops, else 10)")
    parser.add_argument("--classes", default=None, help="class names for a bare .keras model")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.predict import predict_video

    result = predict_video(args.video, args.model, flow_model=args.flow_model, weights=args.weights, top=args.top,
                           num_crops=args.crops, classes=args.classes)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    streams = " + ".join(f"{s['modality']} (weight {s['weight']:g})" for s in result["streams"])
    first = result["streams"][0]
    print(f"{result['video']}: {result['num_frames']} frames; {streams}; "
          f"{first['num_snippets']} snippets x {first['num_crops']} crops")
    width = max(len(entry["class"]) for entry in result["top"])
    for rank, entry in enumerate(result["top"], start=1):
        print(f"  {rank}. {entry['class']:<{width}}  {100 * entry['probability']:6.2f}%")
    return 0
