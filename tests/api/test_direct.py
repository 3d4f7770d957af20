"""The submission routes the gateway middleware serves itself (``conveyor.api.direct``) answer
exactly as the declared FastAPI routes do: same checks, same order, same error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conveyor.api import direct
from tests.api.conftest import ADMIN_KEY, auth

RESIZE = {"type": "resize", "args": {"image_id": "a", "width": 640}}
JSON = {"Content-Type": "application/json"}

# (path, body, extra headers, key role or None for no key)
CASES: list[tuple[str, bytes, dict[str, str], str | None]] = [
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 640}}', JSON, "admin"),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 640}}', JSON, None),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 640}}', JSON,
     "viewer"),
    ("/api/jobs", b'{"type": "resize"}', {"Content-Type": "text/plain"}, "producer"),
    ("/api/jobs", b"", JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "type": "resize"}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "args": {"width": NaN}}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": "x"}}', JSON,
     "producer"),
    ("/api/jobs", b'{"type": "nope", "args": {}}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "colour": 1}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 1}, '
     b'"queue": "elsewhere"}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 1}, '
     b'"meta": {"api_key_id": "x"}}', JSON, "producer"),
    ("/api/jobs", b'{"type": "resize", "args": {"image_id": "a", "width": 1}}',
     {**JSON, "Idempotency-Key": "not a key"}, "producer"),
    ("/api/jobs/bulk", b'{"jobs": []}', JSON, "producer"),
    ("/api/jobs/bulk", b'{"jobs": [{"type": "resize", "args": {"image_id": "a", "width": 1}},'
     b' {"type": "resize", "args": {"image_id": "a"}}]}', JSON, "producer"),
    ("/api/jobs/bulk", b'{"jobs": [{"type": "resize", "args": {"image_id": "a", "width": 1}, '
     b'"idempotency_key": "k"}, {"type": "resize", "args": {"image_id": "b", "width": 1}, '
     b'"idempotency_key": "k"}]}', JSON, "producer"),
    ("/api/jobs/bulk", b'{"jobs": [{"type": "resize", "args": {"image_id": "a", "width": 1}}]}',
     JSON, "producer"),
]


@pytest.fixture
async def declared(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests carry a root path: the middleware does not match them, so
    FastAPI's declared routes answer."""
    transport = httpx.ASGITransport(app=api, root_path="/root")
    async with httpx.AsyncClient(transport=transport, base_url="http://api/root") as c:
        yield c


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the middleware served itself."""
    paths: list[str] = []
    call = direct.DirectRoute.__call__

    async def spy(self: direct.DirectRoute, scope: Any, *args: Any) -> None:
        paths.append(scope["path"])
        await call(self, scope, *args)

    monkeypatch.setattr(direct.DirectRoute, "__call__", spy)
    return paths


def shape(r: httpx.Response) -> tuple[int, Any]:
    body = r.json()
    if r.status_code < 300:  # new ids each time: compare what does not change
        jobs = body.get("jobs", [body])
        return r.status_code, [(j["status"], j["queue"], j["created"]) for j in jobs]
    return r.status_code, body


@pytest.mark.parametrize("case", range(len(CASES)))
async def test_direct_route_answers_as_the_declared_one(
    case: int, api: FastAPI, keys: dict[str, str], declared: httpx.AsyncClient,
    served: list[str],
) -> None:
    path, body, headers, role = CASES[case]
    sent = {**headers, **(auth(keys[role]) if role else {})}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://api") as plain:
        fast = await plain.post(path, content=body, headers=sent)
    assert served == [path]
    slow = await declared.post(path, content=body, headers=sent)
    assert served == [path]  # the root-path request went through FastAPI
    assert shape(fast) == shape(slow)
    assert fast.headers.get("location", "").startswith("/api/jobs/") == (
        path == "/api/jobs" and fast.status_code == 201)


async def test_direct_route_unexpected_error_is_a_logged_500(
    api: FastAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = api.state.gateway

    async def broken(spec: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gateway.submitter, "submit", broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api",
                                 headers=auth(ADMIN_KEY)) as c:
        r = await c.post("/api/jobs", json=RESIZE)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "a bug" in caplog.text


async def test_direct_route_is_counted_under_its_template(
    api: FastAPI, client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/api/jobs", json=RESIZE)).status_code == 201
    assert (await client.post("/api/jobs/", json=RESIZE)).status_code != 201  # not matched
    text = (await client.get("/metrics")).text
    assert 'conveyor_api_requests_total{method="POST",route="/api/jobs",status="201"} 1.0' \
        in text
