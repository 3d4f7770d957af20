"""One return-code table: each script's header lists exactly the codes codes.py names for it."""

from __future__ import annotations

import re

import pytest

from conveyor.broker import scripts
from conveyor.broker.codes import DATA_REPLIES, SCRIPT_CODES

CODE_LINE = re.compile(r"^--\s+(-?\d+) ([A-Z][A-Z_]*)(?:\s|$)")


def header(name: str) -> list[str]:
    """The comment lines at the top of the script file, up to its first statement."""
    lines = []
    for line in (scripts.LUA / f"{name}.lua").read_text().splitlines()[1:]:
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def documented_codes(name: str) -> dict[int, str]:
    found = {}
    for line in header(name):
        match = CODE_LINE.match(line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def test_every_script_has_codes_or_returns_data() -> None:
    assert set(SCRIPT_CODES) | DATA_REPLIES == set(scripts.available())
    assert not set(SCRIPT_CODES) & DATA_REPLIES


@pytest.mark.parametrize("name", sorted(SCRIPT_CODES))
def test_header_returns_match_codes_py(name: str) -> None:
    expected = {int(code): code.name for code in SCRIPT_CODES[name]}
    assert len(expected) == len(SCRIPT_CODES[name]), "a code listed twice"
    returns = [line for line in header(name) if line.startswith("-- Returns")]
    assert returns and f"SCRIPT_CODES['{name}']" in "\n".join(header(name))
    assert documented_codes(name) == expected


@pytest.mark.parametrize("name", sorted(DATA_REPLIES))
def test_data_scripts_say_what_they_return(name: str) -> None:
    text = "\n".join(header(name))
    assert "-- Returns data (codes.py DATA_REPLIES)" in text
    assert documented_codes(name) == {}
