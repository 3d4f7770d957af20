"""Runs one Python example of the docs in a process of its own (so what it sets globally, an
OpenTelemetry provider or a Sentry client, stays there): ``python docrun.py SPEC.json`` in
the project folder, where SPEC has ``blocks`` ([{where, code}]: the examples it uses, then
itself), ``given`` (setups) and ``until_url``.

Each block runs as the body of an ``async def main()`` (top-level ``await`` is allowed), all
in one namespace. If the namespace then holds an ``app`` that is a ``Conveyor``, it is
exercised: a worker runs a job that completes and one that dies, through whatever
middleware the example registered, and no middleware hook may have failed.

Setups (``<!-- example: given NAME ... -->``):

``otel-sdk``
    global tracer and meter providers of the OpenTelemetry SDK with in-memory exporters,
    set before the example runs; the exercise must then produce the ``send`` and
    ``process`` spans of one trace and the sent-messages counter;
``dead-email-job``
    a job of queue ``emails`` that died of a timeout, recorded in the history store
    ``sqlite:///.conveyor/history.db`` (what the recorder of ``conveyor up`` writes there).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import json
import logging
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

from conveyor import Conveyor, JobFailed, NonRetryable, Worker
from conveyor.store import open_store, parse_entry

QUEUE = "docs"


async def run_block(block: dict[str, str], namespace: dict[str, Any]) -> None:
    code = compile(block["code"], block["where"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the doc's own code
    if inspect.isawaitable(result):
        await result


async def run_worker(app: Conveyor, queues: list[str], body: Callable[[], Any]) -> None:
    worker = Worker(app, queues, concurrency=2, worker_id="docs-example")
    task = asyncio.create_task(worker.run())
    try:
        await body()
    finally:
        worker.stop()
        await task


async def dead_email_job() -> None:
    app = Conveyor()

    @app.job(queue="emails", max_attempts=1)
    async def send_email(to: str) -> None:
        raise NonRetryable("SMTP timeout after 30 s")

    async def go() -> None:
        handle = await app.enqueue("send_email", {"to": "a@example.com"})
        with contextlib.suppress(JobFailed):
            await handle.result(timeout=20)

    await run_worker(app, ["emails"], go)
    store = await open_store(app.settings.store_url)
    entries = await app.redis.xrange(app.keys.queue("emails").events)
    await store.apply([e for i, f in entries if (e := parse_entry("emails", i, f)) is not None])
    await store.close()
    await app.close()


class OtelSdk:
    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracing = TracerProvider()
        tracing.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(tracing)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def check(self) -> None:
        spans = {s.name: s for s in self.spans.get_finished_spans()}
        send, process = spans.get(f"send {QUEUE}"), spans.get(f"process {QUEUE}")
        assert send and process, f"no send/process spans: {sorted(spans)}"
        assert process.context.trace_id == send.context.trace_id, "two traces"
        data = self.reader.get_metrics_data()
        names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics} if data else set()
        assert "messaging.client.sent.messages" in names, sorted(names)


class HookErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def exercise(app: Conveyor) -> None:
    """A job that completes and one that dies, through the example's app and middleware."""
    errors = HookErrors()
    logging.getLogger("conveyor.middleware").addHandler(errors)

    @app.job(name="docs.ok", queue=QUEUE)
    async def ok(n: int) -> int:
        return n + 1

    @app.job(name="docs.dies", queue=QUEUE, max_attempts=1)
    async def dies(n: int) -> None:
        raise NonRetryable(f"dies on purpose ({n})")

    async def go() -> None:
        assert await (await app.enqueue("docs.ok", {"n": 1})).result(timeout=20) == 2
        try:
            await (await app.enqueue("docs.dies", {"n": 2})).result(timeout=20)
            raise AssertionError("docs.dies completed")
        except JobFailed:
            pass

    await run_worker(app, [QUEUE], go)
    await app.close()
    assert not errors.records, [errors.format(r) for r in errors.records]


async def until_answers(url: str, task: asyncio.Task[None]) -> None:
    def get() -> int:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return int(reply.status)
        except OSError:
            return 0

    async with asyncio.timeout(20):
        while await asyncio.to_thread(get) != 200:
            if task.done():
                task.result()
                raise AssertionError(f"it ended before {url} answered")
            await asyncio.sleep(0.05)  # polls the server the example starts


async def main(spec: dict[str, Any]) -> None:
    otel = OtelSdk() if "otel-sdk" in spec["given"] else None
    if "dead-email-job" in spec["given"]:
        await dead_email_job()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    *used, block = spec["blocks"]
    async with asyncio.timeout(60):
        for b in used:
            await run_block(b, namespace)
        if spec["until_url"]:
            task = asyncio.create_task(run_block(block, namespace))
            await until_answers(spec["until_url"], task)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await run_block(block, namespace)
        for value in namespace.values():
            if isinstance(value, Conveyor):
                if value is namespace.get("app"):
                    await exercise(value)
                else:
                    await value.close()
    if otel:
        otel.check()
    print("example ran")


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
