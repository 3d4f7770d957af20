"""The recorder against a real Redis, with events produced by the real Lua scripts."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from conveyor.broker.broker import Broker, Completion
from conveyor.broker.keys import Keys
from conveyor.embedded import RedisServer, free_port
from conveyor.scheduler.recorder import Recorder
from conveyor.settings import Settings
from conveyor.store import Store
from conveyor.store.mongo import MongoStore
from conveyor.store.sqlite import SqliteStore
from conveyor.supervise import LoopHealth
from tests.store.conftest import SecantusProcess, StartRecorder, require_secantus
from tests.store.helpers import caught_up, submit, wait_until, work

ROOT = Path(__file__).resolve().parents[2]


async def pending(redis: Redis, keys: Keys, queues: list[str]) -> int:
    total = 0
    for q in queues:
        info = await redis.xpending(keys.queue(q).events, "recorder")
        total += info["pending"]
    return total


@pytest.mark.parametrize("one_stream_per_call", [False, True], ids=["all-streams", "per-stream"])
async def test_recorder_follows_every_queue(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder,
    one_stream_per_call: bool,
) -> None:
    """Every kind of event, two queues, the second created while the recorder runs; reading
    all streams in one call (standalone Redis) or one per call (as on Redis Cluster)."""
    # Started before any queue exists: it must find them itself.
    recorder = start_recorder(store, one_stream_per_call=one_stream_per_call)
    emails = await submit(redis, broker, "emails", 60, max_attempts=2)
    reports = await submit(redis, broker, "reports", 10, delay_ms=60_000)
    await work(broker, "emails", "w1", fail=lambda i: i % 4 == 0)  # retries, some die
    emails += await submit(redis, broker, "emails", 3)
    claimed = (await broker.claim("emails", "w3", 100)).jobs  # these stay active
    await broker.progress("emails", claimed[0].id, claimed[0].attempt, 0.5, "half")
    await broker.cancel("reports", reports[0])
    await broker.delete("reports", [reports[1]])

    jobs = {**dict.fromkeys(emails, "emails"), **dict.fromkeys(reports[2:], "reports")}
    await caught_up(store, redis, keys, jobs)
    counts = await store.count_by_status()
    assert counts["dead"] > 0 and counts["completed"] > 0 and counts["canceled"] == 1
    deleted = await store.get_job(reports[1])
    assert deleted is not None and deleted.deleted_ms is not None
    running = await store.get_job(claimed[0].id)
    assert running is not None and running.progress == 0.5
    assert await pending(redis, keys, ["emails", "reports"]) == 0
    assert recorder.stats.events >= 60 * 3 and recorder.stats.max_lag_ms < 10_000
    assert counts["active"] == 3


@pytest.mark.parametrize("mode", ["before", "after", "free"])
async def test_kill_9_mid_batch_loses_and_duplicates_nothing(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder,
    redis_proc: RedisServer, store_url: str, mode: str,
) -> None:
    """A recorder process dies holding a batch: before its store commit, after it but before
    XACK, or at a random point under load. Another recorder takes over its pending entries
    after applying newer events of the same jobs, so the store also sees them out of order."""
    ids = await submit(redis, broker, "q", 20)
    await work(broker, "q", "w0", fail=lambda i: i % 4 == 0)  # the first batch has attempts
    ids += await submit(redis, broker, "q", 80)
    first = (await broker.claim("q", "w1", 50)).jobs
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store.recorder_child", redis_proc.url, store_url, "doomed",
        mode, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"started\n"
        if mode == "free":
            await _kill_under_load(child, broker, store, ids[0])
        else:
            assert await asyncio.wait_for(child.stdout.readline(), 30) == b"hanging\n"
            await broker.complete("q", "w1", [Completion(j.id, j.attempt, "1")
                                              for j in first])
            child.kill()
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    await work(broker, "q", "w2", fail=lambda i: i % 3 == 0, delay_ms=0)

    if mode != "free":
        # A recorder that never takes over applies the newer events first...
        reader = start_recorder(store, "reader", min_idle_ms=600_000)
        await wait_until(lambda: _applied(reader), 30, "newer events to be applied")
        assert reader.stats.claimed == 0
    # ... then the heir takes over the dead recorder's batch: the store sees old events last.
    heir = start_recorder(store, "heir", min_idle_ms=300)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    await wait_until(lambda: _no_pending(redis, keys), 10, "no pending entries")
    if mode != "free":
        assert heir.stats.claimed >= 50


async def _applied(recorder: Recorder) -> bool:
    return recorder.stats.batches > 0


async def _no_pending(redis: Redis, keys: Keys) -> bool:
    return await pending(redis, keys, ["q"]) == 0


async def _kill_under_load(
    child: asyncio.subprocess.Process, broker: Broker, store: Store, some_id: str
) -> None:
    async def recorded() -> bool:
        return await store.get_job(some_id) is not None

    await wait_until(recorded, 30, "the child to record something")
    load = asyncio.create_task(_load(broker))
    await asyncio.sleep(random.uniform(0.1, 0.4))  # kill at a random point of the stream
    child.kill()
    await load


async def _load(broker: Broker) -> None:
    for _ in range(10):
        await submit(broker.redis, broker, "q", 20)
        await work(broker, "q", "w1", fail=lambda i: i % 5 == 0, delay_ms=0)


@pytest.fixture
async def impatient_sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A SQLite store that gives up on a locked database after 100 ms instead of 5 s."""
    store = await SqliteStore.open(tmp_path / "h.db", busy_timeout_ms=100)
    yield store
    await store.close()


