"""axe-core (the dashboard's dev dependency, loaded from dashboard/node_modules: nothing is
downloaded) finds no accessibility violation on any page, in light and dark mode, at a
desktop's and a phone's width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.dashboard.conftest import ROOT, Server, login

AXE = ROOT / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
PAGES = ["/", "/queues", "/jobs", "/dead-letters", "/workers", "/schedules",
         "/charts?range=1h", "/submit"]
RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map((v) => ({id: v.id, impact: v.impact,
    nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))}));
}"""


def _axe() -> Path:
    if not AXE.is_file():
        pytest.fail("axe-core is missing: run `cd dashboard && npm ci` (or `make dashboard`)",
                    pytrace=False)
    return AXE


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_axe_violation_on_any_page(browser: Browser, server: Server, scheme: str) -> None:
    script = _axe().read_text()
    # The dashboard's CSP allows only its own scripts: the test context lets axe in.
    context = browser.new_context(base_url=server.url, bypass_csp=True,
                                  color_scheme=scheme)  # type: ignore[arg-type]
    page = context.new_page()
    login(page, server)
    found: dict[str, Any] = {}
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in PAGES:
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.add_script_tag(content=script)
            violations = page.evaluate(RUN)
            if violations:
                found[f"{path} at {width} px"] = violations
    context.close()
    assert not found, f"axe violations ({scheme}): {found}"
