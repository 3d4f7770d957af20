"""What one WebSocket client may cost, against a real uvicorn server: connection caps per API
key and per process, a message rate per connection, an error frame and a close frame for
every message the protocol does not allow, and one serialisation per event however many
clients receive it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from conveyor import Conveyor
from conveyor.api import ApiServer, ApiSettings
from conveyor.api.hub import Filter, HubEvent, Subscriber
from conveyor.api.wsproto import (
    CLOSE_INVALID,
    CLOSE_KEY_CONNECTIONS,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
)
from conveyor.embedded import RedisServer
from tests.api.conftest import UNLIMITED, gateway_of, wait_for
from tests.api.test_ws import closed_with, open_ws, recv, send, until


@pytest.fixture
def settings() -> ApiSettings:
    return UNLIMITED.model_copy(update={"ws_auth_timeout_seconds": 5.0})


async def first_answer(server: ApiServer, key: str) -> tuple[str, int | None]:
    """("authenticated", None) or ("closed", code) for a new connection with ``key``."""
    ws = await open_ws(server, key)
    try:
        message = await recv(ws)
    except ConnectionClosed:
        return "closed", ws.close_code
    await ws.close()
    assert message["type"] == "authenticated", message
    return "authenticated", None


async def test_150_sockets_on_one_key_at_most_100_accepted(
    server: ApiServer, keys: dict[str, str], api: FastAPI
) -> None:
    sockets: list[ClientConnection] = []

    async def connect_one() -> tuple[str, int | None]:
        ws = await open_ws(server, keys["viewer"])
        sockets.append(ws)
        try:
            message = await recv(ws)
        except ConnectionClosed:
            return "closed", ws.close_code
        return message["type"], None

    answers = await asyncio.gather(*(connect_one() for _ in range(150)))
    accepted = [a for a in answers if a[0] == "authenticated"]
    refused = [a for a in answers if a[0] == "closed"]
    assert len(accepted) == 100, answers
    assert refused == [("closed", CLOSE_KEY_CONNECTIONS)] * 50
    # Another key is not affected; a freed slot is usable again.
    assert await first_answer(server, keys["admin"]) == ("authenticated", None)
    per_key = gateway_of(api).ws_connections.per_key
    viewer_id = keys["viewer"].split("_")[1]
    assert per_key[viewer_id] == 100
    open_ones = [ws for ws in sockets if ws.close_code is None]
    await open_ones[0].close()

    async def freed() -> bool:
        return per_key[viewer_id] < 100

    await wait_for(freed)
    assert await first_answer(server, keys["viewer"]) == ("authenticated", None)
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_the_process_cap_closes_with_1013(
    api: FastAPI, server: ApiServer, keys: dict[str, str]
) -> None:
    gateway_of(api).ws_connections.max_total = 3
    held = [await open_ws(server, keys[role]) for role in ("viewer", "admin", "producer")]
    for ws in held:
        assert (await recv(ws))["type"] == "authenticated"
    extra = await open_ws(server, keys["viewer"])
    assert await closed_with(extra) == CLOSE_TRY_AGAIN
    assert "maximum" in (extra.close_reason or "")
    for ws in held:
        await ws.close()


async def test_a_flooding_client_is_closed_with_4029(
    server: ApiServer, keys: dict[str, str]
) -> None:
    ws = await open_ws(server, keys["viewer"])
    assert (await recv(ws))["type"] == "authenticated"
    ping = orjson.dumps({"type": "ping"}).decode()
    pongs = 0
    with pytest.raises(ConnectionClosed):
        for _ in range(10_000):
            await ws.send(ping)
        while True:
            async with asyncio.timeout(10):
                if orjson.loads(await ws.recv())["type"] == "pong":
                    pongs += 1
    assert ws.close_code == CLOSE_RATE_LIMITED
    assert "messages a second" in (ws.close_reason or "")
    # The burst (40) and what the rate refilled while the server read them: on an idle
    # machine about 41; the bound leaves room for a slow one, not for 10,000.
    assert pongs < 200
    # Within the rate, a client is never cut off.
    calm = await open_ws(server, keys["viewer"])
    assert (await recv(calm))["type"] == "authenticated"
    for _ in range(60):
        await send(calm, {"type": "ping"})
        assert (await recv(calm))["type"] == "pong"
        await asyncio.sleep(0.05)  # the pace of a well-behaved client (20/s)
    await calm.close()


@pytest.mark.parametrize("resume", [
    {"media": "99999999999999999999-0"},  # past 2^64: Redis refused it, the socket dropped
    {"media": "1-18446744073709551616"},
    {"media": "yesterday"},
    {"media": 5},
    {"{x}": "0-0"},
])
async def test_a_bad_resume_position_gets_an_error_then_a_close(
    server: ApiServer, keys: dict[str, str], conveyor: Conveyor, resume: dict[str, Any]
) -> None:
    await conveyor.enqueue("resize", {"image_id": "a", "width": 1})  # the stream exists
    ws = await open_ws(server, keys["viewer"])
    assert (await recv(ws))["type"] == "authenticated"
    await send(ws, {"type": "subscribe", "resume": resume})
    error = await recv(ws)
    assert error["type"] == "error" and error["field"].startswith("resume"), error
    assert await closed_with(ws) == CLOSE_INVALID
    assert error["code"] in (ws.close_reason or "")


@pytest.mark.parametrize(("message", "code"), [
    ("{nope", "invalid_json"),
    ('{"type": "dance"}', "unknown_message"),
    ('{"type": "subscribe", "queues": ["{x}"]}', "invalid_name"),
    ('{"type": "subscribe", "jobs": []}', "invalid_value"),
    ('{"type": "subscribe", "a": 1, "a": 2}', "duplicate_key"),
    ("[1, 2]", "unknown_message"),
])
async def test_every_protocol_error_gets_an_error_frame_then_1008(
    server: ApiServer, keys: dict[str, str], message: str, code: str
) -> None:
    ws = await open_ws(server, keys["viewer"])
    assert (await recv(ws))["type"] == "authenticated"
    await ws.send(message)
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == code, error
    assert await closed_with(ws) == CLOSE_INVALID


async def test_fan_out_serialises_each_event_once(
    api: FastAPI, server: ApiServer, keys: dict[str, str], conveyor: Conveyor
) -> None:
    """Every subscriber gets the same event object, whose text is built on first use and
    then sent as is to every client."""
    await conveyor.enqueue("resize", {"image_id": "warm", "width": 1})
    clients = [await open_ws(server, keys["viewer"]) for _ in range(3)]
    for ws in clients:
        assert (await recv(ws))["type"] == "authenticated"
        await send(ws, {"type": "subscribe", "queues": ["media"]})
        assert (await recv(ws))["type"] == "subscribed"
        assert (await recv(ws))["type"] == "live"
    hub = gateway_of(api).hub
    witnesses = [Subscriber(Filter(), 100, on_drop=lambda: None) for _ in range(2)]
    for w in witnesses:
        hub.register(w)
    handle = await conveyor.enqueue("resize", {"image_id": "b", "width": 2})
    texts = [await until(ws, lambda m: m.get("job") == handle.id, []) for ws in clients]
    first, second = [await _next_of(w, handle.id) for w in witnesses]
    assert first is second
    assert first.payload() is second.payload()
    assert orjson.loads(first.payload()) == texts[0]
    for w in witnesses:
        hub.unregister(w)
    for ws in clients:
        await ws.close()


async def _next_of(sub: Subscriber, job: str) -> HubEvent:
    async with asyncio.timeout(10):
        while (ev := await sub.queue.get()).job != job:
            pass
    return ev


async def test_redis_down_during_a_subscribe_is_an_error_then_1013(
    server: ApiServer, keys: dict[str, str], any_redis: RedisServer
) -> None:
    ws = await open_ws(server, keys["viewer"])
    assert (await recv(ws))["type"] == "authenticated"
    any_redis.kill()
    await send(ws, {"type": "subscribe", "queues": ["new-queue"]})
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == "redis_unavailable", error
    assert await closed_with(ws) == CLOSE_TRY_AGAIN
