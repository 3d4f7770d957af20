"""Acceptance at volume: a ``conveyor up`` whose history holds 100,000 jobs (written straight
into its store before it starts), plus 2,000 dead jobs planted in Redis. The dead-letter page
retries every job that matches an error filter across its pages, with progress; the
Schedules page shows, pauses and runs a cron schedule; the per-queue metrics page renders
24 hours of data in under a second."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import Server, _free_port, _wait_ready, login, screenshot
from tests.support.deadjobs import plant_dead
from tests.support.history import build_store

HISTORY_JOBS = 100_000
DEAD = 2_000  # errors "boom #0" .. "boom #9": 200 match "boom #1"


def _in_thread(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine in a thread of its own: Playwright's sync API owns this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(coro_factory())).result()


def _plant(cwd: Path) -> None:
    from conveyor import Conveyor

    async def plant() -> None:
        app = Conveyor(redis_url=(cwd / ".conveyor" / "redis.url").read_text().strip())
        try:
            now = int(time.time() * 1000)
            await plant_dead(app.redis, app.keys, "triage", [f"t{i:05d}" for i in range(DEAD)],
                             "demo.doomed", error=lambda i: f"boom #{i % 10}",
                             died_ms=lambda i: now - 60_000 + i)
        finally:
            await app.close()
    _in_thread(plant)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cwd = tmp_path_factory.mktemp("conveyor-volume")
    now = int(time.time() * 1000)
    _in_thread(lambda: build_store(cwd / ".conveyor" / "history.db", HISTORY_JOBS, now))
    port, key = _free_port(), secrets.token_urlsafe(24)
    env = {**os.environ, "CONVEYOR_ADMIN_KEY": key, "PYTHONUNBUFFERED": "1"}
    env.pop("CONVEYOR_REDIS_URL", None)
    log = cwd / "conveyor-up.log"
    with log.open("wb") as sink:
        # One demo burst, no steady flow: the pages under test hold still.
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", "up", "--port", str(port),
                                 "--demo-rate", "0"],
                                cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log)
        _plant(cwd)
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


@pytest.fixture
def vpage(browser: Browser, loaded: Server) -> Iterator[Page]:
    """A desktop-sized tab on the loaded server that fails the test on any script error."""
    context = browser.new_context(base_url=loaded.url, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def test_dlq_retries_every_match_of_an_error_filter_across_pages(vpage: Page,
                                                                  loaded: Server) -> None:
    page = vpage
    login(page, loaded, "/dead-letters/triage")
    expect(page.get_by_test_id("dlq-total")).to_contain_text("2,000")
    page.get_by_label("Error contains").fill("boom #1")
    expect(page.get_by_test_id("dlq-matched")).to_have_text("200")
    rows = page.locator("[data-testid=dlq-table] tbody tr")
    expect(rows).to_have_count(50)
    pages = page.get_by_test_id("dlq-pages")
    expect(pages).to_have_text("Page 1 of 4")
    for n in (2, 3, 4):  # every match is reachable, and each row is one
        page.get_by_role("button", name="Next →").click()
        expect(pages).to_have_text(f"Page {n} of 4")
        expect(rows.first.locator(".error-cell")).to_have_text("RuntimeError: boom #1")
    screenshot(page, "dead-letters-filtered-1440")
    page.get_by_role("button", name="Retry all 200 matching").click()
    page.get_by_role("button", name="Confirm retry of 200").click()
    progress = page.get_by_test_id("triage-progress")
    expect(progress).to_have_attribute("data-state", "done")
    expect(page.get_by_role("progressbar", name="retry progress")).to_have_attribute(
        "aria-valuenow", "100")
    expect(page.get_by_role("status").filter(has_text="Requeued 200 of 200 matching jobs")
           ).to_be_visible()
    screenshot(page, "dead-letters-retried-1440")
    left = loaded.api.get("/api/dlq/triage", params={"text": "boom #1"}).json()
    assert left["matched"] == 0 and left["total"] == DEAD - 200
    expect(page.get_by_test_id("dlq-matched")).to_have_text("0")
    expect(page.get_by_test_id("dlq-total")).to_contain_text("1,800")
    expect(pages).to_have_text("Page 1 of 1")
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_label("Error contains").fill("boom #2")
    expect(page.get_by_test_id("dlq-matched")).to_have_text("200")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "dead-letters-filtered-390")


def test_schedules_page_shows_pauses_and_runs_a_cron_schedule(vpage: Page,
                                                               loaded: Server) -> None:
    page = vpage
    # Once a year (03:00 on 1 January): no tick can fire while the test runs, so "never"
    # holds until Run now (every 5 minutes fired mid-test once, at 12:05:00).
    r = loaded.api.put("/api/schedules/squares", json={"type": "demo.fast", "cron": "0 3 1 1 *",
                                                       "args": {"n": 7}})
    assert r.status_code == 200, r.text
    later = loaded.api.post("/api/jobs", json={"type": "demo.fast", "args": {"n": 1},
                                               "delay": 3600}).json()["id"]
    login(page, loaded, "/schedules")
    row = page.locator("[data-testid=schedules-table] tr[data-schedule=squares]")
    expect(row.get_by_test_id("next-runs").locator("li")).to_have_count(5)
    expect(row.get_by_test_id("last-run")).to_have_text("never")
    delayed = page.locator(f"[data-testid=delayed-table] tbody tr[data-job='{later}']")
    expect(delayed).to_have_count(1)
    screenshot(page, "schedules-with-cron-1440")

    page.get_by_role("button", name="Pause schedule squares").click()
    expect(row.get_by_test_id("schedule-state")).to_contain_text("paused")
    assert loaded.api.get("/api/schedules/squares").json()["paused"] is True
    page.get_by_role("button", name="Resume schedule squares").click()
    expect(row.get_by_test_id("schedule-state")).to_contain_text("running")

    page.get_by_role("button", name="Run now: schedule squares").click()
    expect(page.get_by_role("status").filter(has_text="squares submitted its job")).to_be_visible()
    expect(row.get_by_test_id("last-run")).to_contain_text("completed", timeout=20_000)
    job_id = loaded.api.get("/api/schedules/squares").json()["last_run"]["job_id"]
    assert loaded.api.get(f"/api/jobs/{job_id}").json()["result"] == 49

    delayed.get_by_role("button", name="Run now: job").click()
    expect(delayed).to_have_count(0, timeout=20_000)
    loaded.wait_status(later, "completed")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "schedules-with-cron-390")


def test_per_queue_metrics_render_24_hours_in_under_a_second(vpage: Page, loaded: Server) -> None:
    page = vpage
    login(page, loaded, "/charts?queue=demo&range=1h")
    charts = page.get_by_test_id("metrics-charts")
    expect(charts).to_have_attribute("data-buckets", "60")
    started = time.monotonic()
    page.get_by_role("button", name="24 h").click()
    expect(charts).to_have_attribute("data-buckets", "144", timeout=5_000)
    expect(page.get_by_test_id("metrics-totals")).to_contain_text("over 24 h")
    took = time.monotonic() - started
    assert took < 1.0, f"24 h of one queue took {took:.2f} s to render"
    latest = page.get_by_test_id("metrics-throughput").get_attribute("data-latest") or ""
    assert "completed" in latest
    screenshot(page, "metrics-24h-1440")
    page.get_by_role("button", name="7 d").click()
    expect(charts).to_have_attribute("data-buckets", "168")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "metrics-7d-390")
