"""The API process's long-lived loops under ``conveyor.supervise``: the event hub survives
error replies and its own bugs, and their health shows in ``/readyz`` (503 while a needed
loop is stuck) and ``/metrics`` (every supervised loop of the process, and the loops workers
publish)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.hub import COMPONENT, Filter, HubEvent, Subscriber
from conveyor.embedded import RedisServer
from conveyor.store import Store
from conveyor.supervise import LoopHealth, Supervisor
from tests.api.conftest import ADMIN_KEY, UNLIMITED, gateway_of, running, wait_for

RESIZE = {"image_id": "a", "width": 1}


@contextlib.asynccontextmanager
async def hub_app(conveyor: Conveyor, store: Store, fatal: list[str],
                  observer: Any = None) -> AsyncIterator[FastAPI]:
    app = create_app(conveyor, settings=UNLIMITED, store=store, admin_key=ADMIN_KEY)
    hub = gateway_of(app).hub
    hub.on_fatal = fatal.append  # a test must not exit the process
    if observer is not None:
        hub.observers.append(observer)
    async with running(app):
        yield app


def watch(app: FastAPI) -> Subscriber:
    sub = Subscriber(Filter(), 10_000, on_drop=lambda: None)
    gateway_of(app).hub.register(sub)
    return sub


async def next_of(sub: Subscriber, job: str) -> HubEvent:
    async with asyncio.timeout(10):
        while (ev := await sub.queue.get()).job != job:
            pass
    return ev


def reader() -> LoopHealth:
    return Supervisor.registry[COMPONENT].loops["reader"]


async def test_a_bug_in_the_hub_restarts_its_loop(conveyor: Conveyor, store: Store) -> None:
    """Before supervision, one exception out of dispatch ended the reader task for good:
    no client got another event until the process restarted."""
    seen: list[HubEvent] = []

    def buggy(ev: HubEvent) -> None:
        seen.append(ev)
        if len(seen) == 1:
            raise RuntimeError("a bug in an observer")

    fatal: list[str] = []
    async with hub_app(conveyor, store, fatal, buggy) as app:
        sub = watch(app)
        await conveyor.enqueue("resize", RESIZE)
        await gateway_of(app).hub.discover(["media"])
        later = await conveyor.enqueue("resize", RESIZE)
        assert (await next_of(sub, later.id)).fields["event"] == "submitted"
        assert reader().restarts == 1
        assert reader().last_error == "RuntimeError: a bug in an observer"
        assert fatal == []


async def test_a_hub_that_keeps_crashing_calls_on_fatal(conveyor: Conveyor,
                                                        store: Store) -> None:
    def always(ev: HubEvent) -> None:
        raise RuntimeError("always")

    fatal: list[str] = []
    async with hub_app(conveyor, store, fatal, always) as app:
        await conveyor.enqueue_many([{"type": "resize", "args": RESIZE}] * 10)
        await gateway_of(app).hub.discover(["media"])

        async def fatal_called() -> bool:
            return bool(fatal)

        await wait_for(fatal_called)
        assert fatal[0] == "api.hub.reader"
        assert reader().restarts >= 5


async def test_the_hub_backs_off_from_busy_and_recovers(
    conveyor: Conveyor, store: Store, any_redis: RedisServer
) -> None:
    """A script that runs too long makes Redis answer BUSY to everyone: the hub backs off,
    counts the errors, and delivers again once the script is killed."""
    fatal: list[str] = []
    async with hub_app(conveyor, store, fatal) as app:
        sub = watch(app)
        await conveyor.enqueue("resize", RESIZE)
        await gateway_of(app).hub.discover(["media"])
        admin = Redis.from_url(any_redis.url)
        blocker = Redis.from_url(any_redis.url)
        await admin.config_set("busy-reply-threshold", 50)
        script = asyncio.create_task(blocker.eval("while true do end", 0))  # type: ignore[misc]

        async def backing_off() -> bool:
            return reader().transient_errors > 0

        try:
            await wait_for(backing_off)
            assert reader().state == "backing off"
        finally:
            with contextlib.suppress(ResponseError):
                await admin.script_kill()
            with contextlib.suppress(ResponseError):
                await script
            await blocker.aclose()
            await admin.aclose()
        after = await conveyor.enqueue("resize", RESIZE)
        await next_of(sub, after.id)
        assert reader().state == "ok" and reader().restarts == 0
        assert fatal == []


@pytest.fixture
async def wedged() -> AsyncIterator[Supervisor]:
    """Another component of the process (in ``conveyor up``: the worker, the scheduler)
    with a needed loop that never succeeds and one that is not needed."""
    sup = Supervisor("test.wedged", on_fatal=lambda name: None)
    forever = asyncio.Event()

    async def stuck(health: LoopHealth) -> None:
        await forever.wait()

    sup.spawn("loop", stuck, stale_after=0.2)
    sup.spawn("optional", stuck, stale_after=0.2, needed=False)
    yield sup
    await sup.stop()


async def test_readyz_is_503_while_a_needed_loop_is_stuck(
    client: httpx.AsyncClient, wedged: Supervisor
) -> None:
    async def unready() -> httpx.Response | None:
        r = await client.get("/readyz")
        return r if r.status_code == 503 else None

    r = await wait_for(unready)
    body = r.json()
    assert (body["status"], body["redis"], body["store"]) == ("unavailable", "ok", "ok")
    assert body["stuck"] == ["test.wedged.loop"]
    loop = body["loops"]["test.wedged"]["loop"]
    assert loop["stuck"] is True and loop["needed"] is True and loop["age"] >= 0.2
    assert set(loop) == {"state", "age", "stuck", "needed", "errors", "restarts",
                         "last_error"}
    assert body["loops"]["test.wedged"]["optional"]["stuck"] is True  # not needed: ready
    assert body["loops"]["api.hub"]["reader"]["stuck"] is False
    text = (await client.get("/metrics")).text
    for line in ('conveyor_loop_stuck{component="test.wedged",loop="loop"} 1.0',
                 'conveyor_loop_stuck{component="api.hub",loop="reader"} 0.0',
                 'conveyor_loop_restarts_total{component="api.hub",loop="reader"} 0.0',
                 'conveyor_loop_transient_errors_total{component="api.hub",loop="reader"} 0.0',
                 'conveyor_loop_last_success_age_seconds{component="test.wedged",loop="loop"}'):
        assert line in text, line
    await wedged.stop()
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["stuck"] == []


async def test_metrics_show_the_loops_workers_publish(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    """Workers publish their loops' health as JSON in their info hash (field ``loops``)."""
    seconds, micros = await conveyor.redis.time()
    glob = conveyor.keys.glob
    await conveyor.redis.zadd(glob.workers, {"w1": seconds * 1000 + micros // 1000})
    loops = {"fetch": {"state": "backing off", "age": 61.0, "stuck": True, "needed": True,
                       "errors": 3, "restarts": 0, "last_error": "ConnectionError"},
             "heartbeat": {"state": "ok", "age": 0.1, "stuck": False, "needed": True,
                           "errors": 0, "restarts": 0, "last_error": ""}}
    await conveyor.redis.hset(glob.worker("w1"), mapping={
        "host": "h", "pid": 1, "loops": orjson.dumps(loops).decode()})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'conveyor_worker_loop_stuck{loop="fetch",worker="w1"} 1.0' in r.text
    assert 'conveyor_worker_loop_stuck{loop="heartbeat",worker="w1"} 0.0' in r.text
    await conveyor.redis.zrem(glob.workers, "w1")  # gone: its series go too
    r = await client.get("/metrics")
    assert r.status_code == 200 and "conveyor_worker_loop_stuck{" not in r.text
