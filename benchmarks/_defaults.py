"""The sizes of a benchmark's measurement and of its ``--quick`` smoke run, chosen after parsing."""

from __future__ import annotations

import argparse
from typing import Any


def resolve(args: argparse.Namespace, full: dict[str, Any], quick: dict[str, Any]) -> argparse.Namespace:
    """Fill every option left at ``None`` from ``quick`` (with ``--quick``) or ``full``.

    An option given on the command line wins in both modes, so ``--quick --backbone bn_inception``
    is a short run of that backbone. A quick run is a smoke test of seconds, not a measurement.
    """
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def default_help(name: str, full: dict[str, Any], quick: dict[str, Any]) -> str:
    """``(default F, Q with --quick)`` for an option's help text."""
    return f"(default {full[name]}, {quick[name]} with --quick)"
