"""The workers page shows the live worker of ``conveyor up`` with its counts."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, number, screenshot


def test_workers_page_shows_the_live_worker(page: Page, server: Server) -> None:
    login(page, server, "/workers")
    row = page.locator("[data-testid=workers-table] tbody tr[data-alive=true]").first
    expect(row).to_contain_text("alive")
    expect(row).to_contain_text("demo")
    before = number(row.get_by_test_id("processed").inner_text())
    server.wait_status(server.submit("demo.fast", {"n": 3}), "completed")
    page.wait_for_function(
        "min => Number(document.querySelector('[data-alive=true] [data-testid=processed]')"
        ".textContent.replace(/[^0-9]/g, '')) > min", arg=before)
    screenshot(page, "workers")
