"""Submissions while Redis refuses writes for a while - OOM (maxmemory reached), MISCONF (a
snapshot failed: a full or failing disk), both produced for real - answer 503 with
Retry-After, never a 500, and write nothing; once the fault passes they go through. (READONLY,
BUSY and LOADING take the same handler: ``supervise.is_transient``.)"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from chaos import redis_faults
from conveyor.api import create_app
from conveyor.embedded import RedisServer
from tests.api.conftest import ADMIN_KEY, auth, make_conveyor, running
from tests.api.test_ratelimit import client_for

FAULTS: dict[str, Callable[[RedisServer], contextlib.AbstractContextManager[object]]] = {
    "oom": redis_faults.memory_full,
    "misconf": redis_faults.writes_stopped,
}
JOB = {"type": "resize", "args": {"image_id": "a", "width": 1}}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_submit_while_writes_are_refused(redis_server: RedisServer, fault: str) -> None:
    conveyor = make_conveyor(redis_server.url)
    app = create_app(conveyor, open_store=False, admin_key=ADMIN_KEY)
    async with running(app), client_for(app, **auth(ADMIN_KEY)) as c:
        with FAULTS[fault](redis_server):
            single = await c.post("/api/jobs", json=JOB)
            bulk = await c.post("/api/jobs/bulk", json={"jobs": [JOB, JOB]})
            for r in (single, bulk):
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "redis_unavailable"
                assert r.headers["Retry-After"]
        assert await conveyor.redis.llen(conveyor.keys.queue("default").ready("normal")) == 0
        after = await c.post("/api/jobs", json=JOB)
        assert after.status_code in (200, 201, 202), after.text
    await conveyor.close()
