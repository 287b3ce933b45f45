"""Timing helpers shared by the benchmark scripts: medians of repeated wall-clock measurements."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(function: Callable[[], None], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def raw_forward_backward(model, images) -> Callable[[], None]:
    """One bare forward+backward pass of ``images`` (the cost unit every ratio is measured against)."""

    def run():
        model.zero_grad(set_to_none=True)
        model(images).sum().backward()

    return run
