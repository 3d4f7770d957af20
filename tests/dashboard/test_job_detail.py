"""A job's page: its failed attempts with errors and tracebacks, and live progress."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_detail_shows_every_failed_attempt(page: Page, server: Server) -> None:
    reason = f"detail-test-{uuid.uuid4().hex[:8]}"
    job_id = server.submit("demo.doomed", {"reason": reason})
    server.wait_status(job_id, "dead")
    login(page, server)
    page.get_by_label("Job id").fill(job_id)
    page.get_by_label("Job id").press("Enter")

    expect(page.get_by_test_id("job-status")).to_contain_text("dead")
    attempts = page.locator("[data-testid=attempts] > li")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("Attempt 1")
    expect(attempts.nth(0)).to_contain_text(f"RuntimeError: {reason}")
    expect(attempts.nth(1)).to_have_attribute("data-outcome", "dead")
    attempts.nth(1).locator("summary").click()
    expect(attempts.nth(1).locator("pre")).to_contain_text("Traceback (most recent call last)")
    expect(page.get_by_test_id("job-args")).to_contain_text(reason)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    screenshot(page, "job-detail")


def test_detail_follows_progress_and_status_live(page: Page, server: Server) -> None:
    login(page, server)
    job_id = server.submit("demo.slow", {"seconds": 3.0})
    page.get_by_label("Job id").fill(job_id)
    page.get_by_label("Job id").press("Enter")
    progress = page.get_by_role("progressbar", name="Progress")
    expect(progress).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_test_id("job-status")).to_contain_text("completed", timeout=20_000)
    expect(page.get_by_test_id("job-result")).to_contain_text("slept 3.0s")
    expect(page.locator("[data-testid=attempts] > li")).to_have_count(1)
