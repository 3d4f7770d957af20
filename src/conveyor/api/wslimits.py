"""Limits of the live-events WebSocket: a message rate per connection (a token bucket) and
caps on connections per API key and per process (see docs/api.md, "Limits")."""

from __future__ import annotations

import time
from collections import Counter


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each message takes one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Connections:
    """The WebSocket connections of one process: at most ``max_total`` in all and
    ``max_per_key`` per API key."""

    def __init__(self, max_total: int, max_per_key: int) -> None:
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.total = 0
        self.per_key: Counter[str] = Counter()

    def enter(self) -> bool:
        if self.total >= self.max_total:
            return False
        self.total += 1
        return True

    def leave(self) -> None:
        self.total -= 1

    def enter_key(self, key_id: str) -> bool:
        if self.per_key[key_id] >= self.max_per_key:
            return False
        self.per_key[key_id] += 1
        return True

    def leave_key(self, key_id: str) -> None:
        self.per_key[key_id] -= 1
        if self.per_key[key_id] <= 0:
            del self.per_key[key_id]
