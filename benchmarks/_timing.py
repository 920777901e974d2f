"""Timing shared by the model benchmarks: training steps of several models, interleaved."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(steps: dict[str, Callable[[], None]], rounds: int,
                desc: str = "timed steps") -> tuple[dict[str, float], dict[str, float]]:
    """Time every ``steps`` callable in turns, so that all see the same machine load.

    Returns each callable's first call (it traces the graph) and the median of ``rounds`` timed
    calls after one more warm-up call, both in seconds.
    """
    from tqdm import tqdm

    first: dict[str, float] = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        first[name] = time.perf_counter() - start
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in tqdm(range(rounds), desc=desc, unit="round"):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return first, {name: statistics.median(values) for name, values in times.items()}


def interleaved_steps(models: dict, x, y, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """``interleaved`` over ``train_on_batch(x, y)`` of every model."""
    return interleaved({name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}, steps)
