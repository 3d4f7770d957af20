"""Failures reach an error tracker through ``ErrorReporter``: here the real Sentry SDK with a
fake transport (the one stand-in of this suite) that keeps the envelopes it is given, on a
real Redis and a real in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from conveyor import Context, Conveyor, Worker
from conveyor.embedded import RedisServer
from conveyor.middleware import ErrorReporter
from tests.conftest import FAST


class FakeTransport(Transport):
    """Keeps each event instead of sending it, and wakes whoever waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)
            self.loop.call_soon_threadsafe(self.arrived.set)

    async def wait(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@pytest.fixture
async def transport() -> AsyncIterator[FakeTransport]:
    fake = FakeTransport()
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=fake,
                    default_integrations=False, auto_enabling_integrations=False)
    yield fake
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def to_sentry(error: BaseException, tags: dict[str, str], context: dict[str, Any]) -> None:
    """The adapter docs/observability.md shows."""
    sentry_sdk.capture_exception(error, tags=tags, contexts={"conveyor": context})


def make_app(url: str, every_attempt: bool) -> Conveyor:
    app = Conveyor(redis_url=url, middleware=[ErrorReporter(to_sentry,
                                                            every_attempt=every_attempt)],
                   **FAST)

    @app.job(queue="errors", max_attempts=2)
    async def charge(amount: int, ctx: Context) -> int:
        if amount < 0:
            raise ValueError(f"cannot charge {amount} (attempt {ctx.attempt})")
        return amount

    return app


async def run_until(app: Conveyor, transport: FakeTransport, count: int,
                    *jobs: tuple[str, dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    worker = Worker(app, ["errors"], concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        ids = [(await app.enqueue(t, a)).id for t, a in jobs]
        events = await transport.wait(count)
    finally:
        worker.stop()
        await task
        await app.close()
    return ids, events


async def test_a_dead_job_is_reported_once_with_its_traceback_and_tags(
    any_redis: RedisServer, transport: FakeTransport,
) -> None:
    app = make_app(any_redis.url, every_attempt=False)
    (bad, _), events = await run_until(app, transport, 1, ("charge", {"amount": -5}),
                                          ("charge", {"amount": 5}))
    (event,) = events
    (exc,) = event["exception"]["values"]
    assert exc["type"] == "ValueError"
    assert exc["value"] == "cannot charge -5 (attempt 2)"  # the last attempt's error
    assert "charge" in [f["function"] for f in exc["stacktrace"]["frames"]]
    assert event["tags"] == {"conveyor.queue": "errors", "conveyor.job_type": "charge",
                             "conveyor.attempt": "2"}
    assert event["contexts"]["conveyor"] == {"job_id": bad, "attempt": 2, "max_attempts": 2,
                                             "priority": "normal"}


async def test_every_attempt_reports_each_failure(
    any_redis: RedisServer, transport: FakeTransport,
) -> None:
    app = make_app(any_redis.url, every_attempt=True)
    (bad,), events = await run_until(app, transport, 2, ("charge", {"amount": -1}))
    assert [e["exception"]["values"][0]["value"] for e in events] == [
        "cannot charge -1 (attempt 1)", "cannot charge -1 (attempt 2)"]
    assert {e["contexts"]["conveyor"]["job_id"] for e in events} == {bad}
    assert all(e["contexts"]["conveyor"]["worker"] for e in events)