async def test_sqlite_locked_then_free_catches_up(
    impatient_sqlite: SqliteStore, redis: Redis, keys: Keys, broker: Broker,
    start_recorder: StartRecorder,
) -> None:
    store = impatient_sqlite
    recorder = start_recorder(store)
    ids = await submit(redis, broker, "q", 30)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        await work(broker, "q", "w", fail=lambda i: i % 2 == 0)
        await wait_until(lambda: _errors(recorder), 10, "the store to fail")
        await asyncio.sleep(1.0)  # keep it down a second: several retries, growing backoff
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    ids += await submit(redis, broker, "q", 10)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    assert recorder.stats.store_errors >= 2


async def _errors(recorder: Recorder) -> bool:
    return recorder.stats.store_errors > 0


@pytest.fixture
async def mongo_outage(tmp_path: Path) -> AsyncIterator[tuple[SecantusProcess, MongoStore]]:
    """A server of its own (on disk, so it keeps its data across a restart) and its store."""
    require_secantus()
    server = SecantusProcess(storage=str(tmp_path / "mongo")).start()
    store = await MongoStore.open(server.url("outage"), server_selection_timeout_ms=1000)
    yield server, store
    await store.close()
    await asyncio.to_thread(server.stop)


async def test_mongo_down_then_back_catches_up(
    mongo_outage: tuple[SecantusProcess, MongoStore], redis: Redis, keys: Keys,
    broker: Broker, start_recorder: StartRecorder,
) -> None:
    """A real outage: the server stops (SIGTERM takes SecantusDB 3-8 s) and starts again on
    the same port and data folder while events keep coming."""
    server, store = mongo_outage
    recorder = start_recorder(store)
    ids = await submit(redis, broker, "q", 30)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    await asyncio.to_thread(server.stop)
    await work(broker, "q", "w", fail=lambda i: i % 2 == 0)
    ids += await submit(redis, broker, "q", 10)
    await wait_until(lambda: _errors(recorder), 15, "the store to fail")
    await asyncio.to_thread(server.start)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"), timeout=60)


async def test_redis_restart_under_the_recorder(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder,
    redis_proc: RedisServer,
) -> None:
    """Redis goes away and comes back (same port, data from its AOF): the recorder waits,
    reconnects and goes on from its consumer group's position."""
    start_recorder(store)
    ids = await submit(redis, broker, "q", 20)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    await asyncio.to_thread(redis_proc.restart)
    await redis.connection_pool.disconnect()  # the test's own pooled connections are dead
    await work(broker, "q", "w", fail=lambda i: i % 2 == 0)
    ids += await submit(redis, broker, "q", 10)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))


async def test_error_replies_back_off_and_show_on_the_loop_health(
    store: Store, redis: Redis, keys: Keys, broker: Broker, start_recorder: StartRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """READONLY (a primary turned replica by a fail-over) is an outage, not a crash: the
    recorder backs off, logs it once without a traceback, shows it on its LoopHealth, and
    goes on when the server takes writes again."""
    health = LoopHealth("recorder", stale_after=60.0)
    start_recorder(store, health=health)
    ids = await submit(redis, broker, "q", 5)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    assert health.state in ("idle", "ok") and health.transient_errors == 0
    assert health.age() < 5

    caplog.set_level(logging.INFO)
    await redis.replicaof("127.0.0.1", str(free_port()))  # a primary that never answers
    try:
        await wait_until(lambda: _retried(health, 3), 15, "the recorder to back off")
        assert health.state == "backing off" and "read only" in health.last_error
    finally:
        await redis.replicaof("NO", "ONE")
    ids += await submit(redis, broker, "q", 5)
    await caught_up(store, redis, keys, dict.fromkeys(ids, "q"))
    await wait_until(lambda: _recovered(health), 10, "the health to recover")
    mine = [r for r in caplog.records if r.name.startswith("conveyor.recorder")]
    assert len([r for r in mine if "unavailable" in r.getMessage()]) == 1
    assert not [r for r in mine if r.exc_info or r.levelno >= logging.ERROR]


async def _retried(health: LoopHealth, n: int) -> bool:
    return health.transient_errors >= n


async def _recovered(health: LoopHealth) -> bool:
    return health.failing_since is None and health.state in ("idle", "ok")


async def test_a_fault_that_is_no_outage_ends_run_for_the_supervisor(
    store: Store, redis: Redis, keys: Keys, broker: Broker, settings: Settings,
    redis_proc: RedisServer,
) -> None:
    """A denied command (an ACL without XREADGROUP) will not pass by waiting: ``run`` raises
    it, for a supervisor to log, restart and, if it keeps failing, exit non-zero."""
    await redis.acl_setuser("recorder", enabled=True, passwords=["+pw"], keys=["*"],
                            commands=["+@all", "-xreadgroup"])
    await submit(redis, broker, "q", 3)
    denied = Redis.from_url(redis_proc.url.replace("redis://", "redis://recorder:pw@"),
                            decode_responses=True)
    recorder = Recorder(denied, keys, store, settings, "r1", block_ms=200,
                        discover_seconds=0.1)
    try:
        with pytest.raises(NoPermissionError):
            await asyncio.wait_for(recorder.run(), 10)
    finally:
        await denied.aclose()
