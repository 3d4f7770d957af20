"""Signing in: a wrong key is refused with a message, the right one opens the overview; the key
never appears in the URL and stays for this tab only."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot


def test_wrong_key_is_refused_and_right_key_signs_in(page: Page, server: Server) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Conveyor")).to_be_visible()
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "login")

    page.get_by_label("API key").fill(server.key)
    page.get_by_label("API key").press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("admin")
    expect(page.get_by_test_id("live-state")).to_have_text(re.compile("Live"))
    assert server.key not in page.url


def test_session_survives_a_reload_and_sign_out_forgets_it(page: Page, server: Server) -> None:
    login(page, server, "/queues")
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    stored = page.evaluate("() => [sessionStorage.length, localStorage.length]")
    assert stored == [1, 0]  # the key is in this tab's session storage only

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_without_staying_signed_in_the_key_is_kept_in_memory_only(
    page: Page, server: Server
) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(server.key)
    page.get_by_label(re.compile("Stay signed in")).uncheck()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()
