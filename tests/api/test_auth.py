"""API keys and roles: 401 without a valid key, 403 for a role that may not, keys hashed
at rest, revocation, the bootstrap admin key, the ``conveyor keys`` commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI
from typer.testing import CliRunner

from conveyor import Conveyor
from conveyor.api import ApiSettings, create_app
from conveyor.api.auth import ApiKeys
from conveyor.api.commands import keys_cli
from conveyor.embedded import RedisServer
from conveyor.store import Store
from tests.api.conftest import ADMIN_KEY, auth, gateway_of, running

RESIZE = {"type": "resize", "args": {"image_id": "a", "width": 1}}
EVERYONE = {"admin", "viewer", "producer"}
READERS = {"admin", "viewer"}
SUBMITTERS = {"admin", "producer"}
ADMIN = {"admin"}
ROUTES: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/api/jobs", RESIZE, SUBMITTERS),
    ("POST", "/api/jobs/bulk", {"jobs": [RESIZE]}, SUBMITTERS),
    ("GET", "/api/jobs", None, EVERYONE),
    ("GET", "/api/jobs/{id}", None, EVERYONE),
    ("POST", "/api/jobs/{id}/cancel", None, ADMIN),
    ("POST", "/api/jobs/{id}/retry", None, ADMIN),
    ("DELETE", "/api/jobs/{id}", None, ADMIN),
    ("GET", "/api/queues", None, READERS),
    ("POST", "/api/queues/media/pause", None, ADMIN),
    ("POST", "/api/queues/media/resume", None, ADMIN),
    ("GET", "/api/queues/media/dlq", None, READERS),
    ("POST", "/api/queues/media/dlq/retry", {"all": True}, ADMIN),
    ("POST", "/api/queues/media/dlq/purge", {"all": True}, ADMIN),
    ("GET", "/api/workers", None, READERS),
    ("GET", "/api/types", None, EVERYONE),
    ("GET", "/api/stats", None, READERS),
]
PUBLIC = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
async def test_roles(
    method: str, path: str, body: Any, allowed: set[str], client: httpx.AsyncClient,
    as_role: Callable[[str], httpx.AsyncClient],
) -> None:
    job_id = (await client.post("/api/jobs", json=RESIZE)).json()["id"]
    url = path.replace("{id}", job_id)
    for headers in ({}, auth("cv_0123456789ab_" + "x" * 43), {"X-API-Key": "nope"},
                    {"Authorization": f"Basic {ADMIN_KEY}"}):
        r = await client.request(method, url, json=body, headers={"Authorization": "",
                                                                  **headers})
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    for role in ("viewer", "producer", "admin"):
        async with as_role(role) as c:
            r = await c.request(method, url, json=body)
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
            assert r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("path", PUBLIC)
async def test_public_routes_need_no_key(api: FastAPI, path: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://api") as c:
        assert (await c.get(path)).status_code == 200


async def test_x_api_key_header_and_never_the_url(api: FastAPI, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://api") as c:
        assert (await c.get("/api/types", headers={"X-API-Key": keys["viewer"]})).is_success
        for param in ("key", "api_key", "token", "access_token"):
            r = await c.get("/api/types", params={param: keys["viewer"]})
            assert r.status_code == 401


async def test_keys_are_hashed_at_rest_and_revocable(
    api: FastAPI, conveyor: Conveyor, keys: dict[str, str],
    as_role: Callable[[str], httpx.AsyncClient],
) -> None:
    stored = await conveyor.redis.hgetall(conveyor.keys.glob.api_keys)
    assert len(stored) == 3
    for key in keys.values():
        assert all(key not in value for value in stored.values())
    api_keys = gateway_of(api).keys
    records = await api_keys.list()
    assert {r.role for r in records} == {"producer", "viewer"}
    viewer = next(r for r in records if r.role == "viewer")
    async with as_role("viewer") as c:
        assert (await c.get("/api/types")).status_code == 200
        assert await api_keys.revoke(viewer.id) is True
        assert (await c.get("/api/types")).status_code == 401
    assert await api_keys.revoke(viewer.id) is False


async def test_revocation_reaches_other_processes_after_the_cache(
    conveyor: Conveyor, store: Store
) -> None:
    settings = ApiSettings(rate_limit="unlimited", anonymous_rate_limit="unlimited",
                           key_cache_seconds=0)
    app = create_app(conveyor, settings=settings, store=store)
    other = ApiKeys(conveyor)  # as in another process: it shares nothing but Redis
    key, record = await other.create("viewer")
    async with running(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api",
            headers=auth(key)) as c:
        assert (await c.get("/api/types")).status_code == 200
        await other.revoke(record.id)
        assert (await c.get("/api/types")).status_code == 401


async def test_metrics_can_require_a_key(conveyor: Conveyor, store: Store) -> None:
    settings = ApiSettings(rate_limit="unlimited", anonymous_rate_limit="unlimited",
                           metrics_public=False)
    app = create_app(conveyor, settings=settings, store=store, admin_key=ADMIN_KEY)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://api") as c:
        assert (await c.get("/metrics")).status_code == 401
        producer, _ = await gateway_of(app).keys.create("producer")
        assert (await c.get("/metrics", headers=auth(producer))).status_code == 403
        assert (await c.get("/metrics", headers=auth(ADMIN_KEY))).status_code == 200


async def test_create_refuses_a_bad_rate(conveyor: Conveyor) -> None:
    with pytest.raises(ValueError, match="not a limit"):
        await ApiKeys(conveyor).create("viewer", rate="fast")
    with pytest.raises(ValueError):
        await ApiKeys(conveyor).create("superuser")


def test_keys_commands(any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_REDIS_URL", any_redis.url)
    cli = typer.Typer()
    cli.add_typer(keys_cli, name="keys")
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--role", "producer", "--rate", "5/s",
                                  "--name", "ci"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("cv_")
    listed = runner.invoke(cli, ["keys", "list"])
    key_id = key.split("_")[1]
    assert key_id in listed.stdout and "producer" in listed.stdout and "5/s" in listed.stdout
    assert key not in listed.stdout
    bad = runner.invoke(cli, ["keys", "create", "--role", "viewer", "--rate", "lots"])
    assert bad.exit_code == 2
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 1
