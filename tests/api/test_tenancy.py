"""Tenants stay apart: idempotency keys are scoped per API key (or per tenant, as configured),
no reply names a job the caller cannot read, and the Python API keeps its own scope. Real
Redis, the real app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.api import ApiSettings
from conveyor.api.tenancy import scoped_key
from tests.api.conftest import UNLIMITED, auth, gateway_of

RESIZE: dict[str, Any] = {"type": "resize", "args": {"image_id": "a", "width": 640}}
OTHER: dict[str, Any] = {"type": "resize", "args": {"image_id": "b", "width": 1}}


@pytest.fixture
def client_of(api: FastAPI) -> Callable[[str], httpx.AsyncClient]:
    def make(key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api",
                                 headers=auth(key))
    return make


@pytest.fixture
async def tenants(api: FastAPI) -> dict[str, str]:
    """Producer keys: a1 and a2 of tenant acme, b1 of tenant beta, solo without a tenant."""
    keys = gateway_of(api).keys
    out = {}
    for name, tenant in (("a1", "acme"), ("a2", "acme"), ("b1", "beta"), ("solo", None)):
        out[name], _ = await keys.create("producer", name=name, tenant=tenant)
    return out


async def post(c: httpx.AsyncClient, body: dict[str, Any], key: str) -> httpx.Response:
    return await c.post("/api/jobs", json=body, headers={"Idempotency-Key": key})


def named_ids(response: httpx.Response) -> str:
    return response.text  # every job id a reply could name is in its text


async def test_another_producer_with_the_same_key_gets_a_job_of_its_own(
    keys: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a, b = client_of(keys["producer"]), client_of(keys["producer2"])
    first = await post(a, RESIZE, "order-42")
    a_id = first.json()["id"]
    # B replays A's key and body: a new job, not A's id (it was 200 with A's job before).
    same = await post(b, RESIZE, "order-42")
    assert same.status_code == 201 and same.json()["created"] is True
    assert same.json()["id"] != a_id and a_id not in named_ids(same)
    # B uses A's key with another body: its own job again, not a 409 naming A's job.
    other = await post(b, OTHER, "order-43")
    await post(a, RESIZE, "order-43")
    clash = await post(b, OTHER, "order-42")
    assert other.status_code == 201 and clash.status_code == 409
    assert a_id not in named_ids(clash)
    assert same.json()["id"] in clash.json()["error"]["message"]  # B's own job, readable
    # A's retry still finds A's job.
    again = await post(a, RESIZE, "order-42")
    assert again.status_code == 200 and again.json()["id"] == a_id


async def test_a_key_claimed_first_by_another_producer_never_hands_out_its_job(
    keys: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a, b = client_of(keys["producer"]), client_of(keys["producer2"])
    b_job = (await post(b, RESIZE, "invoice-7")).json()["id"]
    mine = await post(a, RESIZE, "invoice-7")
    assert mine.status_code == 201 and mine.json()["id"] != b_job
    assert (await a.get(f"/api/jobs/{mine.json()['id']}")).status_code == 200
    assert (await a.get(f"/api/jobs/{b_job}")).status_code == 404


async def test_bulk_items_are_scoped_too(
    keys: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a, b = client_of(keys["producer"]), client_of(keys["producer2"])
    item = {**RESIZE, "idempotency_key": "batch-1"}
    a_out = (await a.post("/api/jobs/bulk", json={"jobs": [item]})).json()["jobs"][0]
    b_reply = await b.post("/api/jobs/bulk", json={"jobs": [item, {**OTHER}]})
    assert b_reply.status_code == 201 and a_out["id"] not in named_ids(b_reply)
    assert b_reply.json()["jobs"][0]["created"] is True
    again = (await a.post("/api/jobs/bulk", json={"jobs": [item]})).json()["jobs"][0]
    assert again == {**a_out, "created": False}


async def test_the_python_api_keeps_its_own_scope(
    keys: dict[str, str], client_of: Callable[[str], httpx.AsyncClient], conveyor: Conveyor
) -> None:
    lib = await conveyor.enqueue("resize", RESIZE["args"], idempotency_key="order-1")
    http = await post(client_of(keys["producer"]), RESIZE, "order-1")
    assert http.status_code == 201 and http.json()["id"] != lib.id
    again = await conveyor.enqueue("resize", RESIZE["args"], idempotency_key="order-1")
    assert again.id == lib.id and again.created is False


async def test_long_keys_stay_valid_names_and_distinct(
    api: FastAPI, keys: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a = client_of(keys["producer"])
    k1, k2 = "x" * 63 + "1", "x" * 63 + "2"
    one, two = await post(a, RESIZE, k1), await post(a, RESIZE, k2)
    assert one.status_code == two.status_code == 201 and one.json()["id"] != two.json()["id"]
    assert (await post(a, RESIZE, k1)).json()["id"] == one.json()["id"]
    principal = await gateway_of(api).keys.authenticate(keys["producer"])
    assert principal is not None
    for key in ("k", "x" * 51, "x" * 52, "x" * 64):
        scoped = scoped_key(principal, key, "key")
        assert 1 <= len(scoped) <= 64


async def test_meta_tenant_is_set_by_the_api(
    tenants: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a1 = client_of(tenants["a1"])
    r = await a1.post("/api/jobs", json={**RESIZE, "meta": {"tenant": "beta"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "meta.tenant"
    job_id = (await a1.post("/api/jobs", json=RESIZE)).json()["id"]
    assert (await a1.get(f"/api/jobs/{job_id}")).json()["meta"]["tenant"] == "acme"


async def test_by_default_keys_of_one_tenant_do_not_share_idempotency_keys(
    tenants: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
) -> None:
    a1, a2 = client_of(tenants["a1"]), client_of(tenants["a2"])
    first = (await post(a1, RESIZE, "k")).json()
    second = await post(a2, RESIZE, "k")
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    # ... but a tenant's producers read each other's jobs.
    assert (await a2.get(f"/api/jobs/{first['id']}")).status_code == 200


class TestTenantScope:
    @pytest.fixture
    def settings(self) -> ApiSettings:
        return UNLIMITED.model_copy(update={"idempotency_scope": "tenant"})

    async def test_keys_of_one_tenant_share_them_and_read_the_job(
        self, tenants: dict[str, str], client_of: Callable[[str], httpx.AsyncClient]
    ) -> None:
        a1, a2, b1 = (client_of(tenants[n]) for n in ("a1", "a2", "b1"))
        first = (await post(a1, RESIZE, "order-9")).json()
        same = await post(a2, RESIZE, "order-9")
        assert same.status_code == 200 and same.json()["id"] == first["id"]
        assert (await a2.get(f"/api/jobs/{first['id']}")).status_code == 200
        clash = await post(a2, OTHER, "order-9")
        assert clash.status_code == 409 and first["id"] in clash.json()["error"]["message"]
        # Another tenant, and a key without a tenant, are scopes of their own.
        for other in (b1, client_of(tenants["solo"])):
            theirs = await post(other, RESIZE, "order-9")
            assert theirs.status_code == 201 and first["id"] not in named_ids(theirs)
            assert (await other.get(f"/api/jobs/{first['id']}")).status_code == 404
