"""The single-submit path (``Broker.enqueue_one``: the enqueue script's flat one-job form, on
the broker's own connection) writes exactly what the batch path (the JSON array form) writes:
the same job hash and the same ``submitted`` event, field for field and byte for byte, for
every kind of job; and it keeps the batch path's answers, refusals and recoveries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from conveyor import Conveyor, IdempotencyConflict, ValidationError
from conveyor.broker.broker import Broker, MissingParent
from conveyor.embedded import RedisServer
from conveyor.errors import ConveyorError, NotDurable
from conveyor.job import NewJob
from tests.conftest import FAST
from tests.topology.conftest import (
    SERVICE,
    SentinelSetup,
    sentinel_setup,  # noqa: F401 (the fixture)
    wait_until,
)
from tests.topology.conftest import client as sync_client

# Differ between two jobs written a moment apart, whatever the path.
VARYING = {"id", "created", "due", "finished", "job", "ts"}


@pytest.fixture
async def two(redis_server: RedisServer) -> AsyncIterator[Conveyor]:
    """An app with two job types on two queues."""
    app = Conveyor(redis_url=redis_server.url, **FAST)

    @app.job(queue="q", max_attempts=3, timeout=12.5)
    async def work(n: int = 0, text: str = "") -> int:
        return n

    @app.job(queue="q", priority="low")
    async def other() -> None:
        return None

    yield app
    await app.close()


async def written(app: Conveyor, queue: str, job_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """The job hash and the job's first stream entry, without the fields that vary."""
    qk = app.keys.queue(queue)
    job = await app.redis.hgetall(qk.job(job_id))
    entries = await app.redis.xrange(qk.events)
    first = next(fields for _, fields in entries if fields["job"] == job_id)
    assert first["event"] == "submitted"
    return ({k: v for k, v in job.items() if k not in VARYING},
            {k: v for k, v in first.items() if k not in VARYING})


async def both_ways(app: Conveyor, spec: dict[str, Any]) -> None:
    """Submit ``spec`` through the batch form and through the one-job form (each with a fresh
    id, and a fresh idempotency key when it has one); compare what each wrote."""
    broker = app.broker
    prepared = await app.prepare(spec)
    queue = prepared.queue
    await app._register_queues([queue])
    one = prepared._replace(id=prepared.id[:-1] + "1")
    batch = prepared._replace(id=prepared.id[:-1] + "2")
    if prepared.idempotency_key:
        one = one._replace(idempotency_key=prepared.idempotency_key + "-1")
        batch = batch._replace(idempotency_key=prepared.idempotency_key + "-2")
    (by_batch,) = await broker.enqueue(queue, [batch])
    by_one = await broker.enqueue_one(one)
    assert (by_one.status, by_one.created) == (by_batch.status, by_batch.created)
    job_one, event_one = await written(app, queue, one.id)
    job_batch, event_batch = await written(app, queue, batch.id)
    if prepared.idempotency_key:  # the key differs by construction: compare the rest
        assert job_one.pop("ukey").endswith("-1") and job_batch.pop("ukey").endswith("-2")
    assert job_one == job_batch
    assert event_one == event_batch
    created = await app.redis.hmget(app.keys.queue(queue).job(one.id), "created", "due")
    created_b = await app.redis.hmget(app.keys.queue(queue).job(batch.id), "created", "due")
    # due - created is the same offset both ways (0 when ready, the delay when delayed)
    assert (int(created[1]) - int(created[0]) > 0) == (int(created_b[1]) - int(created_b[0]) > 0)


