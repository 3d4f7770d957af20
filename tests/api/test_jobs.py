"""``/api/jobs``: submit, bulk, idempotency, get (live and history), search, cancel, retry,
delete, against a real Redis and a SQLite history store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from conveyor import Conveyor, JobFailed
from conveyor.handle import JobHandle
from conveyor.store import Store
from conveyor.worker.worker import Worker
from tests.api.conftest import sync_history

RESIZE = {"type": "resize", "args": {"image_id": "a", "width": 640}}


def handle(conveyor: Conveyor, body: dict[str, str]) -> JobHandle:
    return JobHandle(conveyor, body["id"], body["queue"], body["status"], True)


async def test_submit_returns_201_with_id_status_and_location(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/jobs", json={**RESIZE, "priority": "high"})
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "queued" and body["queue"] == "media" and body["created"] is True
    assert r.headers["location"] == f"/api/jobs/{body['id']}"
    job = (await client.get(f"/api/jobs/{body['id']}")).json()
    assert job["priority"] == "high" and job["args"] == RESIZE["args"]
    assert job["source"] == "live" and job["meta"]["api_key_id"] == "bootstrap-admin"


async def test_submit_with_options(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/jobs", json={**RESIZE, "queue": "media-bulk", "delay": 30,
                                             "max_attempts": 7, "timeout": 5.5,
                                             "meta": {"tag": "x"}})
    assert r.status_code == 201 and r.json()["status"] == "delayed"
    job = (await client.get(f"/api/jobs/{r.json()['id']}")).json()
    assert job["queue"] == "media-bulk" and job["max_attempts"] == 7 and job["meta"]["tag"] == "x"
    in_five_years = f"{datetime.now(UTC).year + 5}-01-01T00:00:00Z"  # ten at most
    r = await client.post("/api/jobs", json={**RESIZE, "run_at": in_five_years})
    assert r.status_code == 201 and r.json()["status"] == "delayed"


async def test_idempotency_key_same_body_same_job_other_body_409(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/api/jobs", json=RESIZE, headers=headers)
    again = await client.post("/api/jobs", json=RESIZE, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert again.json()["status"] == "queued"
    other = await client.post("/api/jobs", json={**RESIZE, "args": {"image_id": "b",
                                                                    "width": 1}},
                              headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert other.json()["error"]["field"] == "header.idempotency-key"


async def test_bulk_submits_all(client: httpx.AsyncClient, conveyor: Conveyor) -> None:
    jobs = [{"type": "resize", "args": {"image_id": str(i), "width": i + 1}} for i in range(50)]
    jobs.append({"type": "explode", "args": {"message": "x"}, "idempotency_key": "k1"})
    r = await client.post("/api/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 201
    out = r.json()["jobs"]
    assert len(out) == 51 and len({j["id"] for j in out}) == 51
    assert {j["queue"] for j in out} == {"media", "default"}
    again = await client.post("/api/jobs/bulk", json={"jobs": jobs[-1:]})
    assert again.json()["jobs"][0] == {**out[-1], "created": False, "status": "queued"}


async def test_bulk_is_all_or_nothing_and_names_the_item(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    jobs = [{"type": "resize", "args": {"image_id": "a", "width": 1}} for _ in range(5)]
    jobs[3] = {"type": "resize", "args": {"image_id": "a", "width": "wide"}}
    r = await client.post("/api/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "jobs[3].args.width"
    assert await conveyor.queues() == []  # nothing was written, not even the queue


async def test_bulk_cap(client: httpx.AsyncClient) -> None:
    jobs = [RESIZE] * 1001
    r = await client.post("/api/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_jobs"


async def test_bulk_same_idempotency_key_twice_is_422(client: httpx.AsyncClient) -> None:
    jobs = [{**RESIZE, "idempotency_key": "k"}, {**RESIZE, "idempotency_key": "k"}]
    r = await client.post("/api/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "jobs[1].idempotency_key"


async def test_get_live_then_history_with_attempts(
    client: httpx.AsyncClient, conveyor: Conveyor, store: Store, worker: Worker
) -> None:
    r = await client.post("/api/jobs", json={"type": "explode", "args": {"message": "boom"}})
    h = handle(conveyor, r.json())
    with pytest.raises(JobFailed):
        await h.result(timeout=10)
    live = (await client.get(f"/api/jobs/{h.id}")).json()
    assert live["status"] == "dead" and live["source"] == "live"
    assert live["attempts"][0]["error"]["message"] == "boom"
    await sync_history(conveyor, store)
    await conveyor.delete(h.id)
    gone = (await client.get(f"/api/jobs/{h.id}")).json()
    assert gone["source"] == "history" and gone["status"] == "dead"
    assert gone["attempts"][0]["outcome"] == "dead"
    assert gone["attempts"][0]["error"]["message"] == "boom"


async def test_get_unknown_job_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/jobs/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


async def test_search_history(
    client: httpx.AsyncClient, conveyor: Conveyor, store: Store, worker: Worker
) -> None:
    ok = [(await client.post("/api/jobs", json=RESIZE)).json() for _ in range(3)]
    bad = (await client.post("/api/jobs", json={"type": "explode",
                                                "args": {"message": "disk full"}})).json()
    for body in ok:
        await handle(conveyor, body).result(timeout=10)
    with pytest.raises(JobFailed):
        await handle(conveyor, bad).result(timeout=10)
    await sync_history(conveyor, store)
    page = (await client.get("/api/jobs", params={"status": "completed", "limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (await client.get("/api/jobs", params={"status": "completed",
                                                  "cursor": page["next_cursor"]})).json()
    assert {j["id"] for j in page["items"] + rest["items"]} == {j["id"] for j in ok}
    found = (await client.get("/api/jobs", params={"text": "DISK"})).json()["items"]
    assert [j["id"] for j in found] == [bad["id"]]
    by_queue = (await client.get("/api/jobs", params={"queue": "default", "order": "asc"}))
    assert [j["id"] for j in by_queue.json()["items"]] == [bad["id"]]
    r = await client.get("/api/jobs", params={"cursor": "garbage"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "query.cursor"


async def test_cancel_retry_delete(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/api/jobs", json={**RESIZE, "delay": 60})).json()["id"]
    r = await client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json() == {"id": job_id, "status": "canceled"}
    r = await client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
    r = await client.post(f"/api/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    r = await client.post(f"/api/jobs/{job_id}/retry")
    assert r.status_code == 409
    assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 204
    assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 404
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).status_code == 404
    assert (await client.post(f"/api/jobs/{job_id}/retry")).status_code == 404


async def test_cancel_running_job_is_requested(
    client: httpx.AsyncClient, conveyor: Conveyor, worker: Worker
) -> None:
    body = (await client.post("/api/jobs", json={"type": "wait",
                                                 "args": {"seconds": 30}})).json()
    stream = conveyor.keys.queue("slow").events
    await _until_event(conveyor, stream, body["id"], "active")
    r = await client.post(f"/api/jobs/{body['id']}/cancel")
    assert r.json()["status"] == "cancel_requested"
    with pytest.raises(JobFailed):
        await handle(conveyor, body).result(timeout=10)
    assert (await client.delete(f"/api/jobs/{body['id']}")).status_code == 204


async def _until_event(conveyor: Conveyor, stream: str, job_id: str, event: str) -> None:
    """Block on the events stream until ``job_id`` emits ``event`` (no polling)."""
    cursor = "0-0"
    while True:
        reply = await conveyor.redis.xread({stream: cursor}, block=10_000)
        assert reply, f"no {event} event within 10s"
        for entry_id, fields in reply[0][1]:
            cursor = entry_id
            if fields.get("job") == job_id and fields.get("event") == event:
                return


async def test_producer_reads_only_its_own_jobs(
    as_role: Callable[[str], httpx.AsyncClient], client: httpx.AsyncClient,
    conveyor: Conveyor, store: Store,
) -> None:
    async with as_role("producer") as mine, as_role("producer2") as other:
        job_id = (await mine.post("/api/jobs", json=RESIZE)).json()["id"]
        other_id = (await other.post("/api/jobs", json=RESIZE)).json()["id"]
        assert (await mine.get(f"/api/jobs/{job_id}")).status_code == 200
        assert (await other.get(f"/api/jobs/{job_id}")).status_code == 404
        await sync_history(conveyor, store)
        assert [j["id"] for j in (await mine.get("/api/jobs")).json()["items"]] == [job_id]
        assert [j["id"] for j in (await other.get("/api/jobs")).json()["items"]] == [other_id]
    assert (await client.get(f"/api/jobs/{job_id}")).status_code == 200
    assert len((await client.get("/api/jobs")).json()["items"]) == 2


async def test_chunked_body_is_read_whole(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(RESIZE)

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    r = await client.post("/api/jobs", content=chunks(),
                          headers={"content-type": "application/json"})
    assert r.status_code == 201
