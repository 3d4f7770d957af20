"""Second-wave broker fixes, each against a real server: duplicate parents, deleting a parent,
releasing only one's own idempotency key, bounded lifetimes, orphaned lease entries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor import Conveyor
from conveyor.broker.broker import Completion
from conveyor.embedded import RedisServer
from conveyor.job import ClaimedJob
from tests.conftest import FAST

DAY_MS = 86_400_000


@pytest.fixture
async def capp(any_redis: RedisServer) -> AsyncIterator[Conveyor]:
    app = Conveyor(redis_url=any_redis.url, **FAST)
    register(app)
    yield app
    await app.close()


def register(app: Conveyor) -> None:
    @app.job(queue="q")
    async def step(n: int) -> int:
        return n


async def claim_one(app: Conveyor, worker: str = "w") -> ClaimedJob:
    (job,) = (await app.broker.claim("q", worker, 1)).jobs
    return job


async def status(app: Conveyor, job_id: str) -> str | None:
    info = await app.get_job(job_id)
    return None if info is None else info.status


# -- 1. depends_on=[a, a] ---------------------------------------------------------------------

async def test_a_parent_named_twice_counts_once(capp: Conveyor) -> None:
    parent = await capp.enqueue("step", {"n": 1})
    child = await capp.enqueue("step", {"n": 2}, depends_on=[parent.id, parent.id])
    job = await claim_one(capp)
    assert await capp.broker.complete("q", "w", [Completion(job.id, job.attempt, "1")]) == [1]
    assert await status(capp, child.id) == "queued"


async def test_the_script_counts_a_repeated_parent_once(capp: Conveyor) -> None:
    """The Lua side is robust on its own: a batch built without the Python check."""
    parent = await capp.enqueue("step", {"n": 1})
    job = await capp.prepare({"type": "step", "args": {"n": 2}, "depends_on": [parent.id]})
    twice = job._replace(depends_on=(parent.id, parent.id))
    await capp.broker.enqueue("q", [twice])
    claimed = await claim_one(capp)
    await capp.broker.complete("q", "w", [Completion(claimed.id, claimed.attempt, "1")])
    assert await status(capp, twice.id) == "queued"


# -- 2. deleting a parent ---------------------------------------------------------------------

async def test_deleting_a_parent_settles_its_children(capp: Conveyor) -> None:
    parent = await capp.enqueue("step", {"n": 1})
    child = await capp.enqueue("step", {"n": 2}, depends_on=[parent.id])
    grandchild = await capp.enqueue("step", {"n": 3}, depends_on=[child.id])
    runner = await capp.enqueue("step", {"n": 4}, depends_on=[parent.id],
                                on_parent_failure="run")
    assert await capp.broker.delete("q", [parent.id]) == [1]
    assert await status(capp, child.id) == "canceled"
    assert await status(capp, grandchild.id) == "canceled"
    assert await status(capp, runner.id) == "queued"
    qk = capp.keys.queue("q")
    assert 0 < await capp.redis.pttl(qk.job(child.id)) <= 3600_000
    assert await capp.redis.exists(qk.job(parent.id) + ":children") == 0
    (claimed,) = (await capp.broker.claim("q", "w", 10)).jobs
    assert claimed.id == runner.id


# -- 4. release-on-finish frees only the key that names the job --------------------------------

@pytest.mark.parametrize("how", ["complete", "dead", "cancel_failed", "cancel"])
async def test_release_on_finish_keeps_a_key_that_names_another_job(
    any_redis: RedisServer, how: str
) -> None:
    app = Conveyor(redis_url=any_redis.url, release_unique_on_finish=True, **FAST)
    register(app)
    try:
        first = await app.enqueue("step", {"n": 1}, idempotency_key="k")
        qk = app.keys.queue("q")
        job: ClaimedJob | None = None
        if how != "cancel":
            job = await claim_one(app)
        # The key ran out (its TTL) and a second job took it.
        await app.redis.delete(qk.unique("k"))
        second = await app.enqueue("step", {"n": 2}, idempotency_key="k")
        assert second.id != first.id
        if job is None:
            assert (await app.broker.cancel("q", first.id))[0] == 1
        elif how == "complete":
            assert await app.broker.complete("q", "w", [Completion(job.id, job.attempt, "1")]) \
                == [1]
        else:
            delay = -1 if how == "dead" else -2
            await app.broker.fail(job, "w", {"type": "E", "message": "x"}, delay)
        stored = await app.redis.get(qk.unique("k"))
        assert stored is not None and stored.split(" ")[0] == second.id
        # The key's own job still frees it when it ends.
        assert (await app.broker.cancel("q", second.id))[0] == 1
        assert await app.redis.exists(qk.unique("k")) == 0
    finally:
        await app.close()


# -- 5. bounded lifetimes ---------------------------------------------------------------------

async def test_terminal_jobs_dead_set_and_held_set_all_expire(any_redis: RedisServer) -> None:
    days = 0.001  # 86.4 s
    app = Conveyor(redis_url=any_redis.url, dlq_retention_days=days, poison_threshold=1,
                   **FAST)
    register(app)
    try:
        qk = app.keys.queue("q")
        retention = int(days * DAY_MS)
        # An entry older than the retention: the next write to the dead ZSET trims it.
        await app.redis.zadd(qk.dead, {"old": 1})

        parent = await app.enqueue("step", {"n": 1})
        child = await app.enqueue("step", {"n": 2}, depends_on=[parent.id])
        job = await claim_one(app, "w1")
        held = await app.redis.pttl(qk.worker_jobs("w1"))
        assert 0 < held <= 4 * FAST["lease_seconds"] * 1000
        await app.broker.fail(job, "w1", {"type": "E", "message": "x"}, -1)  # dead
        assert await status(app, parent.id) == "dead"
        assert 0 < await app.redis.pttl(qk.job(parent.id)) <= retention
        assert 0 < await app.redis.pttl(qk.dead) <= retention
        assert await app.redis.zscore(qk.dead, "old") is None
        assert 0 < await app.redis.pttl(qk.job(child.id)) <= 3600_000  # canceled by it

        late = await app.enqueue("step", {"n": 3}, depends_on=[parent.id])
        assert late.status == "canceled"  # canceled at submit
        assert 0 < await app.redis.pttl(qk.job(late.id)) <= 3600_000

        # A poison pill (its worker lost once, threshold 1), and its child.
        poison = await app.enqueue("step", {"n": 4})
        pchild = await app.enqueue("step", {"n": 5}, depends_on=[poison.id])
        await claim_one(app, "w2")
        assert await app.broker.reap("q", dead_worker="w2") == (0, 1)
        assert await status(app, poison.id) == "dead"
        assert 0 < await app.redis.pttl(qk.job(poison.id)) <= retention
        assert 0 < await app.redis.pttl(qk.job(pchild.id)) <= 3600_000
        assert 0 < await app.redis.pttl(qk.dead) <= retention
    finally:
        await app.close()


async def test_renew_keeps_the_held_set_alive(capp: Conveyor) -> None:
    qk = capp.keys.queue("q")
    await capp.enqueue("step", {"n": 1})
    job = await claim_one(capp, "w1")
    await capp.redis.pexpire(qk.worker_jobs("w1"), 50_000_000)  # as if long ago
    await capp.broker.renew("q", [(job.id, job.attempt)], worker_id="w1")
    assert 0 < await capp.redis.pttl(qk.worker_jobs("w1")) <= 4 * FAST["lease_seconds"] * 1000


# -- 6. orphaned active entries ---------------------------------------------------------------

async def test_reap_drops_orphans_and_reaches_the_real_expired_lease(capp: Conveyor) -> None:
    qk = capp.keys.queue("q")
    real = await capp.enqueue("step", {"n": 1})
    await claim_one(capp)
    await capp.redis.zadd(qk.active, {real.id: 5_000})  # its lease ran out long ago
    await capp.redis.zadd(qk.active, {f"gone-{i}": 1_000 + i for i in range(1500)})
    requeued, dead = await capp.broker.reap("q")
    assert (requeued, dead) == (1, 0)
    assert await status(capp, real.id) == "queued"
    assert await capp.redis.zcard(qk.active) == 0


async def test_reap_leaves_live_leases_alone(capp: Conveyor) -> None:
    qk = capp.keys.queue("q")
    await capp.enqueue("step", {"n": 1})
    job = await claim_one(capp)
    await capp.redis.zadd(qk.active, {"gone": 1})
    assert await capp.broker.reap("q") == (0, 0)
    assert await capp.redis.zrange(qk.active, 0, -1) == [job.id]
