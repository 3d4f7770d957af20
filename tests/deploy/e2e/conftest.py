"""Facts the end-to-end run measured (image size, durations), printed after the results."""

from __future__ import annotations

from typing import Any

FACTS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FACTS:
        terminalreporter.section("deploy facts")
        for line in FACTS:
            terminalreporter.write_line(line)
