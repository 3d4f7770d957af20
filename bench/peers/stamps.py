"""The one thing every system's jobs share: ``stamp(tag)`` pushes ``tag time.time()`` onto
the ``bench:stamps`` list of the system's own Redis, so the driver learns when a handler
started (pickup latency, start and end of a drain) the same way for every system."""

from __future__ import annotations

import functools
import os
import time

import redis

STAMPS = "bench:stamps"


@functools.cache
def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def record(tag: str) -> None:
    now = time.time()  # first: the handler's start is what is measured
    client().rpush(STAMPS, f"{tag} {now!r}")
