"""Browser tests of the dashboard: a real ``conveyor up`` (private Redis, worker, demo jobs,
history store, API serving the built dashboard) driven by Debian's Chromium through Playwright.

No browser is ever downloaded: Playwright launches the system ``chromium`` by its path. Where it
is missing the tests fail, naming the command that installs it; they are never skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
STATIC = ROOT / "src" / "conveyor" / "api" / "static" / "dashboard"
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
# Headless on a machine with no network but loopback: no GPU, no sandbox (root), and none of
# the background fetches a fresh profile would try.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]
STARTUP_SECONDS = 60.0

expect.set_options(timeout=15_000)


def chromium_path() -> str:
    """The system Chromium, or a failure that says how to install it."""
    found = os.environ.get("CONVEYOR_CHROMIUM") or shutil.which("chromium")
    if found is None:
        sudo = "" if os.geteuid() == 0 else "sudo "
        pytest.fail(f"Chromium is missing, so the dashboard's browser tests cannot run. Install "
                    f"Debian's chromium: {sudo}sh -c '{INSTALL_CHROMIUM}' (or point "
                    "CONVEYOR_CHROMIUM at a Chromium binary)", pytrace=False)
    return found


@dataclass
class Server:
    """A running ``conveyor up``: its address, admin key and a client for its API."""

    url: str
    key: str
    api: httpx.Client
    log: Path
    cwd: Path

    def create_key(self, role: str) -> str:
        """A new API key of ``role``, made by the library in the server's Redis (in a thread:
        Playwright's sync API owns this thread's event loop)."""
        from conveyor import Conveyor
        from conveyor.api.auth import ApiKeys

        redis_url = (self.cwd / ".conveyor" / "redis.url").read_text().strip()

        async def create() -> str:
            app = Conveyor(redis_url=redis_url)
            try:
                key, _ = await ApiKeys(app).create(role, name=f"dashboard-test-{role}")
                return key
            finally:
                await app.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, create()).result()

    def submit(self, job_type: str, args: dict[str, Any], **options: Any) -> str:
        response = self.api.post("/api/jobs", json={"type": job_type, "args": args, **options})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
        """Poll the API (another process: no event crosses into the test) for a status."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['status']}, not {statuses}")
            time.sleep(0.1)
            job = self.job(job_id)
        return job

    def queue(self, name: str) -> dict[str, Any]:
        for queue in self.api.get("/api/queues").json():
            if queue["name"] == name:
                return dict(queue)
        raise AssertionError(f"no queue {name}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"conveyor up exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"conveyor up was not ready within {STARTUP_SECONDS}s:\n{log.read_text()}")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``conveyor up`` in a fresh folder on a free port, shared by the dashboard's tests."""
    if not (STATIC / "index.html").is_file():
        pytest.fail("the dashboard is not built: run `make dashboard`", pytrace=False)
    cwd = tmp_path_factory.mktemp("conveyor-up")
    port = _free_port()
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "CONVEYOR_ADMIN_KEY": key, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env.pop("CONVEYOR_REDIS_URL", None)
    log = cwd / "conveyor-up.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            # One demo burst, no steady flow: the pages under test hold still.
            [sys.executable, "-m", "conveyor", "up", "--port", str(port), "--demo-rate", "0"],
            cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=10) as api:
            yield Server(url, key, api, log, cwd)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    # Package scope: Playwright's sync API keeps an event loop running in this thread, which
    # must be gone before the async tests of the other packages start theirs.
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # launch() gives every run a fresh, empty profile (user-data-dir) of its own.
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails the test on any uncaught script error."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"uncaught errors in the page: {errors}"


def login(page: Page, server: Server, path: str = "/", key: str | None = None) -> None:
    page.goto(path)
    page.get_by_label("API key").fill(key or server.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("live-state")).to_have_text(re.compile("Live"))


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # From the top: a full-page capture of a scrolled page draws the sticky top bar across
    # the middle of the picture, where the scroll left it.
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def number(text: str) -> int:
    digits = re.sub(r"[^0-9]", "", text)
    return int(digits) if digits else 0
