"""Every script's header documents its KEYS, and the Python wrapper passes them in that order."""

from __future__ import annotations

import re

import pytest

from conveyor import Conveyor
from conveyor.broker import scripts
from conveyor.broker.broker import SCRIPT_KEYS

BIND_RE = re.compile(r"^local ([\w, ]+) = (KEYS\[\d+\](?:, KEYS\[\d+\])*)$", re.MULTILINE)


def bound_names(text: str) -> list[str]:
    """Names the body binds to KEYS[i], in index order."""
    by_index: dict[int, str] = {}
    for names, targets in BIND_RE.findall(text):
        for name, target in zip(names.split(", "), targets.split(", "), strict=True):
            by_index[int(target[5:-1])] = name.strip()
    assert sorted(by_index) == list(range(1, len(by_index) + 1)), "KEYS bound with gaps"
    return [by_index[i] for i in sorted(by_index)]


@pytest.mark.parametrize("name", sorted(SCRIPT_KEYS))
def test_wrapper_keys_match_header_and_body(name: str) -> None:
    src = scripts.source(name)
    names = bound_names(src.text)
    assert src.header_key_count == len(SCRIPT_KEYS[name]), "header documents another count"
    assert names == list(SCRIPT_KEYS[name])


@pytest.mark.parametrize("name", scripts.available())
def test_every_script_has_a_header_and_no_unexpanded_include(name: str) -> None:
    text = scripts.source(name).text
    shebang, _, text = text.partition("\n")
    assert shebang.startswith("#!lua"), "the shebang must stay the first line"
    assert text.startswith(f"-- {name}.lua: ")
    assert "Returns" in text.split("\n\n")[0] or "-- Returns" in text
    assert "@include" not in text


def test_every_script_file_has_a_wrapper() -> None:
    assert set(scripts.available()) <= set(SCRIPT_KEYS)


async def test_shebang_scripts_load_again_after_a_script_flush(app: Conveyor) -> None:
    """EVALSHA of a script with a #!lua shebang, and the NOSCRIPT reload redis-py does."""
    @app.job(queue="q")
    async def noop() -> None:
        return None

    handle = await app.enqueue("noop", {})
    await app.redis.script_flush()
    (job,) = (await app.broker.claim("q", "w", 1)).jobs
    assert job.id == handle.id
    assert await app.redis.script_exists(app.broker.scripts["claim"].sha) == [True]
