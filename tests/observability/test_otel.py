"""The OpenTelemetry middleware in one process, with the SDK's in-memory span exporter and
metric reader: producer spans nest under the caller's span, the trace context is in the
job's metadata, attempts are consumer spans of the producer's trace, metrics are mirrored,
and with no SDK configured nothing is injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from conveyor import Conveyor, JobFailed, NonRetryable, Worker
from conveyor.embedded import RedisServer
from conveyor.otel import OpenTelemetry
from tests.conftest import FAST


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {m.name: list(m.data.data_points) for rm in data.resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics}


@pytest.fixture
async def traced(any_redis: RedisServer) -> AsyncIterator[tuple[Conveyor, Telemetry]]:
    tel = Telemetry()
    app = Conveyor(redis_url=any_redis.url, **FAST, middleware=[OpenTelemetry(
        tel.tracer_provider, tel.meter_provider)])

    @app.job(queue="otel", max_attempts=1)
    async def double(n: int) -> int:
        return 2 * n

    @app.job(queue="otel", max_attempts=1)
    async def refuse() -> None:
        raise NonRetryable("refused")

    yield app, tel
    await app.close()


async def test_producer_span_is_a_child_of_the_callers_span(
    traced: tuple[Conveyor, Telemetry],
) -> None:
    app, tel = traced
    tracer = tel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("checkout") as parent:
        handle = await app.enqueue("double", {"n": 2}, meta={"order": 7})
    (send,) = tel.spans("send otel")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == parent.get_span_context().span_id
    assert send.context.trace_id == parent.get_span_context().trace_id
    info = await app.get_job(handle.id)
    assert info is not None
    assert info.meta["order"] == 7
    assert info.meta["traceparent"] == (
        f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-{send.context.trace_flags:02x}")


async def test_attempts_are_consumer_spans_of_the_producer_trace_and_metrics_mirror_them(
    traced: tuple[Conveyor, Telemetry],
) -> None:
    app, tel = traced
    worker = Worker(app, ["otel"], concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        ok = await app.enqueue("double", {"n": 21})
        bad = await app.enqueue("refuse", {})
        assert await ok.result(timeout=10) == 42
        with pytest.raises(JobFailed):
            await bad.result(timeout=10)
    finally:
        worker.stop()
        await task
    sends = {s.attributes["messaging.message.id"]: s for s in tel.spans("send otel")
             if s.attributes}
    processes = {s.attributes["messaging.message.id"]: s for s in tel.spans("process otel")
                 if s.attributes}
    for job_id in (ok.id, bad.id):
        assert processes[job_id].kind == SpanKind.CONSUMER
        parent, send = processes[job_id].parent, sends[job_id].context
        assert parent is not None and parent.is_remote  # it came through Redis
        assert (parent.trace_id, parent.span_id) == (send.trace_id, send.span_id)
    assert processes[ok.id].status.status_code == StatusCode.UNSET
    assert processes[bad.id].status.status_code == StatusCode.ERROR
    assert processes[bad.id].events[0].name == "exception"

    metrics = tel.metrics()
    assert sum(p.value for p in metrics["messaging.client.sent.messages"]) == 2
    assert sum(p.value for p in metrics["messaging.client.consumed.messages"]) == 2
    assert sum(p.count for p in metrics["messaging.process.duration"]) == 2
    (failed,) = metrics["conveyor.jobs.failed"]
    assert failed.value == 1 and failed.attributes["error.type"] == "NonRetryable"
    (dead,) = metrics["conveyor.jobs.dead"]
    assert dead.value == 1 and dead.attributes == {
        "messaging.system": "conveyor", "messaging.destination.name": "otel",
        "conveyor.job.type": "refuse"}


async def test_a_refused_enqueue_ends_its_span_with_the_error(
    traced: tuple[Conveyor, Telemetry],
) -> None:
    app, tel = traced
    await app.enqueue("double", {"n": 1}, idempotency_key="once")
    with pytest.raises(Exception, match="idempotency"):
        await app.enqueue("double", {"n": 9}, idempotency_key="once")
    first, refused = sorted(tel.spans("send otel"), key=lambda s: s.start_time or 0)
    assert first.status.status_code == StatusCode.UNSET
    assert refused.status.status_code == StatusCode.ERROR
    assert refused.attributes is not None
    assert refused.attributes["error.type"] == "IdempotencyConflict"


async def test_without_an_sdk_nothing_is_injected(any_redis: RedisServer) -> None:
    app = Conveyor(redis_url=any_redis.url, middleware=[OpenTelemetry(NoOpTracerProvider())])

    @app.job(queue="otel")
    async def noop() -> None:
        return None

    try:
        handle = await app.enqueue("noop", {})
        info = await app.get_job(handle.id)
        assert info is not None and info.meta == {}
    finally:
        await app.close()
