"""Timing shared by the model benchmarks: training steps of several models, interleaved."""

from __future__ import annotations

import statistics
import time


def interleaved_steps(models: dict, x, y, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``train_on_batch`` of every model in turns, so that all see the same machine load.

    Returns the first step of each model (it traces the graph) and the median of ``steps`` timed
    steps after one more warm-up step, both in seconds.
    """
    from tqdm import tqdm

    first: dict[str, float] = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first[name] = time.perf_counter() - start
        model.train_on_batch(x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in tqdm(range(steps), desc="timed steps", unit="round"):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    return first, {name: statistics.median(values) for name, values in times.items()}
