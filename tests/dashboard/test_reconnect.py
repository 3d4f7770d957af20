"""A dropped WebSocket reconnects and resumes from the last event it saw: what happened while
it was gone arrives after the reconnection (it could come from nowhere else: the latest-events
list is fed by the socket only)."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

from tests.dashboard.conftest import Server, login, screenshot


class Network:
    """Stands between the page and /api/ws: passes traffic through, or refuses connections
    while blocked; ``drop`` cuts the connections that are open, as a network failure would."""

    def __init__(self) -> None:
        self.blocked = False
        self.open: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.connections = 0

    def handle(self, ws: WebSocketRoute) -> None:
        if self.blocked:
            ws.close(code=1011, reason="network down")
            return
        self.connections += 1
        self.open.append((ws, ws.connect_to_server()))

    def drop(self) -> None:
        self.blocked = True
        for page_side, server_side in self.open:
            server_side.close()
            page_side.close(code=1011, reason="network down")
        self.open.clear()


def test_a_dropped_socket_reconnects_and_catches_up(
    context: BrowserContext, page: Page, server: Server
) -> None:
    network = Network()
    context.route_web_socket(re.compile(r"/api/ws$"), network.handle)
    login(page, server)
    live = page.get_by_test_id("live-state")
    assert network.connections == 1

    network.drop()
    expect(live).to_have_text(re.compile("Reconnecting"))
    missed = [server.submit("demo.fast", {"n": 500 + n}) for n in range(3)]
    for job_id in missed:
        server.wait_status(job_id, "completed")
    activity = page.locator("[data-testid=activity]")
    for job_id in missed:  # nothing arrives while the socket is down
        expect(activity.locator(f"li[data-job='{job_id}']")).to_have_count(0)

    network.blocked = False
    expect(live).to_have_text(re.compile("Live"), timeout=20_000)
    assert network.connections >= 2
    assert int(live.get_attribute("data-reconnects") or 0) >= 1
    for job_id in missed:
        for event in ("submitted", "active", "completed"):
            expect(activity.locator(f"li[data-job='{job_id}'][data-event={event}]")).to_have_count(1)
    screenshot(page, "overview-after-reconnect")


def test_closing_the_socket_from_the_page_reconnects(page: Page, server: Server) -> None:
    login(page, server)
    live = page.get_by_test_id("live-state")
    page.evaluate("() => window.__conveyorLive.drop()")
    expect(live).to_have_attribute("data-reconnects", "1")
    expect(live).to_have_text(re.compile("Live"))
    job_id = server.submit("demo.fast", {"n": 77})
    expect(page.locator(f"[data-testid=activity] li[data-job='{job_id}'][data-event=completed]")
           ).to_have_count(1)
