"""A worker whose own heartbeat is late must not reap itself.

Found by the chaos suite (docs/chaos.md): on a starved machine a worker's heartbeat can land
more than the heartbeat TTL after the previous one while the worker keeps running; its own
reaper, which runs in the same process, then declared it dead and requeued every job it was
running, so each of them ran twice. Other workers may still judge it dead by its silence
(that is the rule), but a worker knows it is alive.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from conveyor import Context, Conveyor, Worker
from conveyor.broker.broker import Broker
from conveyor.embedded import RedisServer
from tests.conftest import FAST

# The heartbeat runs in a thread with a Broker of its own: a fault is injected on the class.

async def test_a_worker_with_a_late_heartbeat_does_not_requeue_its_own_jobs(
    any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Conveyor(redis_url=any_redis.url, **FAST)
    runs: list[int] = []

    @app.job(queue="q", max_attempts=5)
    async def slow(ctx: Context) -> int:
        runs.append(ctx.attempt)
        await asyncio.sleep(2.5)  # past the 1 s heartbeat TTL
        return ctx.attempt

    worker = Worker(app, concurrency=2)

    async def silent(*args: object) -> int:  # heartbeats stop landing, as when starved
        return 0

    run = asyncio.create_task(worker.run())
    try:
        handle = await app.enqueue("slow", {})
        while not runs:
            await asyncio.sleep(0.01)  # until the handler started
        monkeypatch.setattr(Broker, "heartbeat", silent)
        assert await handle.result(timeout=10) == 1
    finally:
        worker.stop()
        await asyncio.wait_for(run, 15)
    events = [f["event"] for _, f in await app.redis.xrange(app.keys.queue("q").events)]
    await app.close()
    assert runs == [1]  # it ran once...
    assert "requeued" not in events  # ...and was never taken from the live worker
    assert worker.stats.stale == 0


async def test_a_worker_judges_others_only_once_its_own_heartbeats_land_again(
    any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an outage every worker looks silent; the first one back must give the others a
    heartbeat TTL to beat again before it takes their jobs (else healthy jobs pile up worker
    deaths and end as poison pills, as the chaos suite saw after a Redis restart)."""
    app = Conveyor(redis_url=any_redis.url, **FAST)

    @app.job(queue="mine")
    async def noop() -> None:
        return None

    @app.job(queue="q", max_attempts=5)
    async def held() -> None:
        return None

    ttl = FAST["heartbeat_ttl_seconds"]
    glob, qk = app.keys.glob, app.keys.queue("q")
    worker = Worker(app, queues=["mine"], concurrency=2)
    run = asyncio.create_task(worker.run())
    real_heartbeat = Broker.heartbeat

    leases: list[tuple[str, int]] = []

    async def beat_b() -> None:  # a worker "b" in another process, holding one job of q
        now = await app.redis.time()
        await app.redis.zadd(glob.workers, {"b": int(now[0]) * 1000 + int(now[1]) // 1000})
        if leases:
            await app.broker.renew("q", leases)

    async def away(*args: object) -> int:  # this worker's heartbeats do not get through
        raise RedisConnectionError("simulated outage")

    try:
        await asyncio.sleep(2 * ttl)  # the worker is up and judging
        job = await app.enqueue("held", {})
        await app.redis.hset(glob.worker("b"), mapping={"queues": '["q"]'})
        await beat_b()
        (claimed,) = (await app.broker.claim("q", "b", 1)).jobs
        leases.append((claimed.id, claimed.attempt))
        monkeypatch.setattr(Broker, "heartbeat", away)
        await asyncio.sleep(1.5 * ttl)  # "b" is now silent past the TTL, and so are we
        monkeypatch.setattr(Broker, "heartbeat", real_heartbeat)
        await asyncio.sleep(0.5 * ttl)  # we are back...
        await beat_b()  # ...and "b" half a TTL after us
        for _ in range(3):
            await asyncio.sleep(0.5 * ttl)
            await beat_b()
        assert await app.redis.hget(qk.job(job.id), "status") == "active"
        assert await app.redis.zscore(qk.active, job.id) is not None
        await asyncio.sleep(2 * ttl)  # now "b" really goes silent: its job is taken back
        assert await app.redis.hget(qk.job(job.id), "status") == "queued"
        events = [f for _, f in await app.redis.xrange(qk.events) if f["job"] == job.id]
        assert [(f["event"], f.get("worker"), f.get("reason")) for f in events[-1:]] == [
            ("requeued", "b", "worker lost")]
        assert claimed.attempt == 1
    finally:
        monkeypatch.setattr(Broker, "heartbeat", real_heartbeat)
        worker.stop()
        await asyncio.wait_for(run, 15)
        await app.close()
