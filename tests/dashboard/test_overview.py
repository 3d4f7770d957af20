"""The overview follows the system live: totals, charts and the event list move when jobs
complete, pushed over the WebSocket, without a reload."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, number, screenshot


def test_overview_updates_when_jobs_complete_without_a_reload(page: Page, server: Server) -> None:
    login(page, server)
    completed = page.get_by_test_id("total-completed")
    expect(completed).to_have_text(re.compile(r"\d"))
    expect(page.get_by_test_id("workers-alive")).to_contain_text("1")
    page.evaluate("() => { window.__sameDocument = true; }")
    before = number(completed.inner_text())
    ended_before = number(page.get_by_test_id("ended-live").inner_text())

    ids = [server.submit("demo.fast", {"n": n}) for n in range(5)]
    for job_id in ids:
        server.wait_status(job_id, "completed")

    page.wait_for_function(
        "min => Number(document.querySelector('[data-testid=total-completed] .stat__value')"
        ".textContent.replace(/[^0-9]/g, '')) >= min", arg=before + 5)
    for job_id in ids:
        expect(page.locator(f"[data-testid=activity] li[data-job='{job_id}']"
                            "[data-event=completed]")).to_have_count(1)
    assert number(page.get_by_test_id("ended-live").inner_text()) >= ended_before + 5
    latest = page.get_by_test_id("chart-throughput").get_attribute("data-latest") or "{}"
    assert "completed" in latest
    assert page.evaluate("() => window.__sameDocument === true")  # no reload happened
    screenshot(page, "overview")


def test_overview_fits_a_narrow_screen(page: Page, server: Server) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, server)
    expect(page.get_by_test_id("chart-throughput")).to_be_visible()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    screenshot(page, "overview-narrow")
