"""Choosing a store by URL, and what is particular to each backend."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from conveyor.store import StoreConfigError, open_store, sqlite_path
from conveyor.store.mongo import MongoStore, write_concern
from conveyor.store.sqlite import SqliteStore
from tests.store.conftest import SecantusProcess, require_secantus
from tests.store.helpers import lifecycle, wait_until


async def test_relative_sqlite_path_creates_its_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///.conveyor/deep/history.db")
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / ".conveyor" / "deep" / "history.db").is_file()
    finally:
        await store.close()


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///rel/h.db") == "rel/h.db"
    assert sqlite_path("sqlite:////abs/h.db") == "/abs/h.db"
    for bad in ("sqlite://h.db", "sqlite:///", "sqlite:///:memory:", "sqlite:///h.db?x=1"):
        with pytest.raises(StoreConfigError, match="sqlite:///"):
            sqlite_path(bad)


async def test_unknown_scheme_says_what_to_use() -> None:
    with pytest.raises(StoreConfigError, match=r"sqlite:///.*mongodb://"):
        await open_store("postgres://localhost/db")


async def test_missing_mongo_driver_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "conveyor.store.mongo")
    with pytest.raises(StoreConfigError, match=r"pip install 'conveyor\[mongo\]'"):
        await open_store("mongodb://127.0.0.1:1/x")


def test_majority_write_concern_when_the_url_names_a_replica_set() -> None:
    majority = {"w": "majority"}
    assert write_concern("mongodb://a,b,c/db?replicaSet=rs0").document == majority  # type: ignore[union-attr]
    assert write_concern("mongodb+srv://cluster.example.net/db").document == majority  # type: ignore[union-attr]
    assert write_concern("mongodb://a/db") is None
    assert write_concern("mongodb://a,b/db?replicaSet=rs0&w=1") is None  # the URL decides


async def test_mongo_store_writes_majority_and_keeps_retention_in_its_ttl_index(
    mongo_server: SecantusProcess,
) -> None:
    url = mongo_server.url("retention")
    first = await open_store(url, retention_days=30)
    assert isinstance(first, MongoStore)
    assert first.jobs.write_concern.document == {"w": "majority"}
    await first.close()
    second = await open_store(url, retention_days=2)  # the index changes in place
    assert isinstance(second, MongoStore)
    try:
        indexes = {i["name"]: i async for i in await second.jobs.list_indexes()}
        assert indexes["ended_at_ttl"]["expireAfterSeconds"] == 2 * 86_400
    finally:
        await second.client.drop_database("retention")
        await second.close()


async def test_mongo_ttl_index_removes_only_ended_jobs() -> None:
    """Retention enforced by the server itself. The in-process SecantusDB is the one form
    that sweeps TTL indexes every second rather than every minute."""
    require_secantus()
    from secantus.server import SecantusDBServer

    server = SecantusDBServer(storage_path=":memory:", port=0, ttl_sweep_seconds=1)
    server.start()
    host, port = server.address
    store = await open_store(f"mongodb://{host}:{port}/ttl?directConnection=true",
                             retention_days=1 / 86_400)  # one second
    try:
        now = int(time.time() * 1000)
        await store.apply(lifecycle("old", t0=now - 60_000) + lifecycle("running")[:2])

        async def purged() -> bool:
            return await store.get_job("old") is None

        await wait_until(purged, 15, "the TTL monitor to delete the ended job")
        assert await store.get_job("running") is not None
    finally:
        await store.close()
        await asyncio.to_thread(server.stop)
