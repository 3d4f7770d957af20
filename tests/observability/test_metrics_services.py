"""The series ``/metrics`` reads about the processes around the API: the history recorder's
lag (each way an event can be unacknowledged), deferrals by reason (a worker without the
handler, and a reason no script writes), live workers per queue, schedulers and the leader,
and the answer when Redis is down. Real Redis, real workers and schedulers, the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Conveyor, Worker
from conveyor.api import create_app
from conveyor.api.metrics import Metrics
from conveyor.connect import server_ms
from conveyor.embedded import RedisServer
from conveyor.scheduler.recorder import GROUP
from conveyor.scheduler.service import Scheduler
from tests.api.conftest import ADMIN_KEY, UNLIMITED, auth, running, wait_for
from tests.conftest import FAST
from tests.observability.test_deploy_series import Samples, samples, value

LAG = "conveyor_recorder_lag_seconds"


@pytest.fixture
async def conveyor(any_redis: RedisServer) -> AsyncIterator[Conveyor]:
    app = Conveyor(redis_url=any_redis.url, **FAST)

    @app.job(queue="q")
    async def noop() -> None:
        pass

    yield app
    await app.close()


@pytest.fixture
async def client(conveyor: Conveyor, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    api: FastAPI = create_app(conveyor, settings=UNLIMITED, admin_key=ADMIN_KEY,
                              open_store=False)
    async with running(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://api",
            headers=auth(ADMIN_KEY)) as c:
        yield c


async def lag_within(conveyor: Conveyor, oldest: str) -> tuple[float, float, float]:
    """The recorder lag of queue q that a scrape reports, with the bounds it must lie in:
    Redis' clock before and after the scrape, minus the ms part of the ``oldest`` id."""
    born = int(oldest.partition("-")[0])
    before = server_ms(await conveyor.redis.time())
    lag = value(samples((await Metrics().render(conveyor)).decode()), LAG, queue="q")
    after = server_ms(await conveyor.redis.time())
    assert lag is not None
    return (before - born) / 1000, lag, (after - born) / 1000


async def test_recorder_lag_is_the_age_of_the_oldest_unacknowledged_event(
    conveyor: Conveyor,
) -> None:
    for _ in range(2):
        await conveyor.enqueue("noop")
    stream = conveyor.keys.queue("q").events
    first, second = [entry_id for entry_id, _ in await conveyor.redis.xrange(stream, count=2)]
    text = (await Metrics().render(conveyor)).decode()
    assert value(samples(text), LAG, queue="q") is None  # no recorder has ever run
    await conveyor.redis.xgroup_create(stream, GROUP, id="0")

    low, lag, high = await lag_within(conveyor, first)  # none delivered yet
    assert low <= lag <= high
    await conveyor.redis.xreadgroup(GROUP, "r1", {stream: ">"}, count=1)
    low, lag, high = await lag_within(conveyor, first)  # delivered, not acknowledged
    assert low <= lag <= high
    await conveyor.redis.xack(stream, GROUP, first)
    low, lag, high = await lag_within(conveyor, second)  # the next one, not delivered
    assert low <= lag <= high
    entries = await conveyor.redis.xreadgroup(GROUP, "r1", {stream: ">"})
    await conveyor.redis.xack(stream, GROUP, *[i for _, batch in entries for i, _ in batch])
    text = (await Metrics().render(conveyor)).decode()
    assert value(samples(text), LAG, queue="q") == 0.0


async def test_deferrals_are_counted_by_reason(
    conveyor: Conveyor, client: httpx.AsyncClient, any_redis: RedisServer,
) -> None:
    """A worker of another app that shares the queue hands the job back ('no handler'); it
    also serves a queue with no events stream yet, which the scrape must take in its stride."""
    other = Conveyor(redis_url=any_redis.url, **FAST)

    @other.job(queue="q")
    async def unrelated() -> None:
        pass

    worker = Worker(other, ["q", "idle"], concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        await conveyor.enqueue("noop")
        # An entry no script writes: counted, under a reason that cannot grow the labels.
        await conveyor.redis.xadd(conveyor.keys.queue("q").events,
                                  {"event": "deferred", "job": "x", "reason": "made up"})

        async def scraped() -> Samples | None:
            found = samples((await client.get("/metrics")).text)
            counted = [value(found, "conveyor_jobs_deferred_total", queue="q", reason=r)
                       for r in ("no handler", "other")]
            return found if all(counted) else None

        found = await wait_for(scraped, timeout=30)
    finally:
        worker.stop()
        await task
        await other.close()
    assert value(found, "conveyor_queue_workers", queue="q") == 1
    assert value(found, "conveyor_queue_workers", queue="idle") == 1
    assert value(found, "conveyor_jobs_deferred_total", queue="q", reason="made up") is None


async def test_leaders_are_the_live_schedulers_that_hold_the_lock(
    conveyor: Conveyor, client: httpx.AsyncClient,
) -> None:
    schedulers = [Scheduler(conveyor, record_history=False) for _ in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        async def both_seen() -> Samples | None:
            if not any(s.leading for s in schedulers):  # the lock is taken before the scrape
                return None
            found = samples((await client.get("/metrics")).text)
            return found if value(found, "conveyor_schedulers_alive") == 2 else None

        found = await wait_for(both_seen, timeout=30)
    finally:
        for s in schedulers:
            s.stop()
        await asyncio.gather(*tasks)
    assert value(found, "conveyor_scheduler_leaders") == 1


async def test_redis_down_is_a_503_not_a_500(
    client: httpx.AsyncClient, any_redis: RedisServer,
) -> None:
    assert (await client.get("/metrics")).status_code == 200
    any_redis.kill()
    r = await client.get("/metrics")
    assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
