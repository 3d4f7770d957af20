"""The live-events WebSocket against a real uvicorn server: auth, filters, delivery latency,
resume without gaps after a disconnect, and the cut-off of a client that does not read."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conveyor import Context, Conveyor
from conveyor.api import ApiServer, ApiSettings
from conveyor.api.hub import Filter, Subscriber
from conveyor.worker.worker import Worker
from tests.api.conftest import UNLIMITED, gateway_of

RESIZE = {"type": "resize", "args": {"image_id": "a", "width": 1}}


@pytest.fixture
def settings() -> ApiSettings:
    return UNLIMITED.model_copy(update={"ws_buffer": 50, "ws_auth_timeout_seconds": 0.5})


def ws_url(server: ApiServer) -> str:
    return server.url.replace("http://", "ws://") + "/api/ws"


async def open_ws(server: ApiServer, key: str | None = None, **options: Any) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return await connect(ws_url(server), additional_headers=headers, proxy=None, **options)


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        message: dict[str, Any] = orjson.loads(await ws.recv())
    return message


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def subscribe(ws: ClientConnection, **filters: Any) -> dict[str, str]:
    """Subscribe; returns the cursor. Every message before "live" is backfill."""
    assert (await recv(ws))["type"] == "authenticated"
    await send(ws, {"type": "subscribe", **filters})
    subscribed = await recv(ws)
    assert subscribed["type"] == "subscribed", subscribed
    cursor: dict[str, str] = subscribed["cursor"]
    return cursor


async def until(ws: ClientConnection, pred: Any, seen: list[dict[str, Any]]) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        seen.append(message)
        if pred(message):
            return message


async def closed_with(ws: ClientConnection) -> int | None:
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


# -- auth --------------------------------------------------------------------------------------

async def test_bad_key_is_closed_4001(server: ApiServer) -> None:
    ws = await open_ws(server, "cv_0123456789ab_" + "x" * 43)
    assert await closed_with(ws) == 4001


async def test_silent_client_is_closed_4001(server: ApiServer,
                                            keys: dict[str, str]) -> None:
    # A key in the URL is never read: this client has not authenticated.
    ws = await connect(ws_url(server) + f"?key={keys['viewer']}&api_key={keys['viewer']}",
                       proxy=None)
    assert await closed_with(ws) == 4001


async def test_first_message_must_be_auth(server: ApiServer, keys: dict[str, str]) -> None:
    ws = await open_ws(server)
    await send(ws, {"type": "subscribe"})
    assert await closed_with(ws) == 4001
    ws = await open_ws(server)
    await send(ws, {"type": "auth", "key": keys["viewer"]})
    assert (await recv(ws)) == {"type": "authenticated", "role": "viewer"}
    await send(ws, {"type": "ping"})
    assert (await recv(ws)) == {"type": "pong"}
    await ws.close()


async def test_producer_may_watch_only_its_own_jobs(
    server: ApiServer, keys: dict[str, str], client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers={
            "Authorization": f"Bearer {keys['producer']}"}) as producer:
        mine = (await producer.post("/api/jobs", json=RESIZE)).json()["id"]
    theirs = (await client.post("/api/jobs", json=RESIZE)).json()["id"]
    ws = await open_ws(server, keys["producer"])
    assert (await recv(ws))["type"] == "authenticated"
    for filters in ({}, {"jobs": [theirs]}, {"jobs": [mine, theirs]}):
        # A well-formed request that is refused: an error, and the connection stays.
        await send(ws, {"type": "subscribe", **filters})
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "forbidden", error
    await send(ws, {"type": "subscribe", "jobs": [mine], "resume": {}})
    assert (await recv(ws))["type"] == "subscribed"
    submitted = await recv(ws)
    assert submitted.get("job") == mine, submitted
    assert submitted["job"] == mine and submitted["event"] == "submitted"
    assert (await recv(ws))["type"] == "live"
    await ws.close()


# -- delivery ----------------------------------------------------------------------------------

async def test_live_events_with_filters(
    server: ApiServer, keys: dict[str, str], conveyor: Conveyor, worker: Worker
) -> None:
    await conveyor.enqueue("resize", {"image_id": "warm", "width": 1})  # the queue exists
    by_queue = await open_ws(server, keys["viewer"])
    await subscribe(by_queue, queues=["media"])
    assert (await recv(by_queue))["type"] == "live"
    by_type = await open_ws(server, keys["viewer"])
    await subscribe(by_type, types=["explode"])
    assert (await recv(by_type))["type"] == "live"
    handle = await conveyor.enqueue("resize", {"image_id": "b", "width": 2})
    failing = await conveyor.enqueue("explode", {"message": "no"})
    seen: list[dict[str, Any]] = []
    done = await until(by_queue, lambda m: m.get("job") == handle.id
                       and m.get("event") == "completed", seen)
    assert done["result"] == {"image_id": "b", "width": 2} and done["job_type"] == "resize"
    events = [m["event"] for m in seen if m.get("job") == handle.id]
    assert events == ["submitted", "active", "completed"]
    assert all(m["queue"] == "media" for m in seen)
    typed: list[dict[str, Any]] = []
    await until(by_type, lambda m: m.get("event") == "dead", typed)
    assert {m["job"] for m in typed} == {failing.id}
    assert [m["event"] for m in typed] == ["submitted", "active", "dead"]
    await by_queue.close()
    await by_type.close()


async def test_progress_is_a_number(
    server: ApiServer, keys: dict[str, str], conveyor: Conveyor, worker: Worker
) -> None:
    @conveyor.job(queue="slow", max_attempts=1)
    async def halfway(ctx: Context) -> None:
        await ctx.progress(0.5, "half way")

    ws = await open_ws(server, keys["viewer"])
    await subscribe(ws, types=["halfway"])
    assert (await recv(ws))["type"] == "live"
    handle = await conveyor.enqueue("halfway")
    seen: list[dict[str, Any]] = []
    event = await until(ws, lambda m: m.get("event") == "progress", seen)
    assert event["progress"] == 0.5 and event["message"] == "half way", event
    await handle.result(timeout=10)
    info = await conveyor.get_job(handle.id)
    assert info is not None and info.progress == 0.5
    await ws.close()


async def test_events_arrive_within_50_ms(
    server: ApiServer, keys: dict[str, str], conveyor: Conveyor
) -> None:
    await conveyor.enqueue("resize", {"image_id": "warm", "width": 1})
    ws = await open_ws(server, keys["viewer"])
    await subscribe(ws, queues=["media"])
    assert (await recv(ws))["type"] == "live"
    latencies = []
    for i in range(200):
        await conveyor.enqueue("resize", {"image_id": str(i), "width": 1})
        event = await recv(ws)
        latencies.append(time.time() * 1000 - event["ts"])  # ts is Redis time, same host
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"WebSocket delivery: p50 {latencies[100]:.1f} ms, p99 {p99:.1f} ms")
    assert p99 < 50, f"p50 {latencies[100]:.1f} ms, p99 {p99:.1f} ms"
    await ws.close()


async def test_resume_after_disconnect_misses_nothing(
    server: ApiServer, keys: dict[str, str], conveyor: Conveyor, worker: Worker
) -> None:
    await conveyor.enqueue("resize", {"image_id": "warm", "width": 1})
    ws = await open_ws(server, keys["viewer"])
    cursor = await subscribe(ws)
    assert (await recv(ws))["type"] == "live"
    first = [await conveyor.enqueue("resize", {"image_id": str(i), "width": 1})
             for i in range(5)]
    received: list[dict[str, Any]] = []
    await until(ws, lambda m: m.get("job") == first[-1].id and m.get("event") == "completed",
                received)
    await ws.close()
    for m in received:
        cursor[m["queue"]] = m["id"]
    # While disconnected: more jobs, on this queue and on a queue the client never saw.
    missed = [await conveyor.enqueue("resize", {"image_id": f"m{i}", "width": 1})
              for i in range(5)]
    missed.append(await conveyor.enqueue("explode", {"message": "x"}))
    for h in missed[:-1]:
        await h.result(timeout=10)
    ws = await open_ws(server, keys["viewer"])
    assert (await recv(ws))["type"] == "authenticated"
    await send(ws, {"type": "subscribe", "resume": cursor})
    assert (await recv(ws))["type"] == "subscribed"
    await until(ws, lambda m: m["type"] == "live", received)
    after = await conveyor.enqueue("resize", {"image_id": "after", "width": 1})
    await until(ws, lambda m: m.get("job") == after.id, received)
    await ws.close()
    await _assert_every_event_once(conveyor, received, ["media", "default"])


async def _assert_every_event_once(conveyor: Conveyor, received: list[dict[str, Any]],
                                   queues: list[str]) -> None:
    for queue in queues:
        stream = conveyor.keys.queue(queue).events
        expected = [i for i, _ in await conveyor.redis.xrange(stream)]
        got = [m["id"] for m in received if m.get("queue") == queue and m["type"] == "event"]
        start = expected.index(got[0])
        # One contiguous run of the stream: in order, nothing twice, nothing skipped. It may
        # start after the warm-up job's events (sent before the first subscription) and end
        # before the last job's final events (the test stops reading at its submission).
        assert got == expected[start:start + len(got)], queue
        assert start <= 2, queue


async def test_slow_client_is_cut_off_with_4008(
    api: FastAPI, server: ApiServer, keys: dict[str, str], conveyor: Conveyor
) -> None:
    await conveyor.enqueue("resize", {"image_id": "warm", "width": 1})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast
    sock.connect(("127.0.0.1", server.port))
    ws = await connect(ws_url(server), sock=sock, proxy=None, compression=None, max_queue=1,
                       additional_headers={"Authorization": f"Bearer {keys['viewer']}"})
    await subscribe(ws, queues=["media"])
    assert (await recv(ws))["type"] == "live"
    hub = gateway_of(api).hub
    witness = Subscriber(Filter(), 100_000, on_drop=lambda: None)
    hub.register(witness)
    handles = await conveyor.enqueue_many(
        [{"type": "resize", "args": {"image_id": "x" * 200, "width": i}} for i in range(3000)])
    async with asyncio.timeout(20):  # the hub has offered every event to the client by now
        while (await witness.queue.get()).job != handles[-1].id:
            pass
    registry = gateway_of(api).metrics.registry
    assert registry.get_sample_value("conveyor_api_websocket_dropped_total") == 1
    assert await closed_with(ws) == 4008
    hub.unregister(witness)
    assert len(hub.subscribers) == 0


async def test_shutdown_closes_clients_with_1012(
    api: FastAPI, keys: dict[str, str]
) -> None:
    srv = ApiServer(api, "127.0.0.1", 0, lifespan="off")
    await srv.start()
    ws = await open_ws(srv, keys["viewer"])
    await subscribe(ws)
    stopping = asyncio.create_task(srv.stop())
    assert await closed_with(ws) == 1012
    await stopping
