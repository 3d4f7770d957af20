"""Property-based testing against the OpenAPI schema: thousands of generated requests (valid
and invalid) over real HTTP; no 5xx, and every response matches the schema (status code,
content type, headers, body)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from conveyor.api import ApiServer, create_app
from conveyor.embedded import RedisServer
from conveyor.store import open_store
from conveyor.worker.worker import Worker
from tests.api.conftest import ADMIN_KEY, UNLIMITED, make_conveyor
from tests.conftest import BINARIES

EXAMPLES_PER_OPERATION = 170
MIN_REQUESTS = 3000
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection,
          checks.ignored_auth, checks.missing_required_header, checks.unsupported_method]
# Not run: positive_data_acceptance, since a schema-valid submission may name a job type
# nobody registered (422 is the right answer), and resource checks that need known ids.
sent = [0]


class LiveApi:
    """The API with a worker, on uvicorn, in an event loop on its own thread (the tests are
    synchronous: schemathesis calls it over HTTP with requests)."""

    def __init__(self, redis_url: str, db: Path) -> None:
        self.redis_url = redis_url
        self.db = db
        self.url = ""
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> LiveApi:
        self.thread.start()
        assert self.ready.wait(30), "the API did not start"
        return self

    def stop(self) -> None:
        assert self.loop is not None and self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        conveyor = make_conveyor(self.redis_url)
        store = await open_store(f"sqlite:///{self.db}")
        server = ApiServer(create_app(conveyor, settings=UNLIMITED, store=store,
                                      admin_key=ADMIN_KEY), "127.0.0.1", 0)
        worker = Worker(conveyor, ["media", "default", "slow"], concurrency=8)
        working = asyncio.create_task(worker.run())
        await server.start()
        await conveyor.enqueue("explode", {"message": "a dead job for the DLQ routes"})
        self.url = server.url
        self.ready.set()
        await self.stop_event.wait()
        await server.stop()
        worker.stop()
        worker.stop()
        await working
        await store.close()
        await conveyor.close()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    base = tmp_path_factory.mktemp("schemathesis")
    redis = RedisServer(BINARIES[-1][1], base / "redis").start()
    api = LiveApi(redis.url, base / "history.db").start()
    yield api
    api.stop()
    redis.kill()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# The document the server serves, built offline (the app connects to nothing until it runs),
# so pytest can list one test per operation at collection time.
schema = schemathesis.openapi.from_dict(create_app(make_conveyor("redis://unused")).openapi())
schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION)
# A schema-violating body over the size cap (10,000 generated ids of junk) is rejected before
# it is parsed, with 413: that is a rejection too.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_conformance(case: schemathesis.Case, live_api: LiveApi,
                     session: requests.Session) -> None:
    sent[0] += 1
    case.call_and_validate(base_url=live_api.url, session=session, checks=CHECKS,
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def test_thousands_of_requests_were_sent() -> None:
    if sent[0] == 0:
        pytest.skip("the conformance test did not run in this session")
    print(f"schemathesis sent {sent[0]} requests")
    assert sent[0] >= MIN_REQUESTS, sent[0]
