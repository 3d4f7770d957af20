"""OpenTelemetry for Conveyor, as a middleware (``pip install 'conveyor[otel]'``).

    from conveyor.otel import OpenTelemetry
    app = Conveyor(middleware=[OpenTelemetry()])   # the global tracer and meter providers

What it records, after the OpenTelemetry messaging semantic conventions
(``messaging.system="conveyor"``, ``messaging.destination.name`` = the queue,
``messaging.message.id`` = the job id):

- a PRODUCER span ``send <queue>`` for every job enqueued, from Python, the HTTP API or the
  scheduler, a child of the span current in the caller (an HTTP request's, when the API is
  instrumented); its W3C trace context (``traceparent``, ``tracestate``) goes into the job's
  metadata, stored with the job;
- a CONSUMER span ``process <queue>`` for every attempt, a child of the producer's span (so
  the producer's trace holds every attempt), with ``conveyor.job.attempt``; it is the current
  span while the handler runs, so the handler's own spans nest under it; a failure is
  recorded on it (the exception event and an ERROR status);
- with ``script_spans=True``, CLIENT spans for the Redis scripts a worker calls for the job:
  ``claim`` and ``fail`` and ``complete`` (children of the attempt's span; the claim and the
  completion are batched calls, so their spans carry the batch's timing);
- metrics through the OpenTelemetry metrics API, for users without Prometheus:
  ``messaging.client.sent.messages``, ``messaging.client.consumed.messages``,
  ``messaging.process.duration`` (seconds), ``conveyor.jobs.failed``, ``conveyor.jobs.retried``
  and ``conveyor.jobs.dead``, by queue and job type (and ``error.type`` on failures).

Only ``opentelemetry-api`` is imported here; configure the SDK and its exporters as usual.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("conveyor.otel needs OpenTelemetry: pip install 'conveyor[otel]'") from exc

from conveyor.middleware import Middleware, job_meta

if TYPE_CHECKING:
    from conveyor.broker.broker import Broker, ClaimResult, Completion
    from conveyor.handle import JobHandle
    from conveyor.job import ClaimedJob, NewJob
    from conveyor.worker.context import Context
    from conveyor.worker.worker import Worker

SYSTEM = "conveyor"
REMEMBERED = 10_000  # attempts whose span context waits for a batched script call


@dataclass(slots=True)
class _Attempt:
    span: Span
    token: Token[otel_context.Context]
    started: float


class OpenTelemetry(Middleware):
    """Traces and metrics of every enqueue and every attempt.

    ``tracer_provider`` and ``meter_provider`` default to the global ones; ``propagator``
    to W3C trace context. ``script_spans`` adds spans for the worker's Redis script calls.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        script_spans: bool = False,
    ) -> None:
        from conveyor import __version__

        self.tracer = trace.get_tracer("conveyor", __version__, tracer_provider)
        meter = metrics.get_meter("conveyor", __version__, meter_provider)
        self.propagator = propagator or TraceContextTextMapPropagator()
        self.script_spans = script_spans
        self._sending: dict[str, Span] = {}
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._ended: OrderedDict[tuple[str, int], trace.SpanContext] = OrderedDict()
        self._claimed: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", "{message}", "Jobs enqueued")
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", "{message}", "Attempts started")
        self.duration = meter.create_histogram(
            "messaging.process.duration", "s", "Run time of attempts")
        self.failed = meter.create_counter("conveyor.jobs.failed", "{job}", "Failed attempts")
        self.retried = meter.create_counter("conveyor.jobs.retried", "{job}", "Retries")
        self.dead = meter.create_counter("conveyor.jobs.dead", "{job}", "Jobs sent to the DLQ")

    # -- producer -----------------------------------------------------------------------------

    def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> None:
        span = self.tracer.start_span(
            f"send {job.queue}", kind=SpanKind.PRODUCER,
            attributes={**_common(job.queue, job.type), "messaging.message.id": job.id,
                        "messaging.operation.type": "send",
                        "messaging.operation.name": "enqueue"})
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        meta.update(carrier)
        self._sending[job.id] = span

    def after_enqueue(
        self, job: NewJob, handle: JobHandle | None, error: BaseException | None
    ) -> None:
        span = self._sending.pop(job.id, None)
        if span is None:
            return
        if error is not None:
            _record(span, error)
        else:
            self.sent.add(1, _common(job.queue, job.type))
            if handle is not None and not handle.created:
                span.set_attribute("conveyor.job.existing", True)  # an idempotent repeat
        span.end()

    # -- consumer -----------------------------------------------------------------------------

    def before_process(self, job: ClaimedJob, ctx: Context) -> None:
        parent = self.propagator.extract(job_meta(job))
        claimed = self._claimed.pop(job.id, None)
        span = self.tracer.start_span(
            f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER,
            start_time=claimed[0] if claimed else None,
            attributes={**_common(job.queue, job.type), "messaging.message.id": job.id,
                        "messaging.operation.type": "process",
                        "messaging.operation.name": "process",
                        "messaging.client.id": ctx.worker_id,
                        "conveyor.job.attempt": job.attempt,
                        "conveyor.job.max_attempts": job.max_attempts})
        if claimed:
            self._script_span("claim", job.queue, span.get_span_context(), *claimed)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._attempts[(job.id, job.attempt)] = _Attempt(span, token, time.perf_counter())
        self.consumed.add(1, _common(job.queue, job.type))

    def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> None:
        attempt = self._attempts.pop((job.id, job.attempt), None)
        if attempt is None:
            return
        labels = _common(job.queue, job.type)
        if error is not None:
            _record(attempt.span, error)
            labels["error.type"] = type(error).__qualname__
            self.failed.add(1, labels)
        self.duration.record(time.perf_counter() - attempt.started, labels)
        attempt.span.end()
        otel_context.detach(attempt.token)
        if self.script_spans:
            _remember(self._ended, (job.id, job.attempt), attempt.span.get_span_context())

    def on_retry(self, job: ClaimedJob, error: BaseException, delay: float) -> None:
        self.retried.add(1, _common(job.queue, job.type))

    def on_dead(self, job: ClaimedJob, error: BaseException) -> None:
        self.dead.add(1, _common(job.queue, job.type))

    # -- script spans -------------------------------------------------------------------------

    def on_worker_start(self, worker: Worker) -> None:
        if self.script_spans:
            _ScriptTracer(self, worker.app.broker).install()

    def _script_span(
        self, script: str, queue: str, parent: trace.SpanContext, start: int, end: int,
        count: int = 1,
    ) -> None:
        span = self.tracer.start_span(
            f"{script} {queue}", kind=SpanKind.CLIENT, start_time=start,
            context=trace.set_span_in_context(trace.NonRecordingSpan(parent)),
            attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                        "messaging.operation.name": script, "db.system.name": "redis",
                        "messaging.batch.message_count": count})
        span.end(end_time=end)

    def _after_script(self, script: str, queue: str, keys: Sequence[tuple[str, int]],
                      start: int, end: int) -> None:
        for key in keys:
            parent = self._ended.pop(key, None)
            if parent is not None:
                self._script_span(script, queue, parent, start, end, len(keys))


