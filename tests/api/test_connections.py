"""Connection hygiene on a real server (uvicorn on a port, the real app on a real Redis): slow
headers are cut off, huge headers refused, idle keep-alives closed, and one client IP cannot
hold more than its share of connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect

from conveyor.api import ApiServer, ApiSettings
from tests.api.conftest import UNLIMITED, auth

SLOW_CLIENTS = 200


async def open_raw(server: ApiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent meanwhile."""
    start = time.monotonic()
    got = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            got += chunk
    return time.monotonic() - start, got


async def drip_headers(writer: asyncio.StreamWriter, port: int) -> None:
    """A slowloris: the request line, then one header line every 5 s, forever."""
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    with contextlib.suppress(OSError):
        for i in range(100):
            await writer.drain()
            await asyncio.sleep(5)
            writer.write(f"X-Slow-{i}: {i}\r\n".encode())


async def test_slow_header_connections_are_closed_within_30_s(server: ApiServer) -> None:
    conns = [await open_raw(server) for _ in range(SLOW_CLIENTS)]
    drips = [asyncio.create_task(drip_headers(w, server.port)) for _, w in conns]
    try:
        # Meanwhile a normal client is served.
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.get("/healthz")).status_code == 200
        outcomes = await asyncio.gather(*(closed_after(r, 30) for r, _ in conns))
    finally:
        for task in drips:
            task.cancel()
        for _, w in conns:
            w.close()
    assert all(t < 30 for t, _ in outcomes)  # the default deadline is 10 s
    assert all(got.startswith(b"HTTP/1.1 408 ") for _, got in outcomes)
    assert b'"code":"header_timeout"' in outcomes[0][1]


async def test_a_connection_that_sends_nothing_is_closed(server: ApiServer) -> None:
    reader, writer = await open_raw(server)
    took, got = await closed_after(reader, 30)
    writer.close()
    assert took < 30 and got == b""


async def test_a_1_mib_header_is_refused_with_431(server: ApiServer) -> None:
    reader, writer = await open_raw(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024)
                 + b"\r\n\r\n")
    with contextlib.suppress(OSError):
        await writer.drain()
    _, got = await closed_after(reader, 10)
    writer.close()
    assert got.startswith(b"HTTP/1.1 431 ") and b"header_too_large" in got
    # Headers under the cap, and large bodies, are fine.
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/healthz", headers={"X-Fine": "a" * 16_000})
        assert r.status_code == 200


async def test_idle_keep_alive_connections_are_closed(server: ApiServer) -> None:
    reader, writer = await open_raw(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    took, got = await closed_after(reader, 30)
    writer.close()
    assert got.startswith(b"HTTP/1.1 200 ") and 4 < took < 10  # the default is 5 s


async def test_headers_of_a_kept_alive_connection_have_a_deadline_too(
    server: ApiServer,
) -> None:
    reader, writer = await open_raw(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"ok\"}")).startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next request starts, then drips

    async def drip() -> None:
        with contextlib.suppress(OSError):
            for i in range(20):
                await asyncio.sleep(2)  # under the keep-alive timeout: only headers are late
                writer.write(f"X-Slow-{i}: {i}\r\n".encode())
                await writer.drain()

    task = asyncio.create_task(drip())
    took, got = await closed_after(reader, 30)
    task.cancel()
    writer.close()
    assert got.startswith(b"HTTP/1.1 408 ") and 8 < took < 15


class TestPerIpCap:
    CAP = 20

    @pytest.fixture
    def settings(self) -> ApiSettings:
        return UNLIMITED.model_copy(update={"max_connections_per_ip": self.CAP,
                                            "header_timeout_seconds": 60})

    @staticmethod
    @contextlib.asynccontextmanager
    async def held(server: ApiServer, n: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
        conns = [await open_raw(server) for _ in range(n)]
        try:
            yield [w for _, w in conns]
        finally:
            for _, w in conns:
                w.close()

    async def test_the_cap_holds_and_frees_up(
        self, server: ApiServer, api: FastAPI, keys: dict[str, str]
    ) -> None:
        async with self.held(server, self.CAP - 1):
            # One WebSocket takes the last slot...
            async with connect(f"ws://127.0.0.1:{server.port}/api/ws",
                               additional_headers=auth(keys["viewer"])) as ws:
                assert orjson.loads(await ws.recv())["type"] == "authenticated"
                await ws.send('{"type": "ping"}')
                assert orjson.loads(await ws.recv())["type"] == "pong"
                # ... and every further connection is refused at once.
                for _ in range(30):
                    reader, writer = await open_raw(server)
                    took, got = await closed_after(reader, 5)
                    writer.close()
                    assert got.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in got
                    assert b"retry-after: 1" in got and took < 1
            # The WebSocket's slot is given back when it closes.
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient(base_url=server.url) as c:
                assert (await c.get("/healthz")).status_code == 200
        # All slots are back.
        async with self.held(server, self.CAP - 1), httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.get("/healthz")).status_code == 200
        await asyncio.sleep(0.3)
        assert server.guard.open == {}
