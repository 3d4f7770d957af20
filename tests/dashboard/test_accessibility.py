"""Every control on every page has a label, and the keyboard reaches the navigation."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login

PAGES = ["/", "/queues", "/jobs", "/dead-letters", "/workers", "/submit"]
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
  .filter((el) => {
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
      || (el.labels && el.labels.length > 0) || el.textContent.trim() || el.title;
    return !named;
  })
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_every_control_has_a_name(page: Page, server: Server) -> None:
    login(page, server)
    for path in PAGES:
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNLABELLED) == [], f"unlabelled controls on {path}"


def test_the_keyboard_reaches_the_pages(page: Page, server: Server) -> None:
    login(page, server)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Overview")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