async def test_the_one_job_form_writes_what_the_batch_form_writes(two: Conveyor) -> None:
    app = two
    parent = await app.enqueue("work", {"n": 1})
    failed = await app.enqueue("work", {"n": 2})
    await app.cancel(failed.id)
    specs: list[dict[str, Any]] = [
        {"type": "work", "args": {}},
        {"type": "work", "args": {"n": 7, "text": "é ✓ \"quoted\" \\ \u0001 {braces}"}},
        {"type": "other"},
        {"type": "work", "args": {"n": 1}, "priority": "high", "max_attempts": 1000,
         "timeout": 0.001, "meta": {"tenant": "a", "nested": [1, 2.5, None]}},
        {"type": "work", "args": {"n": 1}, "timeout": 604800, "max_attempts": 7},
        {"type": "work", "args": {"n": 1}, "delay": 3600},
        {"type": "work", "args": {"n": 1}, "delay": 0.0015},
        {"type": "work", "args": {"n": 1}, "delay": 0},
        {"type": "work", "args": {"n": 1},
         "run_at": datetime.now(UTC) + timedelta(days=400)},
        {"type": "work", "args": {"n": 1}, "run_at": datetime(2001, 1, 1, tzinfo=UTC)},
        {"type": "work", "args": {"n": 3}, "idempotency_key": "key.one"},
        {"type": "work", "args": {"n": 1}, "depends_on": [parent.id]},
        {"type": "work", "args": {"n": 1}, "depends_on": [parent.id, parent.id]},
        {"type": "work", "args": {"n": 1}, "depends_on": [failed.id]},
        {"type": "work", "args": {"n": 1}, "depends_on": [failed.id, parent.id],
         "on_parent_failure": "run"},
        {"type": "work", "args": {"n": 1}, "queue": "elsewhere", "priority": "low"},
    ]
    for spec in specs:
        await both_ways(app, spec)


async def test_a_retried_id_answers_its_status_and_writes_nothing(two: Conveyor) -> None:
    app = two
    job = await app.prepare({"type": "work", "args": {"n": 1}, "delay": 60})
    await app._register_queues([job.queue])
    first = await app.broker.enqueue_one(job)
    again = await app.broker.enqueue_one(job)
    assert (first.status, again.status, again.created) == ("delayed", "delayed", True)
    assert await app.redis.xlen(app.keys.queue("q").events) == 1


async def test_refusals_are_the_batch_paths(two: Conveyor) -> None:
    app = two
    taken = await app.enqueue("work", {"n": 1}, idempotency_key="k")
    same = await app.enqueue("work", {"n": 1}, idempotency_key="k")
    assert (same.id, same.created) == (taken.id, False)
    with pytest.raises(IdempotencyConflict) as conflict:
        await app.enqueue("work", {"n": 2}, idempotency_key="k")
    assert conflict.value.existing_id == taken.id
    with pytest.raises(ValidationError) as missing:
        await app.enqueue("work", {"n": 1}, depends_on=["f" * 32])
    assert missing.value.field == "depends_on"
    job = await app.prepare({"type": "work", "args": {}, "depends_on": ["e" * 32]})
    with pytest.raises(MissingParent):
        await app.broker.enqueue_one(job)
    assert await app.redis.xlen(app.keys.queue("q").events) == 1  # only the first job


async def test_the_one_job_form_reloads_a_flushed_script_and_rides_a_reconnect(
    two: Conveyor, redis_server: RedisServer
) -> None:
    app = two
    await app.enqueue("work", {"n": 1})
    admin = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await admin.script_flush()
        after_flush = await app.enqueue("work", {"n": 2})
        assert after_flush.status == "queued"
        # Drop every client connection: the broker's own one reconnects on the next call.
        for client in await admin.client_list():
            if client["name"] != "admin":
                await admin.client_kill_filter(_id=client["id"], skipme=True)
        after_kill = await app.enqueue("work", {"n": 3})
        assert after_kill.status == "queued"
    finally:
        await admin.aclose()
    assert await app.redis.llen(app.keys.queue("q").ready("normal")) == 3


async def test_concurrent_single_submits_all_land(two: Conveyor) -> None:
    """While the broker's connection is busy, other callers go through the pool."""
    app = two
    handles = await asyncio.gather(*(app.enqueue("work", {"n": i}) for i in range(200)))
    assert len({h.id for h in handles}) == 200
    assert await app.redis.llen(app.keys.queue("q").ready("normal")) == 200


