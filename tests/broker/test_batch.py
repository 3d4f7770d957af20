"""enqueue_many over several queues is all or nothing: a refusal in any queue writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor import Conveyor, IdempotencyConflict, ValidationError
from conveyor.embedded import RedisServer
from tests.conftest import FAST


@pytest.fixture
async def two_queues(any_redis: RedisServer) -> AsyncIterator[Conveyor]:
    app = Conveyor(redis_url=any_redis.url, **FAST)

    @app.job(queue="q1")
    async def one(n: int) -> int:
        return n

    @app.job(queue="q2")
    async def two(n: int) -> int:
        return n

    yield app
    await app.close()


async def queue_is_empty(app: Conveyor, queue: str) -> bool:
    qk = app.keys.queue(queue)
    jobs = [k async for k in app.redis.scan_iter(match=qk.job_prefix + "*")]
    lengths = [await app.redis.llen(k) for k in qk.ready_all]
    return not jobs and lengths == [0, 0, 0] and await app.redis.xlen(qk.events) == 0


async def test_a_key_conflict_in_a_later_queue_writes_nothing(two_queues: Conveyor) -> None:
    app = two_queues
    taken = await app.enqueue("two", {"n": 1}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as raised:
        await app.enqueue_many([{"type": "one", "args": {"n": 1}},
                                {"type": "two", "args": {"n": 2}, "idempotency_key": "k"}])
    assert raised.value.existing_id == taken.id
    assert await queue_is_empty(app, "q1")


async def test_a_missing_parent_in_a_later_queue_writes_nothing(two_queues: Conveyor) -> None:
    app = two_queues
    with pytest.raises(ValidationError) as raised:
        await app.enqueue_many([{"type": "one", "args": {"n": 1}},
                                {"type": "two", "args": {"n": 2}, "depends_on": ["f" * 32]}])
    assert raised.value.field == "jobs[1].depends_on"
    assert await queue_is_empty(app, "q1")


async def test_a_late_conflict_undoes_the_earlier_queues(two_queues: Conveyor) -> None:
    """A concurrent producer took the key after the check: the writes of the earlier queues
    are undone (the check is skipped here to stand for that race)."""
    app = two_queues
    taken = await app.enqueue("two", {"n": 1}, idempotency_key="k")
    jobs = [await app.prepare({"type": "one", "args": {"n": 1}, "idempotency_key": "a"}),
            await app.prepare({"type": "one", "args": {"n": 2}}),
            await app.prepare({"type": "two", "args": {"n": 2}, "idempotency_key": "k"})]
    with pytest.raises(IdempotencyConflict) as raised:
        await app.broker.enqueue_many({"q1": jobs[:2], "q2": jobs[2:]}, precheck=False)
    assert raised.value.existing_id == taken.id
    qk = app.keys.queue("q1")
    assert [await app.redis.exists(qk.job(j.id)) for j in jobs[:2]] == [0, 0]
    assert await app.redis.exists(qk.unique("a")) == 0
    assert [await app.redis.llen(k) for k in qk.ready_all] == [0, 0, 0]
    events = await app.redis.xrange(qk.events)
    assert [e[1]["event"] for e in events] == ["submitted", "submitted", "deleted", "deleted"]


async def test_undo_leaves_a_job_that_moved_on(two_queues: Conveyor) -> None:
    app = two_queues
    handles = await app.enqueue_many([{"type": "one", "args": {"n": n}} for n in range(2)])
    (claimed,) = (await app.broker.claim("q1", "w", 1)).jobs
    codes = await app.broker.undo("q1", [h.id for h in handles])
    assert sorted(codes) == [-3, 1]
    assert (await app.get_job(claimed.id)) is not None
