"""Best and median of repeated measurements, for benchmarks on a shared machine.

The best run is the one least disturbed by other work on the machine; the median shows how
noisy the run was. Both are printed, so a figure taken in a noisy moment is visible as such.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

Sample = TypeVar("Sample")


@dataclass(frozen=True)
class Timing:
    """Wall times of the measured repeats of one step, in seconds."""

    times: Sequence[float]

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def rate(self, amount: float) -> tuple[float, float]:
        """`amount` per second at the best and at the median time."""
        return amount / self.best, amount / self.median


def timed(call: Callable[[], Sample]) -> tuple[float, Sample]:
    """`call()`'s wall time in seconds, and its result."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def repeated(step: Callable[[], Sample], repeats: int) -> list[Sample]:
    """`repeats` samples of `step`, after one warm-up call whose sample is dropped.

    The warm-up pays one-time costs (JIT compilation, connections, first SQL statements) that a
    long-running process pays once, not per call. Steps time themselves (with `timed`), so the
    set-up around the measured call stays out of the figure.
    """
    step()
    return [step() for _ in range(repeats)]