async def test_durable_settings_wait_for_the_replicas(any_redis: RedisServer) -> None:
    """With durable_replicas the single submit is the script plus WAIT, as in the batch path:
    a server with no replica cannot confirm it."""
    app = Conveyor(redis_url=any_redis.url, durable_replicas=1, durable_timeout_ms=50, **FAST)

    @app.job(queue="q")
    async def work() -> None:
        return None

    try:
        with pytest.raises(NotDurable):
            await app.enqueue("work")
        assert await app.redis.llen(app.keys.queue("q").ready("normal")) == 1
    finally:
        await app.close()


async def test_a_cluster_or_single_connection_client_takes_the_script_call(
    any_redis: RedisServer,
) -> None:
    app = Conveyor(redis_url=any_redis.url, **FAST)
    try:
        single = Redis.from_url(any_redis.url, decode_responses=True,
                                single_connection_client=True)
        broker = Broker(single, app.keys, app.settings)
        job = NewJob(id="a" * 32, type="work", queue="q", args_json="{}", priority="normal",
                     delay_ms=-1, run_at_ms=-1, max_attempts=1, timeout=1.0)
        assert (await broker.enqueue_one(job)).status == "queued"
        assert broker._lane is None
        await single.aclose()
    finally:
        await app.close()


async def test_the_broker_connection_follows_a_sentinel_failover(
    sentinel_setup: SentinelSetup,  # noqa: F811 (the imported fixture)
) -> None:
    """Over Sentinel the single submit's connection is the pool's Sentinel-managed one: after
    a fail-over (READONLY from the old primary, or a dropped connection) it reconnects to the
    new primary by itself."""
    app = Conveyor(redis_url=sentinel_setup.url, **FAST)

    @app.job(queue="q")
    async def work(n: int) -> None:
        return None

    try:
        first = await app.enqueue("work", {"n": 0})
        assert first.status == "queued" and app.broker._lane is not None
        old = sentinel_setup.current_primary_port()
        sync_client(sentinel_setup.sentinel_ports[0]).execute_command(
            "SENTINEL", "FAILOVER", SERVICE)
        wait_until(lambda: sentinel_setup.current_primary_port() != old, 30, "the fail-over")
        # Until the old primary is told to follow, it still takes writes (Sentinel's window).
        wait_until(lambda: sync_client(old).info("replication")["role"] == "slave", 30,
                   "the old primary to follow the new one")
        landed, deadline = [], asyncio.get_running_loop().time() + 30
        while len(landed) < 20 and asyncio.get_running_loop().time() < deadline:
            try:
                landed.append((await app.enqueue("work", {"n": len(landed) + 1})).id)
            except (RedisError, ConveyorError):
                await asyncio.sleep(0.2)  # the switch itself may refuse a call or two
        assert len(landed) == 20
        new = sync_client(sentinel_setup.current_primary_port())
        assert all(new.exists(app.keys.queue("q").job(job_id)) for job_id in landed)
    finally:
        await app.close()


async def test_a_submit_cancelled_mid_call_leaves_no_reply_for_the_next(
    redis_server: RedisServer, two: Conveyor
) -> None:
    """A caller cancelled while its EVALSHA is in flight (a request timeout, a task
    cancelled) must not leave that reply on the kept connection: the next submit would read
    it as its own and return another job's id."""
    first = await two.enqueue("work", {"n": 1})  # the lane exists
    assert first.id
    redis_server.pause()  # the server takes the command but answers nothing
    try:
        stuck = asyncio.create_task(two.enqueue("work", {"n": 2}))
        await asyncio.sleep(0.2)  # the command is on the wire (a stopped server: no event)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
    finally:
        redis_server.resume()
    handle = await two.enqueue("work", {"n": 3})
    info = await handle.info()
    assert info is not None and info.args == {"n": 3}, info
