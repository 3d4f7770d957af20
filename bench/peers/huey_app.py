"""huey's documented API: a RedisHuey (blocking dequeue, its default) and two tasks."""

from __future__ import annotations

import os

from huey import RedisHuey
from stamps import record

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop() -> None:
    return None


@huey.task()
def stamp(tag: str) -> None:
    record(tag)
