"""Search by a top-level argument (``?args.order_id=42`` or ``?arg=order_id=42``) and by a job
id prefix."""

from __future__ import annotations

import httpx

from conveyor import Conveyor
from conveyor.store import Store
from tests.api.conftest import sync_history


async def _submit(client: httpx.AsyncClient) -> list[str]:
    ids = []
    for i, image in enumerate(["a", "b", "a", "42"]):
        body = {"type": "resize", "args": {"image_id": image, "width": 100 + i}}
        ids.append((await client.post("/api/jobs", json=body)).json()["id"])
    return ids


async def test_equality_on_an_argument(client: httpx.AsyncClient, conveyor: Conveyor,
                                       store: Store) -> None:
    ids = await _submit(client)
    await sync_history(conveyor, store)
    found = (await client.get("/api/jobs", params={"args.image_id": "a"})).json()["items"]
    assert [j["id"] for j in found] == [ids[2], ids[0]]
    found = (await client.get("/api/jobs", params={"arg": ["image_id=a", "width=102"]})).json()
    assert [j["id"] for j in found["items"]] == [ids[2]]
    quoted = (await client.get("/api/jobs", params={"args.image_id": '"42"'})).json()["items"]
    assert [j["id"] for j in quoted] == [ids[3]]
    number = (await client.get("/api/jobs", params={"args.image_id": "42"})).json()["items"]
    assert number == []  # 42 is a number; the argument holds the string "42"


async def test_a_job_id_prefix(client: httpx.AsyncClient, conveyor: Conveyor,
                               store: Store) -> None:
    ids = await _submit(client)
    await sync_history(conveyor, store)
    found = (await client.get("/api/jobs", params={"id_prefix": ids[1][:10]})).json()["items"]
    assert [j["id"] for j in found] == [ids[1]]


async def test_bad_argument_searches(client: httpx.AsyncClient) -> None:
    for params in ({"arg": "no-equals"}, {"args.a-b": "1"}, {"args.x": "[1]"},
                   {"arg": [f"k{i}=1" for i in range(6)]}):
        r = await client.get("/api/jobs", params=params)
        assert r.status_code == 422, params
