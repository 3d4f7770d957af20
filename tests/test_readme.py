"""Every Python snippet of README.md runs as written, against a real server, so none can rot.

A snippet whose first line is ``# name.py`` is that file: it is written to a fresh folder
and run with ``python name.py`` there. ``myapp.py`` is the app; the folder holds the
``.conveyor/redis.url`` of a ``conveyor up`` and no CONVEYOR_* variable, so the scripts find
the server the way a user's script finds the one ``conveyor up`` started. Every other
snippet extends ``myapp.py`` (as the README says): it runs in that module's namespace, with
``await`` allowed at top level, as lines of ``main()`` would. A worker for the app runs in
this process meanwhile, for the snippets that wait for results.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import Worker
from conveyor.embedded import RedisServer
from tests.support.examples import PYTHON, ROOT, blocks, project_folder, run_to_end

README = ROOT / "README.md"
FILE_NAME = re.compile(r"# (\w+\.py)\n")


@dataclass(frozen=True)
class Snippet:
    line: int  # where it starts in README.md
    code: str

    @property
    def file(self) -> str | None:
        match = FILE_NAME.match(self.code)
        return match.group(1) if match else None


def snippets() -> list[Snippet]:
    return [Snippet(b.line, b.code) for b in blocks(README, PYTHON) if b.python]


def queues_named(found: list[Snippet]) -> list[str]:
    named = {q for s in found for q in re.findall(r'queue="([\w.-]+)"', s.code)}
    return sorted(named | {"default"})


@pytest.fixture
def folder(
    tmp_path: Path, any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A project folder where `conveyor up` runs, as the scripts' working folder."""
    yield project_folder(tmp_path, any_redis.url, monkeypatch)
    sys.modules.pop("myapp", None)


async def run_script(folder: Path, snippet: Snippet) -> str:
    where = f"README.md:{snippet.line} ({snippet.file})"
    status, text = await run_to_end(sys.executable, str(snippet.file), cwd=folder, timeout=60,
                                    what=where)
    assert status == 0, f"{where} failed:\n{text}"
    return text


async def run_in_app(namespace: dict[str, object], snippet: Snippet) -> None:
    code = compile(snippet.code, f"README.md:{snippet.line}", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the README's own code, in the app's module
    if inspect.isawaitable(result):
        async with asyncio.timeout(60):
            await result


async def test_every_python_snippet_of_the_readme_runs(folder: Path) -> None:
    found = snippets()
    files = [s for s in found if s.file]
    assert [s.file for s in files][:1] == ["myapp.py"], "the first snippet must be myapp.py"
    for s in files:
        (folder / str(s.file)).write_text(s.code)
    myapp = importlib.import_module("myapp")
    app = myapp.app
    worker = Worker(app, queues_named(found), concurrency=8, worker_id="readme")
    task = asyncio.create_task(worker.run())
    try:
        out = await run_script(folder, files[0])
        assert "{'id': 'a', 'width': 10}" in out, out
        for s in files[1:]:
            await run_script(folder, s)
        for s in found:
            if not s.file:
                await run_in_app(vars(myapp), s)
    finally:
        worker.stop()
        await task
        await app.close()
    assert worker.stats.failed == 0
