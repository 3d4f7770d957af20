"""Broker transitions against real servers: order, delays, retries, the DLQ, events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor, IdempotencyConflict, JobFailed, Retry, Worker
from conveyor.errors import NonRetryable
from conveyor.worker.runner import Outcome


async def drain_ids(app: Conveyor, queue: str, count: int) -> list[str]:
    """Claim one at a time as a worker would, returning ids in claim order."""
    out: list[str] = []
    while True:
        result = await app.broker.claim(queue, "w-test", count)
        if not result.jobs:
            return out
        out += [j.id for j in result.jobs]


def register_noop(app: Conveyor) -> None:
    @app.job(queue="q")
    async def noop(n: int) -> int:
        return n


async def test_strict_priority_then_fifo(app: Conveyor) -> None:
    register_noop(app)
    submitted: dict[str, list[str]] = {"high": [], "normal": [], "low": []}
    for i in range(30):
        priority = ("low", "normal", "high")[i % 3]
        handle = await app.enqueue("noop", {"n": i}, priority=priority)
        submitted[priority].append(handle.id)
    claimed = await drain_ids(app, "q", 4)
    assert claimed == submitted["high"] + submitted["normal"] + submitted["low"]


async def test_batch_claim_respects_k_and_marks_attempt(app: Conveyor) -> None:
    register_noop(app)
    await app.enqueue_many([{"type": "noop", "args": {"n": i}} for i in range(10)])
    result = await app.broker.claim("q", "w1", 7)
    assert len(result.jobs) == 7
    assert {j.attempt for j in result.jobs} == {1}
    info = await app.get_job(result.jobs[0].id)
    assert info is not None and info.status == "active" and info.worker == "w1"


async def test_delayed_job_never_runs_early(app: Conveyor) -> None:
    ran_at: list[float] = []

    @app.job(queue="q")
    async def stamp() -> None:
        ran_at.append(asyncio.get_running_loop().time())

    worker = Worker(app, ["q"], concurrency=4)
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    start = loop.time()
    handles = [await app.enqueue("stamp", {}, delay=d) for d in (0.3, 0.6)]
    at = datetime.now(UTC) + timedelta(seconds=0.4)
    handles.append(await app.enqueue("stamp", {}, run_at=at))
    assert (await app.get_job(handles[0].id)).status == "delayed"  # type: ignore[union-attr]
    for h in handles:
        await h.result(timeout=5)
    worker.stop()
    await task
    # Redis time and the loop clock differ by well under the 20 ms we allow for clock skew.
    assert sorted(ran_at)[0] - start >= 0.28
    assert sorted(ran_at)[-1] - start >= 0.58


async def test_retries_with_backoff_then_dead_with_every_error(app: Conveyor) -> None:
    @app.job(queue="q", max_attempts=3)
    def explode(tag: str) -> None:
        raise RuntimeError(f"boom {tag}")

    worker = Worker(app, ["q"], concurrency=2)
    task = asyncio.create_task(worker.run())
    handle = await app.enqueue("explode", {"tag": "x"})
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=10)
    worker.stop()
    await task
    job = failed.value.job
    assert job.status == "dead" and job.attempt == 3 and job.failures == 3
    assert [e.attempt for e in job.errors] == [1, 2, 3]
    assert all("RuntimeError: boom x" in e.traceback for e in job.errors)
    assert await app.redis.zscore(app.keys.queue("q").dead, handle.id) is not None
    events = [f["event"] for _, f in await app.redis.xrange(app.keys.queue("q").events)
              if f["job"] == handle.id]
    assert events == ["submitted", "active", "retrying", "queued", "active", "retrying",
                      "queued", "active", "dead"]


async def test_retry_request_and_non_retryable(app: Conveyor) -> None:
    seen: list[int] = []

    @app.job(queue="q", max_attempts=5)
    async def once_more(ctx_attempts: int, ctx=None) -> int:  # type: ignore[no-untyped-def]
        seen.append(ctx.attempt)
        if ctx.attempt < ctx_attempts:
            raise Retry(delay=0.05)
        return ctx.attempt

    @app.job(queue="q", max_attempts=5)
    async def hopeless() -> None:
        raise NonRetryable("bad input, do not retry")

    worker = Worker(app, ["q"], concurrency=2)
    task = asyncio.create_task(worker.run())
    assert await (await app.enqueue("once_more", {"ctx_attempts": 3})).result(timeout=5) == 3
    with pytest.raises(JobFailed) as failed:
        await (await app.enqueue("hopeless", {})).result(timeout=5)
    worker.stop()
    await task
    assert seen == [1, 2, 3]
    assert failed.value.job.attempt == 1 and failed.value.job.status == "dead"


async def test_backoff_delay_grows_within_cap(app: Conveyor) -> None:
    app.configure(backoff_base_seconds=0.2, backoff_cap_seconds=0.3)
    register_noop(app)
    handle = await app.enqueue("noop", {"n": 1})
    (job,) = (await app.broker.claim("q", "w1", 1)).jobs
    worker = Worker(app, ["q"])
    await worker._fail(job, Outcome(False, error={"type": "E", "message": "m"}))
    info = await app.get_job(handle.id)
    assert info is not None and info.status == "retrying"
    assert info.due_ms is not None and info.started_ms is not None
    assert 0 <= info.due_ms - info.started_ms <= 300 + 50


async def test_cancel_queued_and_retry_dead(app: Conveyor) -> None:
    register_noop(app)
    handle = await app.enqueue("noop", {"n": 1})
    assert await app.cancel(handle.id) == "canceled"
    assert await drain_ids(app, "q", 10) == []
    await app.retry(handle.id)
    assert await drain_ids(app, "q", 10) == [handle.id]


async def test_enqueue_is_idempotent_per_key(app: Conveyor) -> None:
    register_noop(app)
    first = await app.enqueue("noop", {"n": 1}, idempotency_key="order-1")
    again = await app.enqueue("noop", {"n": 1}, idempotency_key="order-1")
    assert first.created and not again.created and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await app.enqueue("noop", {"n": 2}, idempotency_key="order-1")
    assert await drain_ids(app, "q", 10) == [first.id]


async def test_every_transition_is_in_the_stream_with_growing_seq(app: Conveyor) -> None:
    register_noop(app)
    worker = Worker(app, ["q"], concurrency=2)
    task = asyncio.create_task(worker.run())
    handle = await app.enqueue("noop", {"n": 5})
    assert await handle.result(timeout=5) == 5
    worker.stop()
    await task
    entries = [f for _, f in await app.redis.xrange(app.keys.queue("q").events)
               if f["job"] == handle.id]
    assert [e["event"] for e in entries] == ["submitted", "active", "completed"]
    assert [int(e["seq"]) for e in entries] == [1, 2, 3]
    assert entries[-1]["result"] == "5"


async def test_the_marker_holds_the_earliest_wake_up(app: Conveyor) -> None:
    """Idle workers block on the marker (BZPOPMIN): a submit adds it when it is missing and
    only ever moves it earlier, so a later delayed job never postpones an earlier wake-up."""
    register_noop(app)
    marker = app.keys.queue("q").marker

    async def wake_at() -> float | None:
        return await app.redis.zscore(marker, "0")

    late = await app.enqueue("noop", {"n": 1}, delay=600)
    assert await wake_at() == (await app.get_job(late.id)).due_ms  # type: ignore[union-attr]
    soon = await app.enqueue("noop", {"n": 2}, delay=60)
    soon_due = (await app.get_job(soon.id)).due_ms  # type: ignore[union-attr]
    assert await wake_at() == soon_due
    await app.enqueue("noop", {"n": 3}, delay=300)  # later than the marker: no change
    assert await wake_at() == soon_due
    await app.redis.delete(marker)  # a worker popped it
    await app.enqueue_many([{"type": "noop", "args": {"n": 4}}, {"type": "noop",
                                                                  "args": {"n": 5}}])
    ready = await wake_at()
    assert ready is not None and ready < soon_due  # a ready job: wake now


async def make_due(app: Conveyor, queue: str, count: int) -> list[str]:
    """``count`` delayed jobs, then all of them due now (their scores set to 0 in due
    order, as "run now" does), without waiting for a clock."""
    handles = await app.enqueue_many(
        [{"type": "noop", "args": {"n": i}, "delay": 3600} for i in range(count)])
    ids = [h.id for h in handles]
    # Equal scores sort by member: give each its own score so due order is submit order.
    await app.redis.zadd(app.keys.queue(queue).delayed,
                         {job_id: i for i, job_id in enumerate(ids)}, xx=True)
    return ids


async def test_promotion_is_chunked_and_bounded_in_time(app: Conveyor) -> None:
    """A claim stops promoting after the chunk of 100 that goes past its time budget and
    answers wait_ms 0, so a big backlog coming due never holds Redis in one long call; the
    next claims promote the rest, in due order, and nothing is promoted twice or left."""
    register_noop(app)
    qk = app.keys.queue("q")
    ids = await make_due(app, "q", 350)
    app.broker.promote_budget_us = 0  # every chunk is over budget: one chunk per call
    waits, claimed = [], []
    for left in (250, 150, 50, 0):
        result = await app.broker.claim("q", "w-test", 1)
        waits.append(result.wait_ms)
        claimed += [j.id for j in result.jobs]
        assert await app.redis.zcard(qk.delayed) == left
    assert waits == [0, 0, 0, -1]  # the last chunk was short: nothing more was due
    claimed += await drain_ids(app, "q", 100)
    assert claimed == ids
    events = await app.redis.xrange(qk.events)
    queued = [e for _, e in events if e["event"] == "queued"]
    assert len(queued) == 350


async def test_promotion_limit_per_call_still_holds(app: Conveyor) -> None:
    register_noop(app)
    qk = app.keys.queue("q")
    await make_due(app, "q", 260)
    app.broker.promote_limit = 120  # not a multiple of the chunk: the last chunk is cut
    result = await app.broker.claim("q", "w-test", 1)
    assert result.wait_ms == 0
    assert await app.redis.zcard(qk.delayed) == 140
    assert await app.redis.llen(qk.ready("normal")) == 119


async def test_avoided_due_jobs_do_not_stop_promotion(app: Conveyor) -> None:
    """Jobs this worker handed back (avoid, avoid_until) stay delayed for it; the chunks
    after them are still promoted, even with no time budget left."""
    register_noop(app)
    qk = app.keys.queue("q")
    ids = await make_due(app, "q", 150)
    until = 2**41  # far in the future, in ms
    for job_id in ids[:120]:
        await app.redis.hset(qk.job(job_id), mapping={"avoid": "w-test", "avoid_until": until})
    app.broker.promote_budget_us = 0
    result = await app.broker.claim("q", "w-test", 50)
    assert [j.id for j in result.jobs] == ids[120:]
    assert await app.redis.zcard(qk.delayed) == 120
    assert await drain_ids(app, "q", 100) == []  # still avoided by this worker
    taken: list[str] = []  # another worker promotes them, a chunk per call
    while len(taken) < 120:
        result = await app.broker.claim("q", "w-other", 200)
        assert result.jobs
        taken += [j.id for j in result.jobs]
    assert taken == ids[:120]
