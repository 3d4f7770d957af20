"""The Jobs page finds a job by a top-level argument ("the job for order 42") and by the
start of its id."""

from __future__ import annotations

import random
import re

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_find_a_job_by_its_argument_and_its_id_prefix(page: Page, server: Server) -> None:
    n = random.randrange(10**6, 10**7)
    job_id = server.submit("demo.fast", {"n": n})
    server.submit("demo.fast", {"n": n + 1})
    server.wait_status(job_id, "completed")
    login(page, server, "/jobs")
    page.get_by_label("Arguments").fill(f"n={n}")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("[data-testid=jobs-table] tbody tr")
    expect(rows).to_have_count(1, timeout=20_000)  # once the history has it
    expect(rows.first).to_have_attribute("data-job", job_id)
    assert f"arg=n%3D{n}" in page.url
    screenshot(page, "jobs-by-argument")

    page.get_by_role("button", name="Clear").click()
    # Clearing changes the URL, which renders the filter form anew: fill it after that, or
    # the new form drops what was typed (it did, on a busy machine).
    expect(page).not_to_have_url(re.compile("arg="))
    expect(page.get_by_label("Arguments")).to_have_value("")
    page.get_by_label("Job id starts with").fill(job_id[:12])
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", job_id)
