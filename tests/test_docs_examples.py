"""Every code example of docs/*.md, and every shell example of README.md, runs as written,
against a real server, so none can rot.

The examples are the fenced blocks tagged ``python``, ``sh``, ``bash``, ``shell`` or
``console``; the markers that say how one runs (``<!-- example: ... -->``) or why it cannot
(``<!-- not-runnable: REASON -->``) are described in tests/support/examples.py. A block with
neither runs as is; an unknown marker fails, so a new example cannot go untested by accident.

- **Python**: each example runs in a process of its own (tests/support/docrun.py) in a
  project folder whose ``.conveyor/redis.url`` names a fresh server, as the body of an
  ``async def main()``; a Conveyor ``app`` it builds is then exercised by a worker.
- **Shell**: ``bash -e -o pipefail`` in that folder, with this venv's ``conveyor`` and
  ``python`` first on PATH, ``$KEY`` an admin key of a live API (uvicorn on a free port,
  its app declaring the ``resize`` job of queue ``media`` the docs submit, a worker serving
  it) and ``valkey-cli``/``redis-cli`` talking to the test's server. It fails on a non-zero
  status, an API error body (``{"error": ...}``) or a Redis error reply in its output.
- In both, ``8000`` is the API's port and becomes the free port of the API under test.
- A not-runnable example is still checked: Python is compiled, shell goes through
  ``bash -n``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, Worker
from conveyor.api import ApiServer, create_app
from conveyor.embedded import RedisServer, wheel_valkey
from tests.support.examples import (
    ROOT,
    SHELL,
    Block,
    blocks,
    chain,
    project_folder,
    run_to_end,
    venv_env,
)

DOCS = sorted((ROOT / "docs").glob("*.md"))
README = ROOT / "README.md"
# README's Python snippets are tests/test_readme.py's (they build one app, file by file).
FOUND = {path: blocks(path) for path in DOCS} | {README: blocks(README, SHELL)}
ALL = [(b, found) for found in FOUND.values() for b in found]
ADMIN_KEY = "docs-admin-key-0123456789"
PORT = re.compile(r"\b8000\b")


def params(python: bool) -> list[Any]:
    return [pytest.param(b, found, id=b.where) for b, found in ALL if b.python == python]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_port(text: str, port: int) -> str:
    return PORT.sub(str(port), text)


@pytest.fixture
def folder(tmp_path: Path, any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_folder(tmp_path / "project", any_redis.url, monkeypatch)


def test_every_example_runs_or_says_why_not() -> None:
    problems = [f"{b.where}: {p}" for b, _ in ALL for p in b.problems]
    for b, _ in ALL:
        if b.not_runnable and (b.uses or b.given or b.until_url or b.until_text):
            problems.append(f"{b.where}: not-runnable with directives to run it")
    assert not problems, "\n".join(problems)
    assert sum(b.python for b, _ in ALL) >= 7 and sum(not b.python for b, _ in ALL) >= 3


@pytest.mark.parametrize(("block", "found"), params(python=True))
async def test_python_example(block: Block, found: list[Block], folder: Path) -> None:
    if block.not_runnable:
        compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    assert not block.problems, block.problems
    port = free_port()
    spec = {"blocks": [{"where": b.where, "code": with_port(b.code, port)}
                       for b in chain(block, found)],
            "given": [g for b in chain(block, found) for g in b.given],
            "until_url": block.until_url and with_port(block.until_url, port)}
    (folder / "spec.json").write_text(json.dumps(spec))
    status, text = await run_to_end(
        sys.executable, str(ROOT / "tests" / "support" / "docrun.py"), "spec.json",
        cwd=folder, env=venv_env(), timeout=90, what=block.where)
    assert status == 0 and "example ran" in text, f"{block.where} failed:\n{text}"


@pytest.fixture
async def live_api(folder: Path, any_redis: RedisServer) -> AsyncIterator[ApiServer]:
    """The API the shell examples talk to, on a free port, with a worker behind it."""
    app = Conveyor(redis_url=any_redis.url)

    @app.job(queue="media", queues=["media-bulk"])
    async def resize(image_id: str, width: int) -> dict[str, Any]:
        return {"image_id": image_id, "width": width}

    @app.job(name="demo.fast", queue="demo")  # README's, as `conveyor up` serves it
    async def fast(n: int) -> int:
        return n

    worker = Worker(app, ["media", "demo"], concurrency=2, worker_id="docs-shell")
    task = asyncio.create_task(worker.run())
    server = ApiServer(create_app(app, admin_key=ADMIN_KEY), "127.0.0.1", 0)
    await server.start()
    yield server
    await server.stop()
    worker.stop()
    await task
    await app.close()


def cli_shims(folder: Path, redis: RedisServer) -> Path:
    """``valkey-cli`` and ``redis-cli`` that talk to the test's server."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    binary = Path(wheel_valkey() or "valkey-server").with_name("valkey-cli")
    for name in ("valkey-cli", "redis-cli"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{binary}" -p {redis.port} "$@"\n')
        shim.chmod(0o755)
    return bin_dir


def refusals(output: str) -> list[str]:
    """API error bodies and Redis error replies among the lines an example printed."""
    found = []
    for line in output.splitlines():
        if line.startswith(("(error)", "ERR ")):
            found.append(line)
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and "error" in value:
                found.append(line)
    return found


async def run_shell(block: Block, code: str, cwd: Path, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-e", "-o", "pipefail", "-c", code, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            if block.until_text:  # a watcher: read until it prints what the marker says
                while block.until_text not in "".join(lines):
                    line = await proc.stdout.readline()
                    assert line, f"{block.where} ended first:\n{''.join(lines)}"
                    lines.append(line.decode())
                os.killpg(proc.pid, signal.SIGTERM)
                await proc.wait()
                return "".join(lines)
            out, _ = await proc.communicate()
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"{block.where} did not finish:\n{''.join(lines)}") from None
    text = out.decode()
    assert proc.returncode == 0, f"{block.where} failed ({proc.returncode}):\n{text}"
    return text


@pytest.mark.parametrize(("block", "found"), params(python=False))
async def test_shell_example(block: Block, found: list[Block], folder: Path,
                             any_redis: RedisServer, live_api: ApiServer) -> None:
    if block.not_runnable:
        proc = await asyncio.create_subprocess_exec("bash", "-n", "-c", block.code)
        assert await proc.wait() == 0, f"{block.where}: not valid shell"
        return
    assert not block.problems, block.problems
    code = "\n".join(with_port(b.code, live_api.port) for b in chain(block, found))
    # The folder as `conveyor up` leaves it for README's commands: its admin key, and the
    # project's venv as .venv.
    (folder / ".conveyor" / "admin.key").write_text(ADMIN_KEY + "\n")
    if not (folder / ".venv").exists():
        (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = venv_env(KEY=ADMIN_KEY)
    env["PATH"] = f"{cli_shims(folder, any_redis)}{os.pathsep}{env['PATH']}"
    out = await run_shell(block, code, folder, env)
    assert not refusals(out), f"{block.where} was refused:\n{out}"
