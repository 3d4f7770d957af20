"""Idempotency keys: one job for many identical submissions, bounded by a TTL, optionally
released when the job ends."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, IdempotencyConflict, Worker


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


async def test_a_conflicting_key_in_a_batch_writes_nothing(app: Conveyor) -> None:
    register(app)
    await app.enqueue("charge", {"order": "D"}, idempotency_key="order-D")
    qk = app.keys.queue("q")
    before = await app.redis.llen(qk.ready("normal"))
    specs = [{"type": "charge", "args": {"order": f"new-{i}"}} for i in range(3)]
    specs.append({"type": "charge", "args": {"order": "other"}, "idempotency_key": "order-D"})
    with pytest.raises(IdempotencyConflict):
        await app.enqueue_many(specs)
    assert await app.redis.llen(qk.ready("normal")) == before


async def test_same_key_with_another_delay_is_a_conflict(app: Conveyor) -> None:
    register(app)
    await app.enqueue("charge", {"order": "E"}, idempotency_key="order-E", delay=5)
    with pytest.raises(IdempotencyConflict):
        await app.enqueue("charge", {"order": "E"}, idempotency_key="order-E", delay=50)


async def test_one_key_for_two_bodies_in_one_batch_writes_nothing(app: Conveyor) -> None:
    register(app)
    specs = [{"type": "charge", "args": {"order": order}, "idempotency_key": "order-F"}
             for order in ("F-1", "F-2")]
    with pytest.raises(IdempotencyConflict):
        await app.enqueue_many(specs)
    assert await app.redis.llen(app.keys.queue("q").ready("normal")) == 0
    same = await app.enqueue_many([specs[0], specs[0]])
    assert same[0].id == same[1].id and same[0].created and not same[1].created
