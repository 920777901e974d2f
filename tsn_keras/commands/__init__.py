"""One module per `tsn` subcommand: ``configure_parser(parser)`` and ``run(args) -> int``.

Command modules import heavy libraries (TensorFlow, OpenCV) inside ``run`` so that building
the parser stays fast.
"""

from __future__ import annotations

import argparse


def frame_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as an argparse type (``--frame-size``, ``--size``): two positive integers."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 340x256, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"frame size must be positive, got {text!r}")
    return width, height
