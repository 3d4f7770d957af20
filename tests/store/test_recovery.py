"""Recovery: jobs Redis lost come back from the history store with their id and content."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from redis.asyncio import Redis

from conveyor.broker.broker import Broker, Completion
from conveyor.broker.keys import Keys
from conveyor.recovery import RecorderBehind, recover
from conveyor.scheduler.recorder import Recorder
from conveyor.settings import Settings
from conveyor.store import Store
from tests.store.conftest import StartRecorder
from tests.store.helpers import caught_up, new_job, submit, wait_until


async def test_recover_brings_back_jobs_after_flushall(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder
) -> None:
    start_recorder(store)
    await redis.sadd(keys.glob.queues, "a", "b")
    ready = [new_job("a", priority=p, args={"i": i}, max_attempts=4)
             for i, p in enumerate(["high", "normal", "low"] * 3)]
    later = [new_job("b", delay_ms=3_600_000, type="report") for _ in range(4)]
    await broker.enqueue("a", ready)
    await broker.enqueue("b", later)
    claimed = (await broker.claim("a", "w1", 4)).jobs  # high first: ready[0], [3], [6], then one
    await broker.complete("a", "w1", [Completion(j.id, j.attempt, "1") for j in claimed[:2]])
    await broker.fail(claimed[2], "w1", {"type": "E", "message": "again"}, 3_600_000)
    running = claimed[3]
    everything = {j.id: j.queue for j in ready + later}
    await caught_up(store, redis, keys, everything)

    await redis.flushall()
    plan = await recover(redis, keys, store, broker)  # a dry run by default
    lost = {j.id for j in ready + later} - {claimed[0].id, claimed[1].id}
    assert {r.job_id for r in plan} == lost and not any(r.done for r in plan)
    assert await redis.keys("*:job:*") == []  # (the recorder made its streams again)

    done = await recover(redis, keys, store, broker, dry_run=False)
    assert {r.job_id for r in done} == lost and all(r.done for r in done)
    for job in ready + later:
        if job.id in lost:
            await _same_job(redis, keys, job.queue, job.id, job.type, job.args_json,
                            job.priority, job.max_attempts)
    retrying = next(r for r in done if r.job_id == claimed[2].id)
    assert retrying.run_at_ms is not None
    assert await redis.zscore(keys.queue("a").delayed, retrying.job_id) == retrying.run_at_ms
    assert await redis.zcard(keys.queue("b").delayed) == 4
    assert await redis.smembers(keys.glob.queues) == {"a", "b"}

    # The recorder lost its groups with the rest; it must follow the jobs' new life.
    await caught_up(store, redis, keys, {j: everything[j] for j in lost})
    again = (await broker.claim("a", "w2", 10)).jobs
    assert running.id in {j.id for j in again}
    await broker.complete("a", "w2", [Completion(j.id, j.attempt, "2") for j in again])

    async def history_of_running() -> object:
        job = await store.get_job(running.id)
        return job if job and job.status == "completed" else None

    job = await wait_until(history_of_running, 10, "the recovered job to complete")
    assert [(a.incarnation, a.attempt, a.outcome) for a in job.attempts] == [
        (0, 1, "lost"), (1, 1, "completed")]
    assert job.incarnation == 1
    assert await recover(redis, keys, store, broker, dry_run=False) == []
    # One bulk write is not atomic across jobs: wait for the rest of the batch.
    await caught_up(store, redis, keys, {j: everything[j] for j in lost})


async def test_nothing_to_recover_when_redis_has_every_job(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder
) -> None:
    start_recorder(store)
    jobs = [new_job("a") for _ in range(5)]
    await redis.sadd(keys.glob.queues, "a")
    await broker.enqueue("a", jobs)
    await caught_up(store, redis, keys, {j.id: "a" for j in jobs})
    assert await recover(redis, keys, store, broker, dry_run=False) == []


async def _same_job(redis: Redis, keys: Keys, queue: str, job_id: str, type: str,
                    args: str, priority: str, max_attempts: int) -> None:
    h = await redis.hgetall(keys.queue(queue).job(job_id))
    assert (h["id"], h["type"], h["priority"], int(h["max_attempts"])) == (
        job_id, type, priority, max_attempts)
    assert orjson.loads(h["args"]) == orjson.loads(args)


async def test_recovery_waits_for_the_recorder(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder
) -> None:
    """Events the store has not seen yet could say a job finished: recovery refuses to guess."""
    jobs = [new_job("a") for _ in range(3)]
    await redis.sadd(keys.glob.queues, "a")
    await broker.enqueue("a", jobs)
    with pytest.raises(RecorderBehind, match="recorder"):
        await recover(redis, keys, store, broker, wait_seconds=0.3)
    start_recorder(store)
    assert await recover(redis, keys, store, broker, dry_run=False) == []  # it waited
    assert all([await store.get_job(j.id) for j in jobs])


async def test_a_gap_in_the_events_holds_back_jobs_whose_end_may_be_lost(
    store: Store, redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A job completes while no recorder runs and its events are trimmed (MAXLEN) before one
    reads them: the store still holds it as queued. Once Redis has let it go too, recovery
    must not run it again; the recorder reports the gap, recovery lists the job as unknown."""
    await redis.config_set("stream-node-max-entries", "4")  # so MAXLEN ~ trims finely
    # (below the settings minimum of 1000, to keep the test small)
    small = Broker(redis, keys, Settings().model_copy(update={"events_maxlen": 20}))
    recorder = Recorder(redis, keys, store, small.settings, "r1", block_ms=200,
                        discover_seconds=0.1)
    task = asyncio.create_task(recorder.run())
    done_job = (await submit(redis, small, "q", 1))[0]
    await caught_up(store, redis, keys, {done_job: "q"})
    recorder.stop()
    await asyncio.wait_for(task, 10)

    # No recorder: the job runs to its end, then enough traffic trims its events away.
    claimed = (await small.claim("q", "w1", 1)).jobs
    await small.complete("q", "w1", [Completion(claimed[0].id, claimed[0].attempt, "1")])
    await submit(redis, small, "q", 60)
    await redis.delete(keys.queue("q").job(done_job))  # its retention ran out

    caplog.set_level(logging.ERROR, "conveyor.recorder")
    recorder = Recorder(redis, keys, store, small.settings, "r2", block_ms=200,
                        discover_seconds=0.1)
    task = asyncio.create_task(recorder.run())
    try:
        later = (await submit(redis, small, "q", 1))[0]  # submitted after the gap
        await caught_up(store, redis, keys, {later: "q"})
        await redis.delete(keys.queue("q").job(later))  # Redis lost this one for real
        plans = {p.job_id: p for p in await recover(redis, keys, store, small, dry_run=False)}
    finally:
        recorder.stop()
        await asyncio.wait_for(task, 10)

    assert recorder.stats.gaps == 1
    [gap] = await store.gaps("q")
    assert gap.lost is not None and gap.lost > 0
    assert any("trimmed before they were recorded" in r.getMessage() for r in caplog.records)
    held = plans[done_job]
    assert not held.done and held.held_back and "history has a gap" in held.held_back
    assert not await redis.exists(keys.queue("q").job(done_job))  # not run a second time
    assert plans[later].done and plans[later].held_back is None  # newer than the gap
    forced = await recover(redis, keys, store, small, include_gaps=True)  # a dry run
    assert done_job in {p.job_id for p in forced if p.held_back is None}
