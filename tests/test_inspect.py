"""Queue stats: depths per priority and state, and the age of each queue's oldest waiting job,
read for many queues at once."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor
from conveyor.connect import server_ms
from conveyor.inspect import queue_stats


async def test_depths_and_the_age_of_each_queues_oldest_waiting_job(app: Conveyor) -> None:
    @app.job(queue="a")
    async def noop(n: int) -> None:
        return None

    await app.enqueue("noop", {"n": 1}, queue="a", priority="low")
    first = server_ms(await app.redis.time())
    while server_ms(await app.redis.time()) - first < 300:  # Redis' clock, polled
        await asyncio.sleep(0.02)
    await app.enqueue("noop", {"n": 2}, queue="a", priority="high")
    await app.enqueue("noop", {"n": 3}, queue="b")
    await app.enqueue("noop", {"n": 4}, queue="b", delay=60)

    stats = {s.name: s for s in await queue_stats(app, ["a", "b", "empty"])}
    a, b, empty = stats["a"], stats["b"], stats["empty"]
    assert (a.high, a.normal, a.low, a.delayed) == (1, 0, 1, 0)
    assert (b.high, b.normal, b.low, b.delayed) == (0, 1, 0, 1)
    assert a.oldest_waiting_seconds is not None and b.oldest_waiting_seconds is not None
    # a's oldest is its low job, 0.3 s older than anything in b (the delayed job waits for
    # its time, it is not waiting to run).
    assert a.oldest_waiting_seconds >= 0.3
    assert b.oldest_waiting_seconds < a.oldest_waiting_seconds - 0.25
    assert empty.oldest_waiting_seconds is None and empty.high == empty.delayed == 0
