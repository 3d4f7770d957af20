"""One trace from an HTTP submission in a ``conveyor api`` process to its execution in a
``conveyor worker`` process, checked span by span.

Both processes run ``tests.observability.otelapp`` (the ``OpenTelemetry`` middleware with
script spans) and write their finished spans to a JSON-lines file each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.embedded import RedisServer, free_port
from tests.procs import ROOT, worker_env

APP = "tests.observability.otelapp:app"
ADMIN = "otel-admin-key-0123456789"
Span = dict[str, Any]


def start(role: str, args: list[str], redis_url: str, spans: Path) -> subprocess.Popen[bytes]:
    env = {**worker_env(redis_url), "CONVEYOR_ADMIN_KEY": ADMIN,
           "CONVEYOR_TEST_SPANS": str(spans), "CONVEYOR_TEST_SERVICE": role}
    log = (spans.parent / f"{role}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "conveyor", role, APP, *args], env=env,
                            cwd=ROOT, stdout=log, stderr=log)


def until(check: Any, timeout: float = 30.0) -> Any:
    """Poll another process's state (no event crosses the process boundary)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0


def read(path: Path) -> list[Span]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def traced_run(any_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Submits greet, flaky and doomed over HTTP, waits for their ends, stops both
    processes (so every span is written) and yields the job ids by type."""
    port = free_port()
    worker = start("worker", ["--queues", "traced"], any_redis.url, tmp_path / "worker.jsonl")
    api = start("api", ["--port", str(port), "--log-level", "warning"], any_redis.url,
                tmp_path / "api.jsonl")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            until(lambda: c.get("/healthz").status_code == 200)
            ids = {}
            for type_, args in (("greet", {"name": "ada"}), ("flaky", {}), ("doomed", {})):
                r = c.post("/api/jobs", json={"type": type_, "args": args})
                assert r.status_code == 201, r.text
                ids[type_] = r.json()["id"]
            for job_id in ids.values():
                until(lambda j=job_id: c.get(f"/api/jobs/{j}").json()["status"]
                      in ("completed", "dead"))
    finally:
        for proc in (api, worker):
            stop(proc)
    yield ids, tmp_path


def by_name(spans: list[Span], name: str, job_id: str | None = None) -> list[Span]:
    return sorted((s for s in spans if s["name"] == name and (
        job_id is None or s["attributes"].get("messaging.message.id") == job_id)),
        key=lambda s: s["start_time"])


def children(spans: list[Span], parent: Span) -> list[str]:
    return sorted(s["name"] for s in spans if s["parent_id"] == parent["context"]["span_id"])


def test_one_trace_from_http_submit_to_worker(traced_run: tuple[dict[str, str], Path]) -> None:
    ids, tmp = traced_run
    api_spans, worker_spans = read(tmp / "api.jsonl"), read(tmp / "worker.jsonl")
    assert {s["resource"]["attributes"]["service.name"] for s in api_spans} == {"api"}
    assert {s["resource"]["attributes"]["service.name"] for s in worker_spans} == {"worker"}

    job_id = ids["greet"]
    (send,) = by_name(api_spans, "send traced", job_id)
    assert send["kind"] == "SpanKind.PRODUCER"
    assert send["attributes"] == {
        "messaging.system": "conveyor", "messaging.destination.name": "traced",
        "messaging.message.id": job_id, "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue", "conveyor.job.type": "greet"}
    trace_id = send["context"]["trace_id"]

    (process,) = by_name(worker_spans, "process traced", job_id)
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["context"]["trace_id"] == trace_id  # one trace across the two processes
    assert process["parent_id"] == send["context"]["span_id"]
    assert process["status"]["status_code"] == "UNSET"
    attrs = process["attributes"]
    assert attrs["messaging.system"] == "conveyor"
    assert attrs["messaging.destination.name"] == "traced"
    assert attrs["messaging.message.id"] == job_id
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["conveyor.job.attempt"] == 1 and attrs["conveyor.job.type"] == "greet"
    assert attrs["messaging.client.id"]

    # The handler's own span and the claim and complete script calls nest under the attempt.
    assert children(worker_spans, process) == ["claim traced", "complete traced", "greet.inner"]
    in_trace = [s for s in worker_spans if s["context"]["trace_id"] == trace_id]
    assert sorted(s["name"] for s in in_trace) == [
        "claim traced", "complete traced", "greet.inner", "process traced"]
    (inner,) = by_name(worker_spans, "greet.inner")
    assert inner["attributes"] == {"greeting.name": "ada"}
    (claim,) = by_name(in_trace, "claim traced")
    assert claim["kind"] == "SpanKind.CLIENT"
    assert claim["attributes"]["db.system.name"] == "redis"
    assert claim["start_time"] == process["start_time"]  # the attempt starts with its claim


def test_every_attempt_is_in_the_producer_trace_with_its_error(
    traced_run: tuple[dict[str, str], Path],
) -> None:
    ids, tmp = traced_run
    api_spans, worker_spans = read(tmp / "api.jsonl"), read(tmp / "worker.jsonl")

    (send,) = by_name(api_spans, "send traced", ids["flaky"])
    first, second = by_name(worker_spans, "process traced", ids["flaky"])
    for attempt, span in enumerate((first, second), start=1):
        assert span["context"]["trace_id"] == send["context"]["trace_id"]
        assert span["parent_id"] == send["context"]["span_id"]
        assert span["attributes"]["conveyor.job.attempt"] == attempt
    assert first["status"] == {"status_code": "ERROR",
                               "description": "RuntimeError: first attempt fails"}
    (event,) = first["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert event["attributes"]["exception.message"] == "first attempt fails"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    assert first["attributes"]["error.type"] == "RuntimeError"
    assert children(worker_spans, first) == ["claim traced", "fail traced"]
    assert second["status"]["status_code"] == "UNSET"
    assert children(worker_spans, second) == ["claim traced", "complete traced"]

    (send,) = by_name(api_spans, "send traced", ids["doomed"])
    (dead,) = by_name(worker_spans, "process traced", ids["doomed"])
    assert dead["parent_id"] == send["context"]["span_id"]
    assert dead["status"]["status_code"] == "ERROR"
    assert dead["events"][0]["attributes"]["exception.type"] == "conveyor.errors.NonRetryable"
    assert children(worker_spans, dead) == ["claim traced", "fail traced"]
