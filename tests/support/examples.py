"""Code examples of the Markdown docs: finding them, the markers that say how one runs, and
the project folder they run in (shared by tests/test_readme.py and
tests/test_docs_examples.py).

A fenced block tagged ``python``, ``sh``, ``bash``, ``shell`` or ``console`` is an example
and runs. HTML comments on the lines right before its fence say how, one directive each:

``<!-- example: name NAME -->``
    other examples may use this one;
``<!-- example: uses NAME, NAME -->``
    the named examples (of the same file) run first, in the same namespace;
``<!-- example: given SETUP (why) -->``
    the test prepares SETUP first (a name the runner knows: see tests/support/docrun.py);
``<!-- example: runs until stopped, once CONDITION -->``
    a server or a watcher: the test stops it once CONDITION holds, where CONDITION is
    ``URL answers`` (an HTTP GET of URL returns 200) or ``it prints TEXT``;
``<!-- not-runnable: REASON -->``
    checked for syntax only; REASON says why it cannot run in a test.

Every example reads ``8000`` as the API's port: the test replaces it with a free port.
Other fenced blocks (``json``, ``yaml``, ``text``, untagged) are not examples, and an
untagged block that starts with a command is refused (tag it).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*(example|not-runnable):\s*(.*?)\s*-->")
PYTHON = {"python"}
SHELL = {"sh", "bash", "shell", "console"}
COMMAND = re.compile(r"(conveyor|curl|python|\.venv/bin/\S+) ")
UNTIL_URL = re.compile(r"runs until stopped, once (\S+) answers")
UNTIL_TEXT = re.compile(r"runs until stopped, once it prints (.+)")
SETUPS = {"otel-sdk", "dead-email-job"}  # what tests/support/docrun.py prepares


@dataclass
class Block:
    path: Path
    line: int  # of the first line of code
    lang: str
    code: str
    name: str | None = None
    uses: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    until_url: str | None = None
    until_text: str | None = None
    not_runnable: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def python(self) -> bool:
        return self.lang in PYTHON


def _markers(text: str, fence_start: int) -> list[tuple[str, str]]:
    """The directives of the comment lines right before the fence."""
    lines = text[:fence_start].split("\n")[:-1]
    found: list[tuple[str, str]] = []
    while lines and lines[-1].strip().startswith("<!--"):
        match = MARKER.fullmatch(lines.pop().strip())
        if match:
            found.insert(0, (match.group(1), match.group(2)))
    return found


def _apply(block: Block, kind: str, text: str) -> None:
    if kind == "not-runnable":
        if not text:
            block.problems.append("not-runnable needs a reason")
        block.not_runnable = text or None
    elif text.startswith("name "):
        block.name = text[5:].strip()
    elif text.startswith("uses "):
        block.uses += [n.strip() for n in text[5:].split(",")]
    elif text.startswith("given "):
        setup = text[6:].split(maxsplit=1)[0]
        block.given.append(setup)
        if setup not in SETUPS:
            block.problems.append(f"no setup {setup!r} (known: {sorted(SETUPS)})")
    elif m := UNTIL_URL.fullmatch(text):
        block.until_url = m.group(1)
    elif m := UNTIL_TEXT.fullmatch(text):
        block.until_text = m.group(1)
    else:
        block.problems.append(f"unknown directive {text!r}")


def blocks(path: Path, langs: set[str] = PYTHON | SHELL) -> list[Block]:
    """The examples of one Markdown file, in order (``langs``: which tags are examples)."""
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        lang, code = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start(2)) + 1
        if lang not in langs:
            if not lang and COMMAND.match(code):
                b = Block(path, line, lang, code)
                b.problems.append("an untagged block of commands: tag it sh")
                found.append(b)
            continue
        b = Block(path, line, lang, code)
        for kind, directive in _markers(text, m.start()):
            _apply(b, kind, directive)
        found.append(b)
    names = {b.name for b in found if b.name}
    for b in found:
        b.problems += [f"uses {n!r}, which no example of the file is named" for n in b.uses
                       if n not in names]
    return found


def chain(block: Block, found: list[Block]) -> list[Block]:
    """``block`` with the examples it uses (and those use), the used ones first."""
    by_name = {b.name: b for b in found if b.name}
    out: list[Block] = []
    for name in block.uses:
        for b in chain(by_name[name], found):
            if b not in out:
                out.append(b)
    return [*out, block]


def project_folder(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder where ``conveyor up`` runs (its ``.conveyor/redis.url`` names the
    test's server), as the working folder, with no CONVEYOR_* variable: scripts find the
    server the way a user's script finds the one ``conveyor up`` started."""
    (tmp_path / ".conveyor").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".conveyor" / "redis.url").write_text(redis_url + "\n")
    for name in [n for n in os.environ if n.startswith("CONVEYOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def venv_env(**extra: str) -> dict[str, str]:
    """The environment of an example's process: this venv's ``python`` and ``conveyor``
    first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONVEYOR_", "SENTRY_", "OTEL_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


async def run_to_end(*args: str, cwd: Path, timeout: float, what: str,
                     env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a process to its end: (exit status, its output, stderr included); an
    AssertionError naming ``what`` when it takes longer than ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not finish") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode()
