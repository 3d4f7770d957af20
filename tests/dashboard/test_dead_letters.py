"""Dead letters: retry moves a job back to its queue, purge deletes it; pause and resume the
queue from the Queues page so the retried job stays put while we look."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def set_paused(page: Page, paused: bool) -> None:
    page.get_by_role("link", name="Queues").click()
    verb = "Pause" if paused else "Resume"
    page.get_by_role("button", name=f"{verb} queue demo").click()
    row = page.locator("[data-testid=queues-table] tr[data-queue=demo]")
    expect(row).to_contain_text("paused" if paused else "running")


def test_retry_from_the_dlq_moves_the_job_back(page: Page, server: Server) -> None:
    marker = f"dlq-test-{uuid.uuid4().hex[:8]}"
    retried = server.submit("demo.doomed", {"reason": marker})
    purged = server.submit("demo.doomed", {"reason": marker})
    server.wait_status(retried, "dead")
    server.wait_status(purged, "dead")

    login(page, server, "/queues")
    set_paused(page, True)
    assert server.queue("demo")["paused"] is True
    screenshot(page, "queues")
    try:
        page.get_by_role("link", name="Dead letters").click()
        total = page.get_by_test_id("dlq-total")
        expect(total).to_contain_text("dead jobs in demo")
        dead_before = server.queue("demo")["dead"]
        page.get_by_label("Error contains").fill(marker)
        rows = page.locator("[data-testid=dlq-table] tbody tr")
        expect(rows).to_have_count(2)
        screenshot(page, "dead-letters")

        page.get_by_label(f"Select job {retried}").check()
        page.get_by_role("button", name="Retry selected (1)").click()
        expect(page.get_by_role("status").filter(has_text="Requeued 1 job")).to_be_visible()
        expect(page.locator(f"[data-testid=dlq-table] tr[data-job='{retried}']")).to_have_count(0)
        assert server.job(retried)["status"] == "queued"  # back in its (paused) queue
        expect(total).to_contain_text(str(dead_before - 1))

        page.get_by_label(f"Select job {purged}").check()
        page.get_by_role("button", name="Purge selected (1)").click()
        page.get_by_role("button", name="Confirm purge of 1").click()
        expect(page.get_by_role("status").filter(has_text="Purged 1 job")).to_be_visible()
        expect(rows).to_have_count(0)
        dlq = server.api.get("/api/queues/demo/dlq", params={"limit": 500}).json()
        assert purged not in {j["id"] for j in dlq["items"]}
    finally:
        set_paused(page, False)
    server.wait_status(retried, "active", "retrying", "dead")  # resumed: it runs again
