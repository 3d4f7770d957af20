"""The overview follows the system live: totals, charts and the event list move when jobs
complete, pushed over the WebSocket, without a reload."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, number, screenshot


def _settled(server: Server, timeout: float = 60.0) -> None:
    """Wait until the demo burst (retries included) has ended: its events would push this
    test's own out of the overview's list of the latest 30."""
    deadline = time.monotonic() + timeout
    while True:
        queues = server.api.get("/api/queues").json()
        busy = sum(q["high"] + q["normal"] + q["low"] + q["delayed"] + q["active"]
                   for q in queues)
        if busy == 0:
            return
        assert time.monotonic() < deadline, f"{busy} demo jobs still moving"
        time.sleep(0.2)  # another process's state: poll it


ACTIVITY_SIZE = 30  # dashboard/src/live/activity.ts


def _expect_completed_in_activity(page: Page, ids: list[str], timeout: float = 15.0) -> None:
    """Each job's ``completed`` event shows in the latest-events list, unless 30 newer events
    pushed it out (the list's size; another process's jobs on the shared server can do that):
    then the list is full and holds no event of these jobs at all, which is said in the output.
    On failure, the message shows the list, to tell a lost event from a crowded list."""
    deadline = time.monotonic() + timeout
    while True:
        items = page.eval_on_selector_all(
            "[data-testid=activity] li", "els => els.map(e => [e.dataset.job, e.dataset.event])")
        done = {job for job, event in items if event == "completed"}
        ours = [item for item in items if item[0] in ids]
        if all(job_id in done for job_id in ids):
            return
        if len(items) >= ACTIVITY_SIZE and not ours:
            print(f"the latest-events list was crowded out by newer events: {items[:5]}")
            return
        if time.monotonic() > deadline:
            reconnects = page.get_by_test_id("live-state").get_attribute("data-reconnects")
            raise AssertionError(f"completed events missing for "
                                 f"{[i for i in ids if i not in done]}; reconnects "
                                 f"{reconnects}; the list: {items}")
        page.wait_for_timeout(100)  # the page's own state: poll it


def test_overview_updates_when_jobs_complete_without_a_reload(page: Page, server: Server) -> None:
    _settled(server)
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
    _expect_completed_in_activity(page, ids)
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
