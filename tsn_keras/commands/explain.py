"""``tsn explain``: Grad-CAM over the sampled snippets of a video and its class scores along the timeline."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file")
    parser.add_argument("--model", required=True, help="a run folder or .keras file, any modality")
    parser.add_argument("--flow-model", default=None, help="a flow (or warped flow) run to explain and fuse too")
    parser.add_argument("--class", dest="class_name", default=None,
                        help="the class to explain (default: the predicted class)")
    parser.add_argument("--snippets", type=int, default=None,
                        help="test snippets T (default: the run's evaluate.num_snippets, else 25)")
    parser.add_argument("--classes", default=None, help="class names for a bare .keras model")
    parser.add_argument("--out", required=True, help="folder for the heat maps, the timeline and explain.json")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.explain import explain_video

    result = explain_video(args.video, args.model, flow_model=args.flow_model, class_name=args.class_name,
                           num_snippets=args.snippets, out_dir=args.out, classes=args.classes)
    for stream in result["streams"]:
        print(f"{stream['modality']}: {len(stream['snippets'])} snippets, consensus p({result['class']}) = "
              f"{stream['consensus']['probability']:.3f}")
    print(f"wrote {args.out}: {', '.join(result['figures'])}, explain.json")
    return 0
