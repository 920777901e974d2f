"""``tsn visualize``: what a trained TSN looks for, drawn from noise by gradient ascent (the paper's Fig. 3)."""

from __future__ import annotations

import argparse

from tsn_keras.tool_config import DrawConfig


def configure_parser(parser: argparse.ArgumentParser) -> None:
    default = DrawConfig()
    parser.add_argument("run", help="a run folder or .keras file (rgb, flow, warped_flow or rgb_diff)")
    parser.add_argument("--classes", required=True, help="class names to draw, comma-separated")
    parser.add_argument("--out", required=True, help="folder for the pictures, scores.json and the grid figure")
    parser.add_argument("--compare", nargs="+", default=[], metavar="RUN",
                        help="more runs laid side by side in the grid, one row each (e.g. from scratch, "
                             "pre-trained, TSN)")
    group = parser.add_argument_group("drawing (DrawConfig)")
    group.add_argument("--steps", type=int, default=default.steps, help=f"steps per octave (default {default.steps})")
    group.add_argument("--octaves", type=float, nargs="+", default=default.octaves,
                       help="picture side per octave as fractions of the input size, coarse to fine "
                            f"(default {' '.join(map(str, default.octaves))})")
    group.add_argument("--step-size", type=float, default=default.step_size,
                       help=f"mean change per pixel and step, in 0..255 units (default {default.step_size})")
    group.add_argument("--jitter", type=int, default=default.jitter,
                       help=f"largest random shift before each step, in pixels (default {default.jitter})")
    group.add_argument("--blur-every", type=int, default=default.blur_every,
                       help=f"steps between Gaussian blurs, 0 for none (default {default.blur_every})")
    group.add_argument("--blur-start", type=float, default=default.blur_start,
                       help=f"blur sigma at the start of each octave, pixels (default {default.blur_start})")
    group.add_argument("--blur-end", type=float, default=default.blur_end,
                       help=f"blur sigma at the end of each octave, pixels (default {default.blur_end})")
    group.add_argument("--decay", type=float, default=default.decay,
                       help=f"pull towards the neutral picture per step, an L2 penalty (default {default.decay})")
    group.add_argument("--noise", type=float, default=default.noise,
                       help=f"standard deviation of the starting white noise, 0..255 units (default {default.noise})")
    group.add_argument("--seed", type=int, default=default.seed, help=f"noise and jitter seed (default {default.seed})")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.visualize import visualize_runs

    config = DrawConfig(steps=args.steps, octaves=args.octaves, step_size=args.step_size, jitter=args.jitter,
                        blur_every=args.blur_every, blur_start=args.blur_start, blur_end=args.blur_end,
                        decay=args.decay, noise=args.noise, seed=args.seed)
    classes = [name.strip() for name in args.classes.split(",") if name.strip()]
    record = visualize_runs([args.run, *args.compare], classes, args.out, config)
    for entry in record["runs"]:
        scores = ", ".join(f"{p['class']} {p['start_probability']:.2f} -> {p['probability']:.2f}"
                           for p in entry["pictures"])
        print(f"{entry['label']} ({entry['modality']}): {scores}")
    print(f"wrote {args.out}: {', '.join(record['figures'])}, scores.json")
    return 0
