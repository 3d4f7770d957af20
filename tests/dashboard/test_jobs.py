"""The jobs table searches the history on the server: filters, cursor pages, sorting."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot

ROWS = "[data-testid=jobs-table] tbody tr"


def settled(page: Page) -> None:
    """Until the table shows the new search's rows (not the previous ones kept meanwhile)."""
    expect(page.get_by_test_id("jobs-table")).to_have_attribute("aria-busy", "false")


def row_ids(page: Page) -> list[str]:
    return [r.get_attribute("data-job") or "" for r in page.locator(ROWS).all()]


def test_jobs_table_filters_and_pages(page: Page, server: Server) -> None:
    for n in range(30):  # enough for several pages of 25, whatever the demo burst did
        server.submit("demo.fast", {"n": 1000 + n})
    login(page, server, "/jobs")
    expect(page.locator(ROWS).first).to_be_visible()

    page.get_by_label("completed").check()
    page.get_by_label("Type").select_option("demo.fast")
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(
        "/jobs?status=completed&type=demo.fast&limit=25")
    settled(page)
    expect(page.locator(ROWS)).to_have_count(25)
    statuses = {r.get_attribute("data-status") for r in page.locator(ROWS).all()}
    types = {r.get_attribute("data-type") for r in page.locator(ROWS).all()}
    assert statuses == {"completed"} and types == {"demo.fast"}
    screenshot(page, "jobs")

    first_page = row_ids(page)
    page.get_by_role("button", name="Next →").click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    settled(page)
    expect(page.locator(f"{ROWS}[data-job='{first_page[0]}']")).to_have_count(0)
    second_page = row_ids(page)
    assert not set(first_page) & set(second_page)
    page.get_by_role("button", name="← Previous").click()
    expect(page.get_by_text("Page 1")).to_be_visible()
    expect(page.locator(ROWS).first).to_have_attribute("data-job", first_page[0])


def test_jobs_table_sorts_and_searches_errors(page: Page, server: Server) -> None:
    login(page, server, "/jobs")
    expect(page.locator(ROWS).first).to_be_visible()
    page.get_by_role("button", name="Submitted").click()
    expect(page).to_have_url("/jobs?order=asc")
    expect(page.get_by_role("columnheader", name="Submitted")).to_have_attribute(
        "aria-sort", "ascending")
    settled(page)
    submitted = [int(r.get_attribute("data-submitted") or 0) for r in page.locator(ROWS).all()]
    assert submitted == sorted(submitted)

    page.get_by_label("Error contains").fill("wants a dead job")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url("/jobs?text=wants+a+dead+job&order=asc")
    settled(page)
    errors = page.locator(f"{ROWS} .error-cell").all_inner_texts()
    assert errors and all("wants a dead job" in e for e in errors)

    page.get_by_label("Error contains").fill("no error ever says this")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("No job matches these filters.")).to_be_visible()
