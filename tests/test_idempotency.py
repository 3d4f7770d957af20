"""Idempotency keys: one job for many identical submissions, bounded by a TTL, optionally
released when the job ends."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, Worker


def register(app: Conveyor) -> None:
    @app.job(queue="q")
    async def charge(order: str) -> str:
        return order


async def test_100_concurrent_identical_submissions_make_one_job(app: Conveyor) -> None:
    register(app)
    handles = await asyncio.gather(*(
        app.enqueue("charge", {"order": "A-1"}, idempotency_key="order-A-1") for _ in range(100)))
    assert len({h.id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    assert await app.redis.llen(app.keys.queue("q").ready("normal")) == 1


async def test_the_key_has_a_ttl_and_never_outlives_it(app: Conveyor) -> None:
    app.configure(unique_ttl_seconds=0.3)
    register(app)
    first = await app.enqueue("charge", {"order": "B"}, idempotency_key="order-B")
    ttl = await app.redis.pttl(app.keys.queue("q").unique("order-B"))
    assert 0 < ttl <= 300
    await asyncio.sleep(0.35)  # let the TTL run out: that is the behaviour under test
    second = await app.enqueue("charge", {"order": "B"}, idempotency_key="order-B")
    assert second.created and second.id != first.id


async def test_released_when_the_job_ends_if_configured(app: Conveyor) -> None:
    app.configure(release_unique_on_finish=True)
    register(app)
    worker = Worker(app, ["q"], concurrency=2)
    task = asyncio.create_task(worker.run())
    first = await app.enqueue("charge", {"order": "C"}, idempotency_key="order-C")
    assert await first.result(timeout=5) == "C"
    again = await app.enqueue("charge", {"order": "C"}, idempotency_key="order-C")
    assert again.created and again.id != first.id
    worker.stop()
    await task
