"""The supervision policy: which errors are transient (as redis-py really raises them from a
real server), backoff and recovery, restarts, and the exit of a loop that keeps crashing."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conveyor.embedded import RedisServer
from conveyor.supervise import LoopHealth, Supervisor, is_transient


async def _error_of(client: Redis, *command: object) -> BaseException:
    try:
        await client.execute_command(*command)
    except Exception as exc:
        return exc
    raise AssertionError(f"{command} did not fail")


async def test_error_replies_of_a_real_server_are_transient(any_redis: RedisServer) -> None:
    """OOM, READONLY, BUSY and a refused connection, as redis-py raises them, back off."""
    admin = sync_redis.Redis.from_url(any_redis.url)
    client = Redis.from_url(any_redis.url)
    try:
        admin.set("filler", "x" * 100_000)
        admin.config_set("maxmemory", "1")
        oom = await _error_of(client, "SET", "k", "v")
        admin.config_set("maxmemory", "0")

        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # nothing there: no sync, no wipe
        readonly = await _error_of(client, "SET", "k", "v")
        admin.execute_command("REPLICAOF", "NO", "ONE")

        admin.config_set("busy-reply-threshold", "50")
        blocker = asyncio.create_task(client.eval("while true do end", 0))
        other = Redis.from_url(any_redis.url)
        busy = None
        for _ in range(200):  # until the script has passed the threshold
            busy = await _error_of(other, "PING") if await _busy(other) else None
            if busy is not None:
                break
            await asyncio.sleep(0.01)  # the server's clock decides when BUSY starts
        await other.execute_command("SCRIPT", "KILL")
        await asyncio.gather(blocker, return_exceptions=True)
        await other.aclose()
    finally:
        admin.close()
        await client.aclose()
    refused = await _error_of(Redis(port=1, retry_on_error=[]), "PING")
    assert busy is not None, "the server never answered BUSY"
    for exc in (oom, readonly, busy, refused):
        assert is_transient(exc), repr(exc)
    wrapped = ResponseError(f"Command # 1 (HSET k f v) of pipeline caused error: ('{busy}',)")
    assert is_transient(wrapped)  # redis-py's form inside a pipeline
    assert not is_transient(ResponseError("ERR wrong number of arguments"))
    assert not is_transient(ValueError("a bug"))
    assert not is_transient(KeyError("x"))


async def _busy(client: Redis) -> bool:
    try:
        await client.ping()
    except Exception as exc:
        return str(exc).startswith("BUSY")
    return False


async def test_a_transient_error_backs_off_logs_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor("test", backoff_base=0.001, backoff_cap=0.005)
    outage = 20
    done = asyncio.Event()

    async def body(health: LoopHealth) -> None:
        nonlocal outage
        while True:
            if outage:
                outage -= 1
                raise ConnectionError("connection refused")
            health.ok()
            done.set()
            await asyncio.Event().wait()

    with caplog.at_level(logging.WARNING, logger="conveyor.supervise"):
        sup.spawn("loop", body)
        await asyncio.wait_for(done.wait(), 10)
    await sup.stop()
    health = sup.loops["loop"]
    assert health.transient_errors == 20 and health.restarts == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1  # once per outage...
    assert sum("recovered" in m for m in messages) == 1  # ...and once when it ends
    assert health.state == "ok"


async def test_a_crash_restarts_the_loop_and_repeated_crashes_are_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fatal = asyncio.Event()
    sup = Supervisor("test", max_restarts=3, window=60, backoff_base=0.001,
                     backoff_cap=0.002, on_fatal=lambda name: fatal.set())
    runs = 0

    async def body(health: LoopHealth) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError(f"bug {runs}")

    with caplog.at_level(logging.ERROR, logger="conveyor.supervise"):
        sup.spawn("loop", body)
        await asyncio.wait_for(fatal.wait(), 10)
    await sup.stop()
    assert runs >= 3
    assert sup.loops["loop"].restarts >= 3
    crashed = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert crashed and crashed[0].exc_info is not None  # the traceback is logged


async def test_a_loop_without_success_is_stuck_but_an_idle_one_is_not() -> None:
    sup = Supervisor("test")
    gate = asyncio.Event()

    async def waiting(health: LoopHealth) -> None:
        async with health.idle():
            await gate.wait()

    async def silent(health: LoopHealth) -> None:
        await gate.wait()

    sup.spawn("idle", waiting, stale_after=0.0)
    sup.spawn("silent", silent, stale_after=0.0)
    sup.spawn("optional", silent, stale_after=0.0, needed=False)
    await asyncio.sleep(0.01)  # let the loops start
    assert sup.stuck() == ["test.silent"]
    assert sup.health()["idle"]["stuck"] is False
    assert Supervisor.registry["test"] is sup
    await sup.stop()
    assert "test" not in Supervisor.registry
