"""Server-side dead-letter triage: find by type, error text and time of death across every
page, and retry or purge every match (or given ids) in chunks, with progress by run id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from conveyor import Conveyor
from tests.api.conftest import wait_for
from tests.support.deadjobs import plant_dead

BASE_MS = 1_700_000_000_000


async def _plant(conveyor: Conveyor, n: int, prefix: str = "d") -> list[str]:
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    await plant_dead(conveyor.redis, conveyor.keys, "default", ids, "explode",
                     error=lambda i: f"boom #{i % 10}", died_ms=lambda i: BASE_MS + i * 1000)
    return ids


async def _finish(client: httpx.AsyncClient, run: dict[str, Any]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/dlq/runs/{run['id']}")).json()
        return body if body["state"] != "running" else None
    result: dict[str, Any] = await wait_for(done)
    return result


async def test_find_filters_on_the_server_across_pages(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    await _plant(conveyor, 1200)
    page = (await client.get("/api/dlq/default", params={"text": "BOOM #1", "limit": 50})).json()
    assert page["total"] == 1200 and page["matched"] == 120
    assert len(page["items"]) == 50 and all(j["error"].endswith("#1") for j in page["items"])
    assert page["items"][0]["id"] == "d01191"  # newest death first
    last = (await client.get("/api/dlq/default", params={"text": "boom #1", "offset": 100})).json()
    assert len(last["items"]) == 20
    window = {"since_ms": BASE_MS + 100_000, "until_ms": BASE_MS + 200_000}
    assert (await client.get("/api/dlq/default", params=window)).json()["matched"] == 100
    other = (await client.get("/api/dlq/default", params={"type": "resize"})).json()
    assert other["matched"] == 0


async def test_retry_all_matching_in_chunks_with_progress(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    await _plant(conveyor, 1200)
    r = await client.post("/api/dlq/default/retry", json={"filter": {"text": "boom #"}})
    assert r.status_code == 202
    run = r.json()
    assert run["matched"] == 1200 and run["action"] == "retry"
    final = await _finish(client, run)
    assert final == {**run, "state": "done", "done": 1200, "changed": 1200}
    assert await conveyor.redis.zcard(conveyor.keys.queue("default").dead) == 0
    job = await conveyor.get_job("d00007")
    assert job is not None and job.status == "queued"


async def test_the_api_answers_while_a_run_works(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    await _plant(conveyor, 3000)
    run = (await client.post("/api/dlq/default/purge", json={"filter": {}})).json()
    assert run["matched"] == 3000
    answered = await asyncio.wait_for(client.get("/api/queues"), 2)  # between chunks
    assert answered.status_code == 200
    assert (await _finish(client, run))["changed"] == 3000
    assert (await client.get("/api/dlq/default")).json()["total"] == 0


async def test_by_ids_only_touches_dead_jobs(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    ids = await _plant(conveyor, 5)
    run = (await client.post("/api/dlq/default/purge",
                             json={"ids": [*ids[:2], "not-dead"]})).json()
    assert run["matched"] == 2
    assert (await _finish(client, run))["changed"] == 2
    assert (await client.get("/api/dlq/default")).json()["total"] == 3


async def test_bad_selections_and_roles(client: httpx.AsyncClient, as_role: Any,
                                        conveyor: Conveyor) -> None:
    await _plant(conveyor, 1)
    for body in ({}, {"ids": ["a"], "filter": {}}, {"filter": {"colour": "red"}}):
        r = await client.post("/api/dlq/default/retry", json=body)
        assert r.status_code == 422, body
    assert (await client.post("/api/dlq/nope/retry", json={"filter": {}})).status_code == 404
    assert (await client.get("/api/dlq/runs/0123456789abcdef")).status_code == 404
    viewer = as_role("viewer")
    assert (await viewer.get("/api/dlq/default")).status_code == 200
    assert (await viewer.post("/api/dlq/default/retry", json={"filter": {}})).status_code == 403
