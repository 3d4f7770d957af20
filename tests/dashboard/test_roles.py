"""Actions follow the key's role: a viewer reads everything and changes nothing; a producer
submits and follows its own jobs, live."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login


def test_a_viewer_sees_every_page_and_no_action(page: Page, server: Server) -> None:
    login(page, server, "/queues", key=server.create_key("viewer"))
    expect(page.get_by_test_id("role")).to_have_text("viewer")
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link")).to_have_text(
        ["Overview", "Queues", "Jobs", "Dead letters", "Workers", "Schedules", "Metrics"])
    expect(page.locator("[data-testid=queues-table] tr[data-queue=demo]")).to_be_visible()
    expect(page.get_by_role("button", name="Pause queue demo")).to_have_count(0)
    page.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_test_id("dlq-total")).to_be_visible()
    expect(page.get_by_role("button", name="Purge all")).to_have_count(0)
    page.get_by_role("link", name="Jobs").click()
    page.locator("[data-testid=jobs-table] tbody tr a").first.click()
    expect(page.get_by_test_id("job-status")).to_be_visible()
    expect(page.get_by_role("group", name="Job actions")).to_have_count(0)


def test_a_producer_submits_and_follows_its_job(page: Page, server: Server) -> None:
    login(page, server, "/", key=server.create_key("producer"))
    expect(page.get_by_role("heading", name="Submit a job")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("producer")
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link")).to_have_text(["My jobs", "Submit"])

    page.get_by_label("Job type").select_option("demo.slow")
    page.get_by_label("Seconds *").fill("2")
    page.get_by_role("button", name="Submit demo.slow").click()
    job_link = page.get_by_test_id("submitted").locator("a").first
    job_id = job_link.inner_text()
    job_link.click()
    # The producer's socket subscribes to the jobs it shows: status and progress arrive live.
    expect(page.get_by_role("progressbar", name="Progress")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_contain_text("completed", timeout=20_000)
    expect(page.get_by_test_id("job-result")).to_contain_text("slept 2.0s")

    nav.get_by_role("link", name="My jobs").click()  # only the jobs this key submitted
    rows = page.locator("[data-testid=jobs-table] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job", job_id)
    expect(rows.first).to_have_attribute("data-status", "completed")

    page.goto("/queues")  # queues need a viewer: the page says so instead of breaking
    expect(page.get_by_role("alert")).to_contain_text("role may not")
