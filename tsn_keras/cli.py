"""The `tsn` command line: one entry point, one subcommand per stage of the TSN workflow.

Each subcommand lives in ``tsn_keras/commands/<name>.py`` and provides ``configure_parser(parser)``
and ``run(args) -> int``. Only the module of the command being run is imported, so ``tsn --help``
answers without loading TensorFlow. Errors that are the user's to fix (``TSNError``) are printed
as one line and exit with code 2, and so are file-system refusals (a full disk, a read-only or
non-folder output path); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tsn_keras.errors import TSNError, environment_error_message, input_error_message, is_disk_full
from tsn_keras.version import __version__

# name -> (module, one-line help). Order is the order of a typical workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tsn_keras.commands.demo", "generate a synthetic two-stream dataset and run the whole workflow on it"),
    "convert": ("tsn_keras.commands.convert", "convert a video dataset to sharded TFRecords (RGB, optical flow, warped flow)"),
    "flow": ("tsn_keras.commands.flow", "optical flow of one video as float arrays, stored JPEG pairs or colour pictures"),
    "inspect": ("tsn_keras.commands.inspect", "summarise and verify converted shards; --dump writes a contact sheet"),
    "train": ("tsn_keras.commands.train", "train a TSN from a recipe (YAML) with model.fit"),
    "evaluate": ("tsn_keras.commands.evaluate", "test a trained model with the 25-snippet, 1/3/10-crop protocol"),
    "fuse": ("tsn_keras.commands.fuse", "fuse the scores of several streams with weights"),
    "export": ("tsn_keras.commands.export", "export a trained model as a SavedModel for serving"),
    "predict": ("tsn_keras.commands.predict", "top-5 classes for a video file"),
    "explain": ("tsn_keras.commands.explain", "Grad-CAM over a video's sampled snippets and its class scores along time"),
    "visualize": ("tsn_keras.commands.visualize", "what a model looks for: class pictures drawn from noise (Fig. 3)"),
    "plot": ("tsn_keras.commands.plot", "loss/accuracy curves, confusion matrix and sampled frames as PNG/SVG"),
    "convert-weights": (
        "tsn_keras.commands.convert_weights",
        "convert PyTorch BN-Inception ImageNet weights to Keras (needs the torch extra)",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsn",
        description="Temporal Segment Networks on Keras 3 / TensorFlow.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nRun `tsn <command> --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"tsn-keras {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="command", help="one of the commands below")
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The full parser of one subcommand (imports that command's module)."""
    module_name, text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"tsn {command}", description=text)
    module.configure_parser(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the output
    top = _top_parser()
    if not argv:
        top.print_help()
        return 0
    if argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit here; anything else is a usage error
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        top.error(f"unknown command {command!r} (choose from {', '.join(COMMANDS)})")
    parser = build_parser(command)
    args = parser.parse_args(rest)
    try:
        return int(args._run(args) or 0)
    except TSNError as err:
        print(f"tsn {command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # A full disk, a read-only file system, a file where a folder should be, a corrupt clip
        # named by the input pipeline: the user's to fix.
        message = environment_error_message(err) or input_error_message(err)
        if message is None:
            raise
        print(f"tsn {command}: error: {message}", file=sys.stderr)
        if is_disk_full(err) and "h5py" in sys.modules:
            global _LEAVE_AT_ONCE
            _LEAVE_AT_ONCE = True
        return 2
    except KeyboardInterrupt:
        print(f"tsn {command}: interrupted", file=sys.stderr)
        return 130


# Set when a disk-full error hit while h5py was loaded: h5py crashes the interpreter at exit
# (segmentation fault) when it deallocates a file whose writes failed. The `tsn` process then
# leaves at once (every file that matters is already complete or untouched); ``main`` itself
# only returns, so that calling it in-process (tests, notebooks) never ends the caller.
_LEAVE_AT_ONCE = False


def entry_point() -> None:
    """The ``tsn`` console script: ``main()``, and its exit code as the process's."""
    code = main()
    if _LEAVE_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
