"""``tsn export``: a SavedModel for serving (snippet and JPEG-frames signatures) plus the .keras model."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder or a .keras file")
    parser.add_argument("--out", required=True, help="output folder (saved_model/, model.keras, export.json)")
    parser.add_argument("--classes", default=None,
                        help="class names (classes.json, text file or conversion folder); default: the run's")
    parser.add_argument("--snippets", type=int, default=25, help="T of the JPEG signature (default: 25)")
    parser.add_argument("--crops", type=int, choices=(1, 3, 10), default=10,
                        help="crops of the JPEG signature (default: 10, the paper's)")
    parser.add_argument("--modality", default=None, choices=("rgb", "rgb_diff", "flow", "warped_flow"),
                        help="modality of a bare .keras model that takes more than 3 channels")
    parser.add_argument("--normalization", default=None,
                        choices=("caffe_bgr", "keras_caffe", "keras_tf", "keras_torch", "raw", "tf_lite"),
                        help="input normalisation (default: the run's config, else the backbone's)")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.export import JPEG_SIGNATURE, SNIPPETS_SIGNATURE, export_saved_model, load_export_info

    saved = export_saved_model(args.run, args.out, class_names=args.classes, modality=args.modality,
                               normalization=args.normalization, num_snippets=args.snippets, num_crops=args.crops)
    info = load_export_info(args.out)
    print(f"wrote {saved} ({info['modality']}, {len(info['class_names'])} classes, input {info['input_size']}px, "
          f"{info['normalization']})")
    print(f"  {SNIPPETS_SIGNATURE}: snippets (batch, snippets, {info['input_size']}, {info['input_size']}, "
          f"{info['channels']}) float32 -> logits, probabilities")
    print(f"  {JPEG_SIGNATURE}: {', '.join(info['signatures'][JPEG_SIGNATURE])} (JPEG strings, one video) -> "
          f"logits, probabilities [{info['num_snippets']} snippets x {info['num_crops']} crops]")
    print(f"  also {args.out}/model.keras and export.json")
    return 0
