"""Loads the Lua scripts from ``lua/``, expanding ``-- @include name`` lines from
``lua/includes/``. redis-py's ``AsyncScript`` runs them with EVALSHA and reloads on NOSCRIPT.

Every script starts with a ``#!lua`` shebang declaring its flags (Redis 7+, Valkey): with one,
the server refuses a writing script up front, before any write, when memory is over
``maxmemory`` (unless it declares ``allow-oom``), so a script is all or nothing at the limit.
The shebang stays the first line of the final text (includes expand further down)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

LUA = resources.files("conveyor.broker") / "lua"
INCLUDE_RE = re.compile(r"^-- @include (\w+)$", re.MULTILINE)
HEADER_KEY_RE = re.compile(r"^-- KEYS\[(\d+)\]", re.MULTILINE)
SHEBANG_RE = re.compile(r"^#!lua(?: flags=([\w,-]+))?\n")


@dataclass(frozen=True)
class ScriptSource:
    name: str
    text: str

    @property
    def header_key_count(self) -> int:
        """How many fixed KEYS the header documents."""
        return len(HEADER_KEY_RE.findall(self.text))

    @property
    def flags(self) -> frozenset[str]:
        """The flags its ``#!lua`` shebang declares."""
        match = SHEBANG_RE.match(self.text)
        if match is None:
            raise ValueError(f"{self.name}.lua does not start with a #!lua shebang")
        return frozenset((match.group(1) or "").split(",")) - {""}


@cache
def source(name: str) -> ScriptSource:
    """The script's source with every include expanded in place."""
    text = (LUA / f"{name}.lua").read_text()

    def include(match: re.Match[str]) -> str:
        return (LUA / "includes" / f"{match.group(1)}.lua").read_text()

    return ScriptSource(name, INCLUDE_RE.sub(include, text))


def available() -> list[str]:
    """Every script in ``lua/`` (the includes folder holds snippets, not scripts)."""
    return sorted(p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua"))


def register_all(client: object) -> dict[str, AsyncScript]:
    """``client.register_script`` for every script; the objects are reused for pipelines."""
    register = client.register_script  # type: ignore[attr-defined]
    return {name: register(source(name).text) for name in available()}
