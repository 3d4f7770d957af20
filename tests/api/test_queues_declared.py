"""Queues are declared, not created by whoever names one: a submission may name only its
job type's queue or one declared with ``@app.job(queues=[...])``; `.` and `..` are no queue
names anywhere; /metrics does not grow with invented names. Real Redis, the real app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conveyor import Conveyor
from conveyor.embedded import RedisServer
from conveyor.errors import InvalidName
from tests.conftest import FAST

RESIZE: dict[str, Any] = {"type": "resize", "args": {"image_id": "a", "width": 640}}


async def test_own_and_declared_queues_are_accepted(client: httpx.AsyncClient) -> None:
    for queue in ("media", "media-bulk"):
        r = await client.post("/api/jobs", json={**RESIZE, "queue": queue})
        assert r.status_code == 201 and r.json()["queue"] == queue
    types = {t["name"]: t for t in (await client.get("/api/types")).json()}
    assert types["resize"]["queues"] == ["media", "media-bulk"]
    assert types["explode"]["queues"] == ["default"]


async def test_any_other_queue_is_422_listing_the_allowed_ones(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    r = await client.post("/api/jobs", json={**RESIZE, "queue": "invented"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "queue_not_allowed" and error["field"] == "queue"
    assert "media, media-bulk" in error["message"]
    # The other type's queue is not this type's either.
    r = await client.post("/api/jobs", json={**RESIZE, "queue": "default"})
    assert r.status_code == 422
    jobs = [RESIZE, {**RESIZE, "queue": "invented2"}]
    r = await client.post("/api/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 422 and r.json()["error"]["field"] == "jobs[1].queue"
    assert "invented" not in await conveyor.queues() and "invented2" not in await conveyor.queues()


@pytest.mark.parametrize("queue", [".", ".."])
async def test_dot_queues_are_refused_everywhere(
    client: httpx.AsyncClient, conveyor: Conveyor, queue: str
) -> None:
    r = await client.post("/api/jobs", json={**RESIZE, "queue": queue})
    assert r.status_code == 422 and r.json()["error"]["field"] == "queue"
    with pytest.raises(InvalidName):
        await conveyor.enqueue("resize", RESIZE["args"], queue=queue)
    with pytest.raises(InvalidName):
        conveyor.job(queue=queue)(lambda: None)
    assert queue not in await conveyor.queues()


async def test_a_type_known_only_from_the_catalog_allows_its_declared_queues(
    client: httpx.AsyncClient, any_redis: RedisServer
) -> None:
    """The API process may not import the handlers: workers publish the catalog."""
    remote = Conveyor(redis_url=any_redis.url, **FAST)

    @remote.job(queue="reports", queues=["reports-slow"])
    def report(day: str) -> None: ...

    await remote.publish_catalog()
    await remote.close()
    body = {"type": "report", "args": {"day": "mon"}}
    ok = await client.post("/api/jobs", json={**body, "queue": "reports-slow"})
    assert ok.status_code == 201
    r = await client.post("/api/jobs", json={**body, "queue": "elsewhere"})
    assert r.status_code == 422 and "reports, reports-slow" in r.json()["error"]["message"]


async def test_metrics_do_not_grow_with_invented_queue_names(client: httpx.AsyncClient) -> None:
    await client.post("/api/jobs", json=RESIZE)
    for i in range(20):
        r = await client.post("/api/jobs", json={**RESIZE, "queue": f"made-up-{i}"})
        assert r.status_code == 422
    text = (await client.get("/metrics")).text
    assert 'queue="media"' in text and "made-up" not in text
