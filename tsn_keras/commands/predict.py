"""``tsn predict``: the top classes of a video file (RGB, flow computed on the fly, or both fused).

``--untrimmed`` scores a long video at a fixed rate instead of TSN's 25 snippets, integrates
the snippet scores over temporal windows of several lengths and reports when each class is
shown (``tsn_keras.untrimmed``).
"""

from __future__ import annotations

import argparse

from tsn_keras.tool_config import UntrimmedConfig
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
    default = UntrimmedConfig()
    untrimmed = parser.add_argument_group("untrimmed videos")
    untrimmed.add_argument("--untrimmed", action="store_true",
                           help="score snippets at a fixed rate over the whole video, integrate them over temporal "
                                "windows and report the time ranges of each top class")
    untrimmed.add_argument("--rate", type=float, default=default.rate,
                           help=f"snippets per second (default {default.rate:g})")
    untrimmed.add_argument("--windows", type=float, nargs="+", default=default.windows,
                           help=f"window lengths in seconds (default {' '.join(f'{w:g}' for w in default.windows)})")
    untrimmed.add_argument("--window-top-k", type=int, default=default.top_k,
                           help=f"windows averaged per class at each length (default {default.top_k})")
    untrimmed.add_argument("--smooth", type=int, default=default.smooth,
                           help=f"snippets averaged before cutting the time ranges (default {default.smooth})")
    untrimmed.add_argument("--out", default=None,
                           help="with --untrimmed: write untrimmed.json, snippet_scores.npz and the timeline figure here")



def run(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.errors import ConfigError
    from tsn_keras.predict import predict_video

    if args.untrimmed:
        return _run_untrimmed(args)
    if args.out is not None:
        raise ConfigError("--out writes the timeline of --untrimmed; add --untrimmed or leave --out out")

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


def _run_untrimmed(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.untrimmed import score_untrimmed, write_untrimmed

    config = UntrimmedConfig(rate=args.rate, windows=args.windows, top_k=args.window_top_k, smooth=args.smooth)
    models = [args.model] + ([args.flow_model] if args.flow_model else [])
    result = score_untrimmed(args.video, models, weights=args.weights, config=config, num_crops=args.crops,
                             top=args.top, classes=args.classes, progress=not args.json)
    if args.out is not None:
        write_untrimmed(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "snippet_logits"}, indent=2))
        return 0
    print(f"{result['video']}: {result['duration']:.1f} s, {result['snippets']} snippets at {args.rate:g}/s")
    width = max(len(entry["class"]) for entry in result["top"])
    for rank, entry in enumerate(result["top"], start=1):
        ranges = ", ".join(f"{r['start']:.1f}-{r['end']:.1f} s" for r in entry["ranges"]) or "never on top"
        print(f"  {rank}. {entry['class']:<{width}}  {entry['score']:.3f}  {ranges}")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0
