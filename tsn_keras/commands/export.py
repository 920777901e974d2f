"""``tsn export``: a SavedModel for serving (snippet and JPEG-frames signatures) plus the .keras model."""

from __future__ import annotations

import argparse

from tsn_keras.vocab import CROP_COUNTS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder or a .keras file")
    parser.add_argument("--out", required=True, help="output folder (saved_model/, model.keras, export.json)")
    parser.add_argument("--classes", default=None,
                        help="class names for a model that holds none (classes.json, text file or conversion folder)")
    parser.add_argument("--snippets", type=int, default=None,
                        help="T of the JPEG signature (default: the run's evaluate.num_snippets, else 25)")
    parser.add_argument("--crops", type=int, choices=CROP_COUNTS, default=None,
                        help="crops of the JPEG signature (default: the run's evaluate.num_crops, else 10)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an export already in --out (saved_model/, model.keras, export.json)")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.export import JPEG_SIGNATURE, SNIPPETS_SIGNATURE, export_saved_model, load_export_info

    saved = export_saved_model(args.run, args.out, class_names=args.classes, num_snippets=args.snippets,
                               num_crops=args.crops, overwrite=args.overwrite)
    info = load_export_info(args.out)
    print(f"wrote {saved} ({info['modality']}, {len(info['class_names'])} classes, input {info['input_size']}px, "
          f"{info['normalization']})")
    print(f"  {SNIPPETS_SIGNATURE}: snippets (batch, snippets, {info['input_size']}, {info['input_size']}, "
          f"{info['channels']}) float32 -> logits, probabilities")
    print(f"  {JPEG_SIGNATURE}: {', '.join(info['signatures'][JPEG_SIGNATURE])} (JPEG strings, one video) -> "
          f"logits, probabilities [{info['num_snippets']} snippets x {info['num_crops']} crops]")
    print(f"  also {args.out}/model.keras and export.json")
    return 0
