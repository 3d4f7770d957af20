"""``mount_dashboard``: the built app at ``/`` with SPA fallback and caching, never in the way
of the API's paths, methods, errors or OpenAPI document. Plus: the committed OpenAPI document
that the dashboard's types are generated from matches the API."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.api.dashboard import CSP, IMMUTABLE, mount_dashboard
from conveyor.api.factory import create_app
from tests.dashboard.conftest import ROOT, Server

with warnings.catch_warnings():
    # Starlette asks for httpx2 here; httpx is what the project has. The sync client is
    # needed: these tests run beside Playwright's sync API, which owns this thread's loop.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

INDEX = "<!doctype html><title>app</title>"


@pytest.fixture
def build(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "app-1234.js").write_text("console.log(1)")
    (tmp_path / "robots.txt").write_text("User-agent: *\n")
    return tmp_path


@pytest.fixture
def client(build: Path) -> TestClient:
    app = FastAPI()

    @app.get("/api/things")
    async def things() -> list[str]:
        return ["a"]

    mount_dashboard(app, build)
    return TestClient(app)


def test_pages_get_the_app_and_revalidate(client: TestClient) -> None:
    for path in ("/", "/jobs", "/jobs/abc123", "/dead-letters/demo"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
    etag = client.get("/").headers["etag"]
    assert client.get("/jobs", headers={"If-None-Match": etag}).status_code == 304


def test_assets_are_immutable_and_missing_files_are_404(client: TestClient) -> None:
    response = client.get("/assets/app-1234.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    assert "javascript" in response.headers["content-type"]
    assert client.get("/assets/app-1234.js",
                      headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    assert client.head("/assets/app-1234.js").status_code == 200
    assert client.get("/robots.txt").text.startswith("User-agent")
    for missing in ("/assets/old-999.js", "/favicon.ico", "/jobs/x.png"):
        assert client.get(missing).status_code == 404, missing


def test_no_path_leaves_the_build_folder(client: TestClient, build: Path) -> None:
    (build.parent / "secret.txt").write_text("secret")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt",
                 "/%5c..%5csecret.txt"):
        response = client.get(path)
        assert "secret" not in response.text, path


def test_api_paths_keep_their_own_answers(client: TestClient) -> None:
    assert client.get("/api/things").json() == ["a"]
    for path in ("/api/nothing", "/api", "/docs/x", "/healthz/x", "/metrics/x", "/readyz/x"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.text != INDEX
    assert client.post("/somewhere").status_code == 404  # not 405: the dashboard has no POST
    assert client.put("/api/things").status_code == 405  # the API's own 405 stays
    paths = client.get("/openapi.json").json()["paths"]
    assert list(paths) == ["/api/things"]


def test_an_unbuilt_dashboard_says_how_to_build_it(tmp_path: Path) -> None:
    app = FastAPI()
    mount_dashboard(app, tmp_path)
    response = TestClient(app).get("/")
    assert response.status_code == 503
    assert "make dashboard" in response.text


def test_the_running_api_serves_the_dashboard_beside_its_routes(server: Server) -> None:
    page = httpx.get(f"{server.url}/jobs/some-job")
    assert page.status_code == 200 and '<div id="root">' in page.text
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    asset = httpx.get(f"{server.url}{script}")
    assert asset.status_code == 200 and asset.headers["cache-control"] == IMMUTABLE
    assert httpx.get(f"{server.url}/api/jobs").status_code == 401
    assert httpx.get(f"{server.url}/api/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert "conveyor" in httpx.get(f"{server.url}/metrics").text
    assert "/{path}" not in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_the_dashboard_types_come_from_the_current_api() -> None:
    committed = json.loads((ROOT / "dashboard" / "openapi.json").read_text())
    current = create_app(Conveyor(), open_store=False).openapi()
    assert committed == json.loads(json.dumps(current)), (
        "the API changed since the dashboard's types were generated: run `make dashboard-types` "
        "(then `make dashboard`) and commit dashboard/openapi.json and "
        "dashboard/src/api/schema.gen.ts")
