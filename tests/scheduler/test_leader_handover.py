"""A scheduler stopped while it leads hands the lead over at once: the next scheduler leads at
its next try, not after the stopped one's lease runs out, and the stopped one no longer counts
as alive (``conveyor status``, ``conveyor_schedulers_alive``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from conveyor import Conveyor
from conveyor.scheduler.service import Scheduler

LEASE_S = 9.0  # a follower retries every lease / 3 = 3 s; the lease itself outlasts that


async def until(condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until ``condition()`` is true (polled), or an AssertionError."""
    start = time.monotonic()
    while not await condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_stopped_leader_hands_over_before_its_lease_runs_out(app: Conveyor) -> None:
    first = Scheduler(app, lease_seconds=LEASE_S, record_history=False)
    first_run = asyncio.create_task(first.run())

    async def first_leads() -> bool:
        return first.leading

    await until(first_leads, 10)
    second = Scheduler(app, lease_seconds=LEASE_S, record_history=False)
    second_run = asyncio.create_task(second.run())
    glob = app.keys.glob

    async def both_published() -> bool:
        return await app.redis.zcard(glob.schedulers) == 2 and bool(
            await app.redis.exists(glob.scheduler(second.owner)))

    await until(both_published, 10)
    assert not second.leading

    first.stop()
    await first_run
    stopped = time.monotonic()

    async def second_leads() -> bool:
        return second.leading

    await until(second_leads, LEASE_S + 5)
    # The second tries every 3 s: it leads at its next try (a lease of 9 s from the first's
    # last renewal would hold it off for 6 s or more).
    assert time.monotonic() - stopped < LEASE_S / 3 + 1.5
    assert await app.redis.zrange(glob.schedulers, 0, -1) == [second.owner]
    assert not await app.redis.exists(glob.scheduler(first.owner))
    second.stop()
    await second_run
