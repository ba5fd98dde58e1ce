"""Rate limits kept in the memory of each API process: writes per token, requests per address.

Each key (a token's lookup id for writes, a client address for every API and page request) has a
token bucket: `burst` requests at once, refilled at `per_minute` a minute; an empty bucket
answers 429 with Retry-After. This bounds what one leaked or runaway token, or one anonymous
client, costs a process (an upload is seconds of CPU, a search embeds text) without a shared
store. The state is per process and lost on restart: behind N processes a key may go up to N
times the rate. A limit shared by all processes belongs in front of them (the reverse proxy),
which is also where the client address must be set (uvicorn's --forwarded-allow-ips).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.errors import TooManyRequestsError

MAX_TRACKED_KEYS = 100_000  # past this, full buckets are forgotten (they mean "no recent use")


@dataclass
class RateLimiter:
    """Token buckets keyed by a string; `per_minute=0` disables the limit. Thread-safe.

    `what` names the requests counted, for the 429 message ("writes with this token").
    """

    per_minute: int
    burst: int
    what: str = "writes with this token"
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # (left, when)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str) -> None:
        """Spend one request of `key`; TooManyRequestsError when none is left."""
        if self.per_minute == 0:
            return
        with self._lock:
            now = self.clock()
            left = self._left(key, now)
            if left < 1:
                wait = math.ceil((1 - left) * 60 / self.per_minute)
                raise TooManyRequestsError(
                    f"too many {self.what}: at most {self.per_minute} a minute "
                    f"({self.burst} at once); retry in {wait} s",
                    retry_after=wait,
                )
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._forget_full_buckets(now)
            self._buckets[key] = (left - 1, now)

    def _left(self, key: str, now: float) -> float:
        left, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), left + (now - when) * self.per_minute / 60)

    def _forget_full_buckets(self, now: float) -> None:
        """Bound the memory many distinct clients take: a full bucket equals no bucket."""
        full = [key for key in self._buckets if self._left(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
