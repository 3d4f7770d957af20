"""Redis Cluster (3 primaries): ten queues over different slots, every feature, no CROSSSLOT."""

from __future__ import annotations

import asyncio

import pytest
from redis.cluster import key_slot

from conveyor import Conveyor, JobFailed, Worker
from tests.conftest import FAST
from tests.topology.conftest import ClusterSetup

QUEUES = [f"q{i}" for i in range(10)]


async def test_everything_works_on_a_cluster(cluster_setup: ClusterSetup) -> None:
    app = Conveyor(redis_url=cluster_setup.url, **FAST)
    slots = {key_slot(app.keys.queue(q).events.encode()) for q in QUEUES}
    assert len(slots) == len(QUEUES)
    nodes = {s // 5461 for s in slots}
    assert nodes == {0, 1, 2}, "the queues should spread over every primary"

    @app.job(queue="q0")
    async def echo(n: int) -> int:
        return n

    @app.job(queue="q0", max_attempts=2)
    async def broken() -> None:
        raise RuntimeError("no")

    worker = Worker(app, QUEUES, concurrency=20)
    task = asyncio.create_task(worker.run())
    try:
        specs = [{"type": "echo", "args": {"n": i}, "queue": QUEUES[i % 10]} for i in range(200)]
        handles = await app.enqueue_many(specs)
        assert [await h.result(timeout=20) for h in handles] == list(range(200))
        parent = await app.enqueue("echo", {"n": 1}, queue="q3")
        child = await app.enqueue("echo", {"n": 2}, queue="q3", depends_on=[parent.id])
        assert await child.result(timeout=10) == 2
        dead = await app.enqueue("broken", {}, queue="q7")
        with pytest.raises(JobFailed):
            await dead.result(timeout=10)
        assert await app.retry_dead("q7") == 1
        later = await app.enqueue("echo", {"n": 3}, queue="q5", delay=60)
        assert await app.cancel(later.id) == "canceled"
        async with app.lock("cluster-lock", ttl=5) as lock:
            assert lock.token >= 1
        from conveyor import inspect as views

        stats = {s.name: s for s in await views.queue_stats(app)}
        assert set(QUEUES) <= set(stats)
        assert [w.id for w in await views.workers(app)] == [worker.id]
        # /metrics' reads of schedulers and recorder lag pipeline keyless and per-queue
        # commands over every node.
        from conveyor.api.metrics import read_services

        services = await read_services(app, QUEUES)
        assert (services.schedulers_alive, services.scheduler_leaders) == (0, 0)
    finally:
        worker.stop()
        await task
        await app.close()


async def test_the_api_event_hub_reads_every_queue_on_a_cluster(
    cluster_setup: ClusterSetup,
) -> None:
    from conveyor.api.hub import Hub

    app = Conveyor(redis_url=cluster_setup.url, **FAST)

    @app.job(queue="q0")
    async def echo(n: int) -> int:
        return n

    await app.enqueue_many([{"type": "echo", "args": {"n": 0}, "queue": q} for q in QUEUES])
    seen: set[str] = set()
    all_seen = asyncio.Event()

    def observe(ev: object) -> None:
        seen.add(ev.queue)  # type: ignore[attr-defined]
        if seen >= set(QUEUES):
            all_seen.set()

    hub = Hub(app, block_ms=500, observers=[observe])
    await hub.start()
    try:
        await app.enqueue_many([{"type": "echo", "args": {"n": 1}, "queue": q} for q in QUEUES])
        await asyncio.wait_for(all_seen.wait(), 10)  # live events from all ten queues' slots
    finally:
        await hub.stop()
        await app.close()
