"""Queues (depths, pause/resume, DLQ), workers, types, stats, health probes and metrics."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Conveyor, JobFailed
from conveyor.api import create_app
from conveyor.api.hub import Filter, Subscriber
from conveyor.handle import JobHandle
from conveyor.store import Store
from conveyor.worker.worker import Worker
from tests.api.conftest import ADMIN_KEY, UNLIMITED, auth, running, sync_history

RESIZE = {"type": "resize", "args": {"image_id": "a", "width": 640}}


async def _dead_jobs(client: httpx.AsyncClient, conveyor: Conveyor, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = (await client.post("/api/jobs", json={"type": "explode",
                                                     "args": {"message": f"boom {i}"}})).json()
        with pytest.raises(JobFailed):
            await JobHandle(conveyor, body["id"], body["queue"], "", True).result(timeout=10)
        ids.append(body["id"])
    return ids


async def test_queues_list_depths(client: httpx.AsyncClient) -> None:
    await client.post("/api/jobs", json={**RESIZE, "priority": "high"})
    await client.post("/api/jobs", json=RESIZE)
    await client.post("/api/jobs", json={**RESIZE, "priority": "low"})
    await client.post("/api/jobs", json={**RESIZE, "delay": 60})
    queues = (await client.get("/api/queues")).json()
    (media,) = queues
    assert media["name"] == "media" and media["paused"] is False
    assert (media["high"], media["normal"], media["low"]) == (1, 1, 1)
    assert media["waiting"] == 3 and media["delayed"] == 1 and media["active"] == 0
    assert media["oldest_waiting_seconds"] >= 0
    assert media["throughput"] == {"window_seconds": 60, "completed_per_second": 0.0,
                                   "failed_per_second": 0.0}


async def test_pause_and_resume(client: httpx.AsyncClient, conveyor: Conveyor) -> None:
    r = await client.post("/api/queues/media/pause")
    assert r.status_code == 200 and r.json() == {"name": "media", "paused": True}
    assert (await client.get("/api/queues")).json()[0]["paused"] is True
    r = await client.post("/api/queues/media/resume")
    assert r.json() == {"name": "media", "paused": False}
    r = await client.post("/api/queues/never-heard-of/pause")
    assert r.status_code == 404 and r.json()["error"]["code"] == "queue_not_found"


async def test_paused_queue_is_not_worked(
    client: httpx.AsyncClient, conveyor: Conveyor, worker: Worker
) -> None:
    await client.post("/api/queues/media/pause")
    body = (await client.post("/api/jobs", json=RESIZE)).json()
    handle = JobHandle(conveyor, body["id"], "media", "", True)
    with pytest.raises(TimeoutError):
        await handle.result(timeout=1.0)
    await client.post("/api/queues/media/resume")
    assert await handle.result(timeout=10) == {"image_id": "a", "width": 640}


async def test_dlq_list_retry_selected_retry_all_purge(
    client: httpx.AsyncClient, conveyor: Conveyor, worker: Worker
) -> None:
    ids = await _dead_jobs(client, conveyor, 3)
    page = (await client.get("/api/queues/default/dlq")).json()
    assert page["total"] == 3 and {j["id"] for j in page["items"]} == set(ids)
    assert page["items"][0]["error"].startswith("NonRetryable")
    r = await client.post("/api/queues/default/dlq/retry", json={"ids": ids[:1]})
    assert r.json() == {"queue": "default", "count": 1}
    with pytest.raises(JobFailed):  # it fails again and comes back
        await JobHandle(conveyor, ids[0], "default", "", True).result(timeout=10)
    r = await client.post("/api/queues/default/dlq/purge", json={"ids": ids[1:2]})
    assert r.json()["count"] == 1
    assert (await client.get("/api/queues/default/dlq")).json()["total"] == 2
    r = await client.post("/api/queues/default/dlq/purge", json={"all": True})
    assert r.json()["count"] == 2
    assert (await client.get("/api/queues/default/dlq")).json() == {
        "queue": "default", "total": 0, "items": []}


async def test_dlq_retry_all(client: httpx.AsyncClient, conveyor: Conveyor,
                             worker: Worker) -> None:
    await _dead_jobs(client, conveyor, 2)
    worker.stop()  # keep the retried jobs queued
    r = await client.post("/api/queues/default/dlq/retry", json={"all": True})
    assert r.json()["count"] == 2
    assert (await client.get("/api/queues/default/dlq")).json()["total"] == 0


async def test_dlq_selection_must_be_ids_or_all(client: httpx.AsyncClient) -> None:
    await client.post("/api/jobs", json={"type": "explode", "args": {"message": "x"}})
    for body in ({}, {"ids": ["a"], "all": True}, {"all": False}):
        r = await client.post("/api/queues/default/dlq/retry", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "ids"
    assert (await client.get("/api/queues/nope/dlq")).status_code == 404


async def test_workers_types(client: httpx.AsyncClient, worker: Worker) -> None:
    await JobHandle(worker.app, (await client.post("/api/jobs", json=RESIZE)).json()["id"],
                    "media", "", True).result(timeout=10)
    (w,) = (await client.get("/api/workers")).json()
    assert w["id"] == worker.id and w["alive"] is True and w["concurrency"] == 4
    types = {t["name"]: t for t in (await client.get("/api/types")).json()}
    assert set(types) == {"resize", "explode", "wait"}
    assert types["resize"]["queue"] == "media"
    assert types["resize"]["args_schema"]["properties"]["width"]["type"] == "integer"
    assert types["resize"]["doc"] == "Pretends to resize an image."


async def test_stats_series_and_counts(
    client: httpx.AsyncClient, conveyor: Conveyor, store: Store, worker: Worker
) -> None:
    body = (await client.post("/api/jobs", json=RESIZE)).json()
    await JobHandle(conveyor, body["id"], "media", "", True).result(timeout=10)
    await _dead_jobs(client, conveyor, 1)
    await sync_history(conveyor, store)
    stats = (await client.get("/api/stats", params={"interval_ms": 600_000})).json()
    assert stats["counts"]["completed"] == 1 and stats["counts"]["dead"] == 1
    assert len(stats["series"]) == 6
    assert sum(b["completed"] for b in stats["series"]) == 1
    assert sum(b["failed"] for b in stats["series"]) == 1
    assert {q["name"] for q in stats["queues"]} == {"media", "default", "slow"}
    media = (await client.get("/api/queues")).json()
    assert next(q for q in media if q["name"] == "media")["throughput"][
        "completed_per_second"] == pytest.approx(1 / 60)
    one = (await client.get("/api/stats", params={"queue": "media"})).json()
    assert one["counts"]["completed"] == 1 and one["counts"]["dead"] == 0
    r = await client.get("/api/stats", params={"since_ms": 10, "until_ms": 5})
    assert r.status_code == 422
    r = await client.get("/api/stats", params={"since_ms": 0, "interval_ms": 1000})
    assert r.status_code == 422 and "buckets" in r.json()["error"]["message"]


async def test_health_ready_metrics(client: httpx.AsyncClient, conveyor: Conveyor,
                                    worker: Worker) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert {k: ready[k] for k in ("status", "redis", "store", "stuck")} == {
        "status": "ready", "redis": "ok", "store": "ok", "stuck": []}
    assert ready["loops"]["api.hub"]["reader"]["needed"] is True
    body = (await client.post("/api/jobs", json=RESIZE)).json()
    await JobHandle(conveyor, body["id"], "media", "", True).result(timeout=10)
    await _dead_jobs(client, conveyor, 1)
    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for line in ('conveyor_queue_depth{queue="media",state="normal"} 0.0',
                 'conveyor_dlq_size{queue="default"} 1.0',
                 "conveyor_workers_alive 1.0",
                 'conveyor_api_requests_total{method="POST",route="/api/jobs",status="201"}'):
        assert line in text, line
    for name in ("conveyor_jobs_total counter", "conveyor_job_duration_seconds histogram",
                 "conveyor_pickup_latency_seconds histogram",
                 "conveyor_jobs_submitted_total counter"):
        assert f"# TYPE {name}" in text


async def test_metrics_count_events_seen_by_the_hub(api: FastAPI, conveyor: Conveyor,
                                                    worker: Worker) -> None:
    """Counters and histograms come from the events streams, whoever submitted the job."""
    gateway = api.state.gateway
    seen = Subscriber(Filter(), 100, on_drop=lambda: None)
    gateway.hub.register(seen)
    job = await conveyor.enqueue("resize", {"image_id": "x", "width": 1})
    await gateway.hub.discover(["media"])
    async with asyncio.timeout(10):  # observers see an event before any subscriber does
        while (ev := await seen.queue.get()).fields.get("event") != "completed":
            pass
    assert ev.job == job.id
    text = (await gateway.metrics.render(conveyor)).decode()
    assert 'conveyor_jobs_total{outcome="completed",queue="media"} 1.0' in text
    assert 'conveyor_job_duration_seconds_count{queue="media",type="resize"} 1.0' in text
    assert 'conveyor_pickup_latency_seconds_count{queue="media"} 1.0' in text


async def test_readyz_reports_a_missing_store(conveyor: Conveyor) -> None:
    conveyor.configure(store_url="nosuch://x")
    app = create_app(conveyor, settings=UNLIMITED, admin_key=ADMIN_KEY)
    async with running(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api",
            headers=auth(ADMIN_KEY)) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["redis"] == "ok"
        assert "unknown history store URL" in r.json()["store"]
        r = await client.get("/api/jobs")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert (await client.post("/api/jobs", json=RESIZE)).status_code == 201
