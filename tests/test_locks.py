"""User locks: exclusion, fencing tokens that only grow, release wakes a waiter, expiry."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor
from conveyor.locks import LockTimeout


async def test_tokens_strictly_increase_and_exclude(app: Conveyor) -> None:
    inside = 0
    most_inside = 0
    tokens: list[int] = []

    async def critical() -> None:
        nonlocal inside, most_inside
        async with app.lock("resource", ttl=5) as lock:
            tokens.append(lock.token)
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(critical() for _ in range(20)))
    assert most_inside == 1
    assert tokens == sorted(tokens) and len(set(tokens)) == 20


async def test_a_waiter_gets_the_lock_when_it_is_released(app: Conveyor) -> None:
    first = app.lock("door", ttl=30)
    await first.acquire()
    waiter = asyncio.create_task(app.lock("door", ttl=30, timeout=5).acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await first.release()
    token = await asyncio.wait_for(waiter, 2)  # woken by the release, not the 30 s lease
    assert token > first.token


async def test_an_expired_lease_lets_the_next_holder_in_and_fences_the_old(app: Conveyor) -> None:
    stale = app.lock("lease", ttl=0.2)
    await stale.acquire()
    assert stale._renewer is not None
    stale._renewer.cancel()  # the holder stops renewing, as if paused
    fresh = await app.lock("lease", ttl=5, timeout=3).acquire()
    assert fresh > stale.token
    assert not await stale.renew() and stale.lost
    assert not await stale.release()  # it cannot release what it no longer holds


async def test_timeout_when_the_lock_stays_held(app: Conveyor) -> None:
    async with app.lock("busy", ttl=10):
        with pytest.raises(LockTimeout):
            await app.lock("busy", ttl=10, timeout=0.2).acquire()
