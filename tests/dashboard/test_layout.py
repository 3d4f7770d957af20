"""Every page at a desktop's 1440 x 900 and a phone's 390 x 844: no sideways page scroll on
the phone (tables scroll inside their card), chart labels at 11 px or more, no chart label
clipped on the desktop, and a paused queue flagged on the Overview. Screenshots of every page
at both sizes go to test-artifacts/screenshots/<page>-1440.png and <page>-390.png."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, login, screenshot

SIZES = {"1440": {"width": 1440, "height": 900}, "390": {"width": 390, "height": 844}}
PAGES = {"overview": "/", "queues": "/queues", "jobs": "/jobs", "dead-letters": "/dead-letters",
         "workers": "/workers", "schedules": "/schedules", "metrics": "/charts?range=1h",
         "submit": "/submit"}
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
# Each chart label's rendered size (font size times the SVG's scale) and whether its box
# leaves the SVG's.
LABELS = """() => [...document.querySelectorAll('figure.chart svg')].flatMap((svg) => {
  const box = svg.getBoundingClientRect();
  const scale = box.width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].map((t) => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, px: parseFloat(getComputedStyle(t).fontSize) * scale,
            clipped: r.left < box.left - 0.5 || r.right > box.right + 0.5
              || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5};
  });
})"""


def _check_charts(page: Page, where: str) -> None:
    labels = page.evaluate(LABELS)
    small = [lb for lb in labels if lb["px"] < 10.95]
    clipped = [lb for lb in labels if lb["clipped"]]
    assert not small, f"chart labels under 11 px on {where}: {small}"
    assert not clipped, f"chart labels clipped on {where}: {clipped}"


def test_every_page_fits_a_phone_and_a_desktop(page: Page, server: Server) -> None:
    login(page, server)
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        for name, path in PAGES.items():
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            page.wait_for_load_state("networkidle")
            assert page.evaluate(SIDEWAYS) <= 0, f"{path} scrolls sideways at {size} px"
            if page.locator("figure.chart").count():
                _check_charts(page, f"{path} at {size} px")
            screenshot(page, f"{name}-{size}")
        page.goto("/jobs")
        page.locator("[data-testid=jobs-table] tbody tr a").first.click()
        expect(page.get_by_test_id("job-status")).to_be_visible()
        assert page.evaluate(SIDEWAYS) <= 0, f"a job's page scrolls sideways at {size} px"
        screenshot(page, f"job-detail-{size}")


def test_a_paused_queue_is_flagged_on_the_overview(page: Page, server: Server) -> None:
    login(page, server)
    expect(page.get_by_test_id("paused-queues")).to_have_count(0)
    assert server.api.post("/api/queues/demo/pause").status_code == 200
    try:
        page.reload()
        flag = page.get_by_test_id("paused-queues")
        expect(flag).to_contain_text("1 queue is paused")
        expect(flag).to_contain_text("demo")
        screenshot(page, "overview-paused")
    finally:
        server.api.post("/api/queues/demo/resume")
