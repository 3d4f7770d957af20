"""The submit form is generated from the job type's schema; the API's validation errors show
next to the fields they name; a valid job is submitted and can be followed."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_submit_shows_a_validation_error_then_submits(page: Page, server: Server) -> None:
    login(page, server, "/submit")
    page.get_by_label("Job type").select_option("demo.fast")
    field = page.locator("[data-field='args.n']")
    n = page.get_by_label("N *")
    n.fill("1.5")
    page.get_by_role("button", name="Submit demo.fast").click()
    expect(field.locator(".field-error")).to_contain_text("valid integer")
    expect(n).to_have_attribute("aria-invalid", "true")
    expect(n).to_have_attribute("aria-describedby", "arg-n-error")
    screenshot(page, "submit-validation")

    page.get_by_label("Priority").select_option("high")
    n.fill("7")
    page.get_by_role("button", name="Submit demo.fast").click()
    submitted = page.get_by_test_id("submitted")
    expect(submitted).to_contain_text("Submitted")
    expect(field.locator(".field-error")).to_have_count(0)
    job_id = submitted.locator("a").first.inner_text()
    assert server.job(job_id)["priority"] == "high"
    screenshot(page, "submit")

    submitted.locator("a").first.click()
    expect(page.get_by_test_id("job-status")).to_contain_text("completed")
    expect(page.get_by_test_id("job-result")).to_have_text("49")


def test_submit_reports_errors_of_options_too(page: Page, server: Server) -> None:
    login(page, server, "/submit?type=demo.doomed")
    page.get_by_label("Reason *").fill("never runs")
    page.get_by_label("Max attempts").fill("0")
    page.get_by_role("button", name="Submit demo.doomed").click()
    expect(page.locator("#opt-max_attempts-error")).to_contain_text("greater than or equal to 1")
