"""Fixtures for the history store tests: every store, a real MongoDB-wire server, Redis.

MongoDB runs as SecantusDB (a MongoDB-wire server on WiredTiger; no real ``mongod`` can be
installed here), one in-memory process for the whole session; each test gets its own
database. Tests that need a server they can stop start their own (``SecantusProcess``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from redis.asyncio import Redis

from conveyor.broker.broker import Broker
from conveyor.broker.keys import Keys
from conveyor.embedded import RedisServer, find_server, free_port
from conveyor.scheduler.recorder import Recorder
from conveyor.settings import Settings
from conveyor.store import Store, open_store

SECANTUSD = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
STORES = ["sqlite", "mongo"]


def require_secantus() -> None:
    """The MongoDB store is tested over a real connection, never skipped: a missing server
    is a failed setup with the fix in the message."""
    if not Path(SECANTUSD).is_file():
        pytest.fail("secantusd-py is missing: install the dev extras (pip install -e '.[dev]')")
StoreOpener = Callable[..., Awaitable[Store]]
StartRecorder = Callable[..., Recorder]


@dataclass
class SecantusProcess:
    """A SecantusDB server process on a loopback port that can be stopped and started again
    on the same port (and data folder, unless in memory)."""

    storage: str = ":memory:"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, db: str = "") -> str:
        # Naming the replica set makes the store use majority write concern, as in production.
        return f"mongodb://127.0.0.1:{self.port}/{db}?replicaSet=secantus"

    def start(self, timeout: float = 30.0) -> SecantusProcess:
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [SECANTUSD, "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", self.storage, "--cache-size", "256M", "--log-level", "ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://127.0.0.1:{self.port}/?directConnection=true",
            serverSelectionTimeoutMS=200)
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, "secantusd exited"
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.1)  # another process: no event to await, poll its port
        finally:
            client.close()
        raise TimeoutError(f"secantusd did not answer on port {self.port} in {timeout}s")

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown takes SecantusDB 3-8 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[SecantusProcess]:
    require_secantus()
    server = SecantusProcess().start()
    yield server
    server.stop()


@pytest.fixture(params=STORES)
def store_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes URLs of fresh, empty stores of one kind (a file, or a database)."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path}/history-{uuid.uuid4().hex[:8]}/jobs.db"
    server: SecantusProcess = request.getfixturevalue("mongo_server")
    return lambda: server.url(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def open_stores(store_urls: Callable[[], str]) -> AsyncIterator[StoreOpener]:
    """Opens stores (a fresh one, or ``url``) and closes and drops them after the test."""
    opened: list[Store] = []

    async def opener(url: str | None = None) -> Store:
        store = await open_store(url or store_urls())
        opened.append(store)
        return store

    yield opener
    for store in opened:
        jobs = getattr(store, "jobs", None)  # the Mongo store's collection: free the server's RAM
        if jobs is not None:
            await jobs.database.client.drop_database(jobs.database.name)
        await store.close()


@pytest.fixture
def store_url(store_urls: Callable[[], str]) -> str:
    """The URL of the test's ``store``, for another process to open."""
    return store_urls()


@pytest.fixture
async def store(open_stores: StoreOpener, store_url: str) -> Store:
    return await open_stores(store_url)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(find_server(), tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
async def redis(redis_proc: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_proc.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys("cv")


@pytest.fixture
def settings() -> Settings:
    return Settings(events_maxlen=100_000)


@pytest.fixture
def broker(redis: Redis, keys: Keys, settings: Settings) -> Broker:
    return Broker(redis, keys, settings)


@pytest.fixture
async def start_recorder(
    redis: Redis, keys: Keys, settings: Settings
) -> AsyncIterator[StartRecorder]:
    """Starts recorders as tasks (quick to notice queues and retry a store); stops them after
    the test and surfaces their errors."""
    running: list[tuple[Recorder, asyncio.Task[None]]] = []

    def start(store: Store, name: str = "r1", **options: Any) -> Recorder:
        options = {"block_ms": 200, "discover_seconds": 0.1, "max_backoff_seconds": 0.5,
                   **options}
        recorder = Recorder(redis, keys, store, settings, name, **options)
        running.append((recorder, asyncio.create_task(recorder.run())))
        return recorder

    yield start
    for recorder, _ in running:
        recorder.stop()
    for _, task in running:
        await asyncio.wait_for(task, 10)
