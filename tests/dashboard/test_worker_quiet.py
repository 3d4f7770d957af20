"""The Workers page shows each worker's running jobs with their elapsed time and the
concurrency in use, and quiets a worker (admin, confirmed): it takes no new job until
resumed."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_quiet_a_worker_from_the_workers_page(page: Page, server: Server) -> None:
    login(page, server, "/workers")
    row = page.locator("[data-testid=workers-table] tbody tr[data-alive=true]").first
    slow = server.submit("demo.slow", {"seconds": 3})
    expect(row.locator(f"li[data-job='{slow}']")).to_contain_text("demo.slow for", timeout=20_000)
    expect(row.get_by_test_id("in-use")).to_contain_text("1 /")
    try:
        row.get_by_role("button", name="Quiet").click()
        row.get_by_role("button", name="Confirm quiet").click()
        expect(row.get_by_test_id("worker-state")).to_contain_text("quiet")
        waiting = server.submit("demo.fast", {"n": 5})
        time.sleep(1.5)
        assert server.job(waiting)["status"] == "queued"  # a quiet worker takes nothing new
        server.wait_status(slow, "completed")  # and finishes what it runs
        screenshot(page, "workers-quiet")
    finally:
        row.get_by_role("button", name="Resume").click()
    expect(row.get_by_test_id("worker-state")).not_to_contain_text("quiet")
    server.wait_status(waiting, "completed")
