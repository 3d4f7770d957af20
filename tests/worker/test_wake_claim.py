"""An idle worker of one queue sends its claim right behind its wait on the marker (see
``Fetcher``): the job's lease comes back one network trip after the submit, where a claim
sent after the wake-up costs a round trip more. A worker behind a proxy that holds every
chunk ``DELAY`` each way shows the difference in time (about 1 x DELAY against 3 x DELAY).

The wait holds a claim that may run at any moment, so a stopping worker unblocks it and
starts what it leased, and a worker quieted while it waits leases nothing on its wake-up."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from conveyor import Conveyor, Worker
from conveyor.control import set_quiet
from conveyor.embedded import RedisServer
from tests.conftest import FAST
from tests.faults.proxy import Proxy

DELAY = 0.1  # seconds, each way between the worker and Redis


def define(app: Conveyor, started: asyncio.Queue[float]) -> None:
    @app.job(queue="q")
    async def mark() -> None:
        started.put_nowait(time.monotonic())


@pytest.fixture
async def admin(any_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(any_redis.url, decode_responses=True)
    yield client
    await client.aclose()


async def fetcher_blocked(admin: Redis) -> None:
    """Until the fetcher's connection (named by the worker) is blocked in Redis itself."""
    while not any(c.get("name") == "conveyor-fetch:q" and "b" in c.get("flags", "")
                  for c in await admin.client_list()):
        await asyncio.sleep(0.01)


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.01)


async def test_an_idle_worker_starts_a_job_one_network_trip_after_the_submit(
        any_redis: RedisServer, admin: Redis) -> None:
    proxy = await Proxy(any_redis.port, delay=DELAY).start()
    started: asyncio.Queue[float] = asyncio.Queue()
    far = Conveyor(redis_url=f"redis://127.0.0.1:{proxy.port}", **FAST)  # the worker's side
    near = Conveyor(redis_url=any_redis.url, **FAST)  # the producer, next to Redis
    define(far, started)
    define(near, started)
    worker = Worker(far, ["q"], concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        took = []
        for _ in range(5):
            await asyncio.wait_for(fetcher_blocked(admin), 15)
            sent = time.monotonic()
            await near.enqueue("mark")
            took.append(await asyncio.wait_for(started.get(), 15) - sent)
        # The claim reply travels once (DELAY); a claim sent after the wake-up would add a
        # round trip (2 x DELAY) on top of the wake-up's own reply.
        print(f"\nsubmit to start through a {DELAY * 1000:.0f} ms path: "
              + ", ".join(f"{t * 1000:.0f}" for t in took) + " ms")
        assert statistics.median(took) < 2 * DELAY
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await far.close()
        await near.close()
        await proxy.close()


@asynccontextmanager
async def waiting_worker(
    url: str, admin: Redis, block_seconds: float
) -> AsyncIterator[tuple[Conveyor, Worker, asyncio.Queue[float], asyncio.Task[None]]]:
    """A worker of queue q, blocked in Redis on its marker with its claim queued behind."""
    started: asyncio.Queue[float] = asyncio.Queue()
    app = Conveyor(redis_url=url, **{**FAST, "block_seconds": block_seconds})
    define(app, started)
    worker = Worker(app, ["q"], concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(fetcher_blocked(admin), 15)
        assert worker.fetchers["q"].waking
        yield app, worker, started, task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await app.close()


async def test_a_stop_unblocks_the_wait_at_once_and_leaves_nothing_leased(
        any_redis: RedisServer, admin: Redis) -> None:
    async with waiting_worker(any_redis.url, admin, 20.0) as (app, worker, _, task):
        asked = time.monotonic()
        worker.stop()
        await asyncio.wait_for(task, 15)
        # Not the 20 s block: the wait was unblocked, and the claim behind it ran.
        assert time.monotonic() - asked < 5
        assert worker.stopped_cleanly
        # Nothing was leased and left: a job submitted now waits for the next worker.
        handle = await app.enqueue("mark")
        job = await app.get_job(handle.id)
        assert job is not None and job.status == "queued"
        assert await admin.zcard(app.keys.queue("q").active) == 0


async def test_a_worker_quieted_while_it_waits_leases_nothing_on_its_wake_up(
        any_redis: RedisServer, admin: Redis) -> None:
    async with waiting_worker(any_redis.url, admin, 3.0) as (app, worker, started, _):
        await set_quiet(app, worker.id, True)
        handle = await app.enqueue("mark")  # wakes the wait; the claim behind it sees quiet
        await asyncio.wait_for(until(lambda: not worker.fetchers["q"].waking), 15)
        job = await app.get_job(handle.id)
        assert job is not None and job.status == "queued"
        assert started.empty()
        await set_quiet(app, worker.id, False)  # resumes within a block (3 s here)
        await asyncio.wait_for(started.get(), 30)


async def test_a_picked_up_job_starts_before_the_next_claim_is_sent(
        any_redis: RedisServer, admin: Redis) -> None:
    """After its wake-up the fetcher lets the jobs it leased start before it packs and
    sends its next claim, so the handler does not wait behind that work."""
    async with waiting_worker(any_redis.url, admin, 5.0) as (app, _, _, _):
        order: list[str] = []

        @app.job(queue="q")
        async def note() -> None:
            order.append("handler")

        claim = app.broker.claim

        async def noted(*args: object, **kwargs: object) -> object:
            order.append("claim")
            return await claim(*args, **kwargs)  # type: ignore[arg-type]

        app.broker.claim = noted  # type: ignore[method-assign]
        await app.enqueue("note")
        await asyncio.wait_for(until(lambda: "handler" in order and "claim" in order), 15)
        assert order[0] == "handler", order
