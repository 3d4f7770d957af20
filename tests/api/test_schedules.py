"""Schedules over HTTP (list, get, put, pause, resume, run now, delete; admin for changes)
and delayed jobs by due time, with run now."""

from __future__ import annotations

from typing import Any

import httpx

from conveyor import Conveyor
from conveyor.worker.worker import Worker
from tests.api.conftest import wait_for

NIGHTLY = {"type": "resize", "cron": "0 3 * * *", "tz": "Europe/Paris",
           "args": {"image_id": "n", "width": 10}}


async def test_put_list_pause_resume_delete(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/schedules/nightly", json=NIGHTLY)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["name"] == "nightly" and s["paused"] is False and s["last_run"] is None
    runs = s["next_runs_ms"]
    assert len(runs) == 5 and runs == sorted(runs) and runs[1] - runs[0] in (82_800_000,
                                                                              86_400_000,
                                                                              90_000_000)
    assert [x["name"] for x in (await client.get("/api/schedules")).json()] == ["nightly"]
    assert (await client.post("/api/schedules/nightly/pause")).json()["paused"] is True
    assert (await client.get("/api/schedules/nightly")).json()["paused"] is True
    assert (await client.post("/api/schedules/nightly/resume")).json()["paused"] is False
    assert (await client.delete("/api/schedules/nightly")).status_code == 204
    assert (await client.get("/api/schedules/nightly")).status_code == 404
    assert (await client.delete("/api/schedules/nightly")).status_code == 404


async def test_run_now_shows_the_last_run_and_its_outcome(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    await client.put("/api/schedules/nightly", json=NIGHTLY)
    r = await client.post("/api/schedules/nightly/run")
    assert r.status_code == 200
    job_id = r.json()["job_id"]

    async def completed() -> dict[str, Any] | None:
        s: dict[str, Any] = (await client.get("/api/schedules/nightly")).json()
        return s if (s["last_run"] or {}).get("status") == "completed" else None
    s = await wait_for(completed)
    assert s["last_run"]["job_id"] == job_id and s["last_run"]["error"] is None


async def test_bad_definitions_and_roles(client: httpx.AsyncClient, as_role: Any) -> None:
    r = await client.put("/api/schedules/x", json={**NIGHTLY, "cron": "every day"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cron"
    r = await client.put("/api/schedules/x", json={**NIGHTLY, "tz": "Mars/Olympus"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "tz"
    r = await client.put("/api/schedules/x", json={**NIGHTLY, "args": {"image_id": 1}})
    assert r.status_code == 422
    r = await client.put("/api/schedules/x", json={**NIGHTLY, "type": "nope"})
    assert r.status_code == 422
    await client.put("/api/schedules/nightly", json=NIGHTLY)
    viewer = as_role("viewer")
    assert (await viewer.get("/api/schedules")).status_code == 200
    for path in ("pause", "resume", "run"):
        assert (await viewer.post(f"/api/schedules/nightly/{path}")).status_code == 403
    assert (await viewer.put("/api/schedules/nightly", json=NIGHTLY)).status_code == 403
    assert (await viewer.delete("/api/schedules/nightly")).status_code == 403


async def test_delayed_by_due_time_and_run_now(
    client: httpx.AsyncClient, conveyor: Conveyor, worker: Worker
) -> None:
    late = (await client.post("/api/jobs", json={**_resize("late"), "delay": 3600})).json()
    soon = (await client.post("/api/jobs", json={**_resize("soon"), "delay": 600})).json()
    page = (await client.get("/api/delayed")).json()
    assert page["total"] == 2 and [j["id"] for j in page["items"]] == [soon["id"], late["id"]]
    assert page["items"][0]["due_ms"] < page["items"][1]["due_ms"]
    r = await client.post(f"/api/delayed/{late['id']}/run")
    assert r.status_code == 200

    async def done() -> bool:
        job = await conveyor.get_job(late["id"])
        return job is not None and job.status == "completed"
    await wait_for(done)
    assert (await client.post(f"/api/delayed/{late['id']}/run")).status_code == 409
    assert (await client.post("/api/delayed/nope/run")).status_code == 404
    assert (await client.post(f"/api/jobs/{soon['id']}/cancel")).json()["status"] == "canceled"
    assert (await client.get("/api/delayed")).json()["total"] == 0


def _resize(image: str) -> dict[str, Any]:
    return {"type": "resize", "args": {"image_id": image, "width": 1}}
