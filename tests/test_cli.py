"""The real ``conveyor`` command with Redis unreachable: refused, or a server that accepts
connections and never answers. Every command exits 1 within seconds with a short message
naming the URL (without its password) and the fix, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from chaos import redis_faults
from conveyor import Conveyor, JobFailed
from conveyor.embedded import RedisServer, free_port
from conveyor.scheduler.cron import parse_schedule
from conveyor.scheduler.service import Scheduler
from conveyor.store import Gap, open_store
from conveyor.worker.worker import Worker
from tests.conftest import FAST
from tests.procs import ROOT
from tests.store.helpers import ev

SECRET = "hunter2"
COMMANDS = [
    ["status"],
    ["enqueue", "record", "--args", '{"n": 1}'],
    ["dlq", "list", "default"],
    ["recover"],
    ["keys", "list"],
    ["job", "0123456789abcdef0123456789abcdef"],
    ["cancel", "0123456789abcdef0123456789abcdef"],
    ["schedules", "list"],
    ["worker", "tests.apps.basic:app"],
    ["scheduler", "tests.apps.basic:app"],
    ["api", "tests.apps.basic:app", "--port", "0"],
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
    # Waves of three, so that ten interpreters starting at once on a small, busy machine do
    # not eat the time limit.
    results = []
    for wave in (COMMANDS[i:i + 3] for i in range(0, len(COMMANDS), 3)):
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


# -- a complete CLI (issue 12): version, job/cancel/retry, --json, confirmations, exit codes --

async def test_version_matches_the_package() -> None:
    from importlib.metadata import version

    status, out, _ = await conveyor("redis://127.0.0.1:1/0", "--version")
    assert status == 0 and out.strip() == f"conveyor {version('conveyor')}", out


@pytest.mark.parametrize("command", [[], ["dlq", "purge"], ["dlq", "retry"], ["enqueue"],
                                     ["up"], ["job"], ["schedules", "delete"], ["status"]])
async def test_help_shows_no_placeholders(command: list[str]) -> None:
    status, out, _ = await conveyor("redis://127.0.0.1:1/0", *command, "--help")
    assert status == 0, out
    assert not re.search(r"<[a-z]+(\[[a-z]+\])?( range)?>|\{[a-z_]+\}", out), out


def _cli_app(url: str) -> Conveyor:
    app = Conveyor(redis_url=url, **FAST)

    @app.job(name="cli.boom", queue="clitest", max_attempts=2, backoff_base=0.01,
             backoff_cap=0.02)
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @app.job(name="cli.double", queue="clitest")
    async def double(n: int) -> int:
        return n * 2

    return app


async def _run_jobs(app: Conveyor, *specs: tuple[str, int]) -> list[str]:
    """Submit jobs and run them on an in-process worker until each has ended."""
    worker = Worker(app, ["clitest"], concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        handles = [await app.enqueue(t, {"n": n}) for t, n in specs]
        for handle in handles:
            with contextlib.suppress(JobFailed):
                await handle.result(timeout=15)
    finally:
        worker.stop()
        await task
    return [h.id for h in handles]


async def test_job_cancel_and_retry(any_redis: RedisServer) -> None:
    app = _cli_app(any_redis.url)
    try:
        dead, done = await _run_jobs(app, ("cli.boom", 1), ("cli.double", 7))
        status, out, _ = await conveyor(any_redis.url, "job", dead)
        assert status == 0 and "dead" in out, out
        assert "attempt 1: RuntimeError: boom 1" in out and "attempt 2:" in out, out
        status, out, _ = await conveyor(any_redis.url, "job", done, "--json")
        assert status == 0 and orjson.loads(out)["result"] == 14, out
        status, out, _ = await conveyor(any_redis.url, "job", "0" * 32)
        assert status == 2 and "not found" in out, out
        status, out, _ = await conveyor(any_redis.url, "cancel", done)
        assert status == 1 and "Traceback" not in out, out  # a completed job stays completed
        status, out, _ = await conveyor(any_redis.url, "retry", dead)
        assert status == 0, out
        assert (await app.get_job(dead)).status == "queued"  # type: ignore[union-attr]
        status, out, _ = await conveyor(any_redis.url, "cancel", dead)
        assert status == 0 and "canceled" in out, out
        assert (await app.get_job(dead)).status == "canceled"  # type: ignore[union-attr]
    finally:
        await app.close()


async def test_dlq_prints_whole_ids_and_purge_asks_first(any_redis: RedisServer) -> None:
    app = _cli_app(any_redis.url)
    try:
        dead = await _run_jobs(app, *[("cli.boom", n) for n in range(3)])
        narrow = {"COLUMNS": "80"}
        status, out, _ = await conveyor(any_redis.url, "dlq", "list", "clitest", env=narrow)
        assert status == 0 and all(job_id in out for job_id in dead), out
        status, out, _ = await conveyor(any_redis.url, "dlq", "list", "clitest", "--json")
        assert status == 0 and {j["id"] for j in orjson.loads(out)} == set(dead), out
        # No terminal to confirm on and no --yes: nothing is deleted.
        status, out, _ = await conveyor(any_redis.url, "dlq", "purge", "clitest")
        assert status == 2 and "--yes" in out, out
        assert await app.redis.zcard(app.keys.queue("clitest").dead) == 3
        status, out, _ = await conveyor(any_redis.url, "dlq", "purge", "clitest", "--yes")
        assert status == 0 and "deleted 3" in out, out
    finally:
        await app.close()


async def test_a_wait_that_times_out_exits_3(any_redis: RedisServer) -> None:
    status, out, seconds = await conveyor(any_redis.url, "enqueue", "record", "--args",
                                          '{"n": 1}', "--wait", "1",
                                          "--app", "tests.apps.basic:app")
    assert status == 3 and "timed out" in out and "Traceback" not in out, out
    assert seconds < LIMIT


async def test_enqueue_while_redis_refuses_writes_says_so(redis_server: RedisServer) -> None:
    """An error reply that passes by itself (here OOM: maxmemory reached) is not "cannot
    reach Redis / start Redis": the command says Redis refuses commands for now and to
    retry, exits 1, and writes nothing."""
    r = redis_faults.client(redis_server)
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        status, out, _ = await conveyor(redis_server.url, "enqueue", "record", "--args",
                                        '{"n": 1}', "--app", "tests.apps.basic:app")
    finally:
        r.config_set("maxmemory", 0)
    assert status == 1 and "Traceback" not in out, out
    assert "refuses commands for now" in out and "Retry shortly" in out, out
    assert "Start Redis" not in out, out
    assert r.dbsize() == 0
    r.close()


async def test_schedules_commands(any_redis: RedisServer) -> None:
    app = _cli_app(any_redis.url)
    try:
        await _run_jobs(app)  # a worker has published the job types (the CLI knows them)
        await app.schedules.put(parse_schedule({"name": "every15", "type": "cli.double",
                                                "args": {"n": 2}, "cron": "*/15 * * * * *"}))
        status, out, _ = await conveyor(any_redis.url, "schedules", "list", "--json")
        assert status == 0 and [s["name"] for s in orjson.loads(out)] == ["every15"], out
        status, out, _ = await conveyor(any_redis.url, "schedules", "show", "every15",
                                        "--json")
        runs = orjson.loads(out)["next_runs_ms"]
        assert len(runs) == 5 and {b - a for a, b in itertools.pairwise(runs)} == {15_000}
        status, out, _ = await conveyor(any_redis.url, "schedules", "show", "every15")
        assert status == 0 and out.count(":00+00:00") + out.count(":15+00:00") + out.count(
            ":30+00:00") + out.count(":45+00:00") == 5, out
        status, out, _ = await conveyor(any_redis.url, "schedules", "pause", "every15")
        assert status == 0 and (await app.schedules.get("every15")).paused
        status, out, _ = await conveyor(any_redis.url, "schedules", "resume", "every15")
        assert status == 0 and not (await app.schedules.get("every15")).paused
        status, out, _ = await conveyor(any_redis.url, "schedules", "run-now", "every15")
        assert status == 0 and (await app.get_job(out.strip())) is not None, out
        status, out, _ = await conveyor(any_redis.url, "schedules", "delete", "every15")
        assert status == 2 and await app.schedules.all(), out
        status, out, _ = await conveyor(any_redis.url, "schedules", "delete", "every15", "-y")
        assert status == 0 and not await app.schedules.all(), out
        status, out, _ = await conveyor(any_redis.url, "schedules", "show", "every15")
        assert status == 2 and "not found" in out, out
    finally:
        await app.close()


async def test_status_shows_loops_schedulers_and_jobs_no_worker_can_run(
    any_redis: RedisServer,
) -> None:
    app = _cli_app(any_redis.url)
    worker = Worker(app, ["clitest"], concurrency=2)
    scheduler = Scheduler(app, record_history=False)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(scheduler.run())]
    try:
        await app.enqueue("cli.double", {"n": 1}, queue="orphans")  # nobody serves it
        for _ in range(100):  # both publish their status within a few seconds
            status, out, _ = await conveyor(any_redis.url, "status", "--json")
            found = orjson.loads(out) if status == 0 else {}
            if (found.get("workers") and found["workers"][0]["loops"]
                    and any(s["leading"] for s in found.get("schedulers", []))):
                break
            await asyncio.sleep(0.5)  # another process publishes it
        assert found["schedulers"][0]["leading"] is True, found
        assert found["workers"][0]["stuck_loops"] == [] and "stalls" in found["workers"][0]
        assert [(u["queue"], u["type"]) for u in found["unrunnable"]] == [
            ("orphans", "cli.double")], found
        status, out, _ = await conveyor(any_redis.url, "status")
        assert status == 0 and "Schedulers" in out and "stalls" in out, out
        assert "Jobs no live worker can run" in out and "orphans" in out, out
    finally:
        worker.stop()
        scheduler.stop()
        await asyncio.gather(*tasks)
        await app.close()


@pytest.mark.parametrize("columns", ["40", "100000"])
async def test_a_taken_port_is_one_short_line_off_a_terminal(
    any_redis: RedisServer, columns: str
) -> None:
    """Neither wrapped at the console's width nor padded to it: a log line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, out, _ = await conveyor(any_redis.url, "api", "tests.apps.basic:app",
                                        "--port", str(port), env={"COLUMNS": columns})
    assert status == 1 and "Traceback" not in out, out
    lines = [line for line in out.splitlines() if f"127.0.0.1:{port}" in line]
    assert any("choose another --port" in line for line in lines), out
    assert all(line == line.rstrip() for line in out.splitlines()), repr(out)
    assert len(out) < 1000, len(out)


async def test_keys_list_json_shows_no_hash(any_redis: RedisServer) -> None:
    status, out, _ = await conveyor(any_redis.url, "keys", "create", "--role", "viewer",
                                    "--name", "cli-test")
    assert status == 0, out
    status, out, _ = await conveyor(any_redis.url, "keys", "list", "--json")
    keys = orjson.loads(out)
    assert status == 0 and [k["name"] for k in keys] == ["cli-test"], out
    assert "sha256" not in keys[0]
