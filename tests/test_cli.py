"""The real ``conveyor`` command with Redis unreachable: refused, or a server that accepts
connections and never answers. Every command exits 1 within seconds with a short message
naming the URL (without its password) and the fix, never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.embedded import RedisServer, free_port
from conveyor.store import Gap, open_store
from tests.procs import ROOT
from tests.store.helpers import ev

SECRET = "hunter2"
COMMANDS = [
    ["status"],
    ["enqueue", "record", "--args", '{"n": 1}'],
    ["dlq", "list", "default"],
    ["recover"],
    ["keys", "list"],
    ["worker", "tests.apps.basic:app"],
    ["scheduler", "tests.apps.basic:app"],
]
LIMIT = 15.0  # seconds, per command


async def conveyor(
    url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, float]:
    """Run ``python -m conveyor ARGS`` against ``url``: (exit status, output, seconds)."""
    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONPATH": str(ROOT),
           "CONVEYOR_STORE_URL": f"sqlite:///{tempfile.gettempdir()}/conveyor-cli-test/h.db",
           "COLUMNS": "200", **(env or {})}
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), LIMIT + 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace"), time.monotonic() - start


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never answers (a hung server, a firewall)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def answers_once() -> AsyncIterator[int]:
    """A port whose first connection answers like Redis (PONG, OK) and whose later ones never
    answer: a server that stalls after the command's check passed."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if len(held) > 1:
            return  # silent
        while line := await reader.readline():
            if not line.startswith(b"*"):
                continue
            words = [(await reader.readexactly(int((await reader.readline())[1:]) + 2))[:-2]
                     for _ in range(int(line[1:]))]
            writer.write(b"+PONG\r\n" if words[0].upper() == b"PING" else b"+OK\r\n")
            await writer.drain()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_server_that_stalls_mid_command_ends_it_in_seconds(answers_once: int) -> None:
    status, out, seconds = await conveyor(f"redis://127.0.0.1:{answers_once}/0", "status")
    assert status == 1 and seconds < LIMIT, (status, seconds, out)
    assert "Traceback" not in out and f"127.0.0.1:{answers_once}" in out, out


async def check_every_command(url: str, endpoint: str) -> None:
    # Two waves, so that seven interpreters starting at once on a small machine do not eat
    # the time limit: the one-shot commands, then the long-running ones.
    results = []
    for wave in (COMMANDS[:-2], COMMANDS[-2:]):
        results += await asyncio.gather(*(conveyor(url, *cmd) for cmd in wave))
    for cmd, (status, out, seconds) in zip(COMMANDS, results, strict=True):
        name = " ".join(cmd)
        assert status == 1, f"{name}: exit {status}\n{out}"
        assert seconds < LIMIT, f"{name}: took {seconds:.1f}s"
        assert "Traceback" not in out, f"{name}:\n{out}"
        assert len(out.strip().splitlines()) <= 4, f"{name}:\n{out}"
        assert endpoint in out and "CONVEYOR_REDIS_URL" in out, f"{name}:\n{out}"
        assert SECRET not in out, f"{name} printed the password:\n{out}"


async def test_every_command_with_redis_refusing_connections() -> None:
    port = free_port()  # nothing listens there
    await check_every_command(f"redis://:{SECRET}@127.0.0.1:{port}/0", f"127.0.0.1:{port}")


async def test_every_command_with_redis_never_answering(black_hole: int) -> None:
    await check_every_command(f"redis://:{SECRET}@127.0.0.1:{black_hole}/0",
                              f"127.0.0.1:{black_hole}")


async def test_status_works_and_bad_input_exits_2(any_redis: RedisServer) -> None:
    status, out, _ = await conveyor(any_redis.url, "status")
    assert status == 0 and "Queues" in out, out
    status, out, _ = await conveyor(any_redis.url, "enqueue", "record", "--args", "{nope")
    assert status == 2 and "Traceback" not in out, out


async def test_recover_lists_jobs_whose_history_has_a_gap_apart(
    any_redis: RedisServer, tmp_path: Path
) -> None:
    """A job the store holds as queued, Redis no longer has, and whose newest event is older
    than a gap: `recover` holds it back unless --include-gaps."""
    url = f"sqlite:///{tmp_path}/history.db"
    store = await open_store(url)
    try:
        await store.apply([ev("j1", "submitted", 1, 5_000, queue="q", attempt=0)])
        await store.record_gap(Gap(queue="q", after_id="0-0", end_id="9000-0", end_ms=9000,
                                   lost=3, detected_ms=10_000))
    finally:
        await store.close()
    env = {"CONVEYOR_STORE_URL": url}
    status, out, _ = await conveyor(any_redis.url, "recover", "--apply", env=env)
    assert status == 0 and "history has a gap" in out and "j1" in out, out
    assert "Re-enqueued: 0 job(s)" in out, out
    status, out, _ = await conveyor(any_redis.url, "recover", "--include-gaps", env=env)
    assert status == 0 and "Would re-enqueue" in out and "1 job(s)" in out, out