class _ScriptTracer:
    """Wraps one worker's ``Broker`` calls of the claim, complete and fail scripts (an
    instance attribute each, set once at worker start) to time them for ``OpenTelemetry``."""

    def __init__(self, otel: OpenTelemetry, broker: Broker) -> None:
        self.otel = otel
        self.broker = broker

    def install(self) -> None:
        b = self.broker
        b.traced = True  # the fetchers then claim through b.claim only (see Fetcher)
        b.claim = self._claim(b.claim)  # type: ignore[method-assign,assignment]
        b.complete = self._complete(b.complete)  # type: ignore[method-assign,assignment]
        b.fail = self._fail(b.fail)  # type: ignore[method-assign,assignment]

    def _claim(self, call: Callable[..., Awaitable[ClaimResult]]
               ) -> Callable[..., Awaitable[ClaimResult]]:
        async def claim(queue: str, *args: Any, **kwargs: Any) -> ClaimResult:
            start = time.time_ns()
            result = await call(queue, *args, **kwargs)
            end = time.time_ns()
            for job in result.jobs:
                _remember(self.otel._claimed, job.id, (start, end))
            return result
        return claim

    def _complete(self, call: Callable[..., Awaitable[list[int]]]
                  ) -> Callable[..., Awaitable[list[int]]]:
        async def complete(queue: str, worker_id: str, items: Sequence[Completion],
                           *args: Any, **kwargs: Any) -> list[int]:
            start = time.time_ns()
            codes = await call(queue, worker_id, items, *args, **kwargs)
            self.otel._after_script("complete", queue, [(c.job_id, c.token) for c in items],
                                    start, time.time_ns())
            return codes
        return complete

    def _fail(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def fail(job: ClaimedJob, *args: Any, **kwargs: Any) -> Any:
            start = time.time_ns()
            answer = await call(job, *args, **kwargs)
            self.otel._after_script("fail", job.queue, [(job.id, job.attempt)], start,
                                    time.time_ns())
            return answer
        return fail


def _common(queue: str, job_type: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.destination.name": queue,
            "conveyor.job.type": job_type}


def _record(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute("error.type", type(error).__qualname__)


def _remember(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    if len(table) > REMEMBERED:
        table.popitem(last=False)  # the oldest: its job is long settled
