"""Per-token write rate limits, kept in the memory of each API process.

Every token that writes (uploads, deletes) has a token bucket: `burst` writes at once, refilled
at `per_minute` writes a minute; an empty bucket answers 429 with Retry-After. This bounds what
one leaked or runaway token costs a process (an upload is seconds of CPU) without a shared store.
The state is per process and lost on restart: behind N processes a token may write up to N times
the rate. A limit shared by all processes belongs in front of them (the reverse proxy).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.errors import TooManyRequestsError


@dataclass
class WriteRateLimiter:
    """Token buckets keyed by token id; `per_minute=0` disables the limit. Thread-safe."""

    per_minute: int
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # (left, when)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, token_id: str) -> None:
        """Spend one write of `token_id`; TooManyRequestsError when none is left."""
        if self.per_minute == 0:
            return
        with self._lock:
            now = self.clock()
            left, when = self._buckets.get(token_id, (float(self.burst), now))
            left = min(float(self.burst), left + (now - when) * self.per_minute / 60)
            if left < 1:
                wait = math.ceil((1 - left) * 60 / self.per_minute)
                raise TooManyRequestsError(
                    f"too many writes with this token: at most {self.per_minute} a minute "
                    f"({self.burst} at once); retry in {wait} s",
                    retry_after=wait,
                )
            self._buckets[token_id] = (left - 1, now)
