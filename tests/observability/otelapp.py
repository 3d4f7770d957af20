"""The app the two-process tracing tests run in ``conveyor api`` and ``conveyor worker``.

Each process sends its spans to the JSON-lines file named by ``CONVEYOR_TEST_SPANS`` (one
line a span, written as it ends), so the test can read what both processes exported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from conveyor import Context, Conveyor, NonRetryable
from conveyor.otel import OpenTelemetry


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (test-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


def tracer_provider() -> TracerProvider:
    provider = TracerProvider(resource=Resource.create(
        {"service.name": os.environ.get("CONVEYOR_TEST_SERVICE", "conveyor-test")}))
    spans = os.environ.get("CONVEYOR_TEST_SPANS")
    if spans:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(Path(spans))))
    return provider


provider = tracer_provider()
app = Conveyor(middleware=[OpenTelemetry(tracer_provider=provider, script_spans=True)])
handler_tracer = provider.get_tracer("tests.handlers")


@app.job(queue="traced", max_attempts=3)
async def greet(name: str) -> str:
    with handler_tracer.start_as_current_span("greet.inner") as span:
        span.set_attribute("greeting.name", name)
        return f"hello {name}"


@app.job(queue="traced", max_attempts=3)
async def flaky(ctx: Context) -> int:
    """Fails its first attempt, succeeds on the second."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@app.job(queue="traced", max_attempts=1)
async def doomed() -> None:
    raise NonRetryable("never works")

