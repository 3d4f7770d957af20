"""A job retried from the dead-letter queue reads "retry 1, attempt 2 of 2", not "4 of 2",
and its timeline marks where the fresh budget of attempts began."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_a_retried_job_counts_attempts_from_its_retry(page: Page, server: Server) -> None:
    job_id = server.submit("demo.doomed", {"reason": f"retried-{uuid.uuid4().hex[:6]}"})
    server.wait_status(job_id, "dead")
    login(page, server, f"/jobs/{job_id}")
    attempt = page.get_by_test_id("job-attempt")
    expect(attempt).to_have_text("2 of 2")
    assert server.api.post(f"/api/jobs/{job_id}/retry").status_code == 200
    server.wait_status(job_id, "dead")  # demo.doomed fails again: a second life of 2 attempts
    expect(attempt).to_have_text("retry 1, attempt 2 of 2", timeout=20_000)
    expect(page.get_by_test_id("job-error")).to_be_visible()  # dead now: the error is current
    expect(page.locator("[data-testid=attempts] li[data-outcome=retried]")).to_have_count(
        1, timeout=30_000)  # the timeline comes from the history store, which may lag
    screenshot(page, "job-detail-retried-1440")
