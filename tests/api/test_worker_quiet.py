"""The quiet control over HTTP: admin only, carried to the worker over Redis, shown in the
list; a quiet worker leaves new jobs waiting until resumed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from conveyor import Conveyor
from conveyor.worker.worker import Worker

RESIZE = {"type": "resize", "args": {"image_id": "q", "width": 1}}


async def test_quiet_and_resume_a_worker(client: httpx.AsyncClient, conveyor: Conveyor,
                                         worker: Worker, as_role: Any) -> None:
    await asyncio.sleep(0.3)  # the first heartbeat
    viewer = as_role("viewer")
    assert (await viewer.post(f"/api/workers/{worker.id}/quiet")).status_code == 403
    r = await client.post(f"/api/workers/{worker.id}/quiet")
    assert r.status_code == 200 and r.json()["quiet"] is True
    (w,) = (await client.get("/api/workers")).json()
    assert w["quiet"] is True
    await asyncio.sleep(conveyor.settings.block_seconds + 0.2)  # a claim already waiting ends
    job_id = (await client.post("/api/jobs", json=RESIZE)).json()["id"]
    await asyncio.sleep(conveyor.settings.block_seconds)
    assert (await client.get(f"/api/jobs/{job_id}")).json()["status"] == "queued"
    assert (await client.post(f"/api/workers/{worker.id}/resume")).json()["quiet"] is False
    for _ in range(200):
        if (await client.get(f"/api/jobs/{job_id}")).json()["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert (await client.get(f"/api/jobs/{job_id}")).json()["status"] == "completed"
    assert (await client.post("/api/workers/nobody/quiet")).status_code == 404
