"""Fixtures for the API tests: a Conveyor on a real Redis, a SQLite history store, the app
(lifespan run), API keys of every role, an in-process REST client (httpx over ASGI) and, for
WebSocket tests, a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Context, Conveyor, NonRetryable
from conveyor.api import ApiServer, ApiSettings, create_app
from conveyor.api.gateway import Gateway
from conveyor.embedded import RedisServer
from conveyor.store import Store, open_store, parse_entry
from conveyor.worker.worker import Worker
from tests.conftest import FAST

# httpx and httpcore run `import sniffio` on every request; it is not installed, and each
# failed import walks sys.path. None in sys.modules makes the import fail at once.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ADMIN_KEY = "test-admin-key-0123456789"
UNLIMITED = ApiSettings(rate_limit="unlimited", anonymous_rate_limit="unlimited",
                        static_rate_limit="unlimited")


def make_conveyor(url: str) -> Conveyor:
    app = Conveyor(redis_url=url, **FAST)

    @app.job(queue="media", queues=["media-bulk"], max_attempts=3)
    async def resize(image_id: str, width: int, ratio: float = 1.0) -> dict[str, Any]:
        """Pretends to resize an image."""
        return {"image_id": image_id, "width": int(width * ratio)}

    @app.job(queue="default", max_attempts=1)
    async def explode(message: str) -> None:
        """Always fails, without retries: straight to the dead-letter queue."""
        raise NonRetryable(message)

    @app.job(queue="slow", max_attempts=1)
    async def wait(seconds: float, ctx: Context) -> str:
        await asyncio.sleep(seconds)
        return "done"

    return app


@pytest.fixture
async def conveyor(any_redis: RedisServer) -> AsyncIterator[Conveyor]:
    app = make_conveyor(any_redis.url)
    yield app
    await app.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'history.db'}")
    yield s
    await s.close()


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def settings() -> ApiSettings:
    """Override in a test module to change the gateway's settings."""
    return UNLIMITED


@pytest.fixture
async def api(conveyor: Conveyor, store: Store, settings: ApiSettings) -> AsyncIterator[FastAPI]:
    app = create_app(conveyor, settings=settings, store=store, admin_key=ADMIN_KEY)
    async with running(app):
        yield app


def gateway_of(app: FastAPI) -> Gateway:
    gateway: Gateway = app.state.gateway
    return gateway


@pytest.fixture
async def keys(api: FastAPI) -> dict[str, str]:
    """A key per role; "admin" is the bootstrap key."""
    api_keys = gateway_of(api).keys
    out = {"admin": ADMIN_KEY}
    for role in ("producer", "viewer"):
        out[role], _ = await api_keys.create(role, name=f"test {role}")
    out["producer2"], _ = await api_keys.create("producer", name="another producer")
    return out


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client over ASGI (no network)."""
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers=auth(ADMIN_KEY)) as c:
        yield c


@pytest.fixture
def as_role(api: FastAPI, keys: dict[str, str]) -> Callable[[str], httpx.AsyncClient]:
    """``as_role("viewer")``: a client with that role's key (closed by the transport's GC)."""
    def make(role: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://api", headers=auth(keys[role]))
    return make


@pytest.fixture
async def server(api: FastAPI) -> AsyncIterator[ApiServer]:
    """The same app served by uvicorn on a free port (lifespan already running)."""
    srv = ApiServer(api, "127.0.0.1", 0, lifespan="off")
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def worker(conveyor: Conveyor) -> AsyncIterator[Worker]:
    w = Worker(conveyor, ["media", "default", "slow"], concurrency=4)
    task = asyncio.create_task(w.run())
    yield w
    w.stop()
    w.stop()
    await task


async def sync_history(conveyor: Conveyor, store: Store) -> int:
    """Copy every events stream into the store (what the recorder does, synchronously)."""
    events = []
    for queue in await conveyor.queues():
        for entry_id, fields in await conveyor.redis.xrange(conveyor.keys.queue(queue).events):
            ev = parse_entry(queue, entry_id, fields)
            if ev is not None:
                events.append(ev)
    await store.apply(events)
    return len(events)


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Await a condition observed through the public API (a worker in this loop changes it;
    no event crosses that boundary, so this is the one place that polls)."""
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.02)
    return value
