"""How the SQLite store writes a batch: a stored job's row is updated in only the columns its
events changed, a job's events of one batch make one row write, and the indexes, the error
full-text index and the results stay what writing whole rows gave."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conveyor.broker.broker import Broker
from conveyor.broker.keys import Keys
from conveyor.job import Status
from conveyor.store import JobQuery, Store, open_store
from conveyor.store.sqlite import SqliteStore
from tests.store.conftest import StartRecorder
from tests.store.helpers import caught_up, ev, lifecycle, submit, wait_until, work

Statements = list[str]
Opener = Callable[[str], Awaitable[SqliteStore]]


@pytest.fixture
async def sqlite_stores(tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens SQLite stores by name in the test's folder; closes them after it."""
    opened: list[Store] = []

    async def opener(name: str) -> SqliteStore:
        store = await open_store(f"sqlite:///{tmp_path}/{name}.db")
        assert isinstance(store, SqliteStore)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


async def traced(store: SqliteStore) -> Statements:
    """Every statement the store's writer runs from now on (each row of an executemany),
    with its values filled in."""
    seen: Statements = []
    await store._writer.set_trace_callback(seen.append)
    return seen


def writes(statements: Statements, table: str) -> list[str]:
    """The row writes to ``table``; each once (SQLite traces a statement it had to prepare
    again, after the schema changed, twice)."""
    found = [s for s in statements if re.match(rf"(INSERT INTO|UPDATE) {table} ", s)]
    return list(dict.fromkeys(found))


def set_columns(update: str) -> set[str]:
    assignments = update.split(" SET ", 1)[1].rsplit(" WHERE id = ", 1)[0]
    return set(re.findall(r"(?:^|, )(\w+) = ", assignments))


async def test_a_batch_updates_only_what_its_events_changed(sqlite_stores: Opener) -> None:
    store = await sqlite_stores("h")
    submitted = [lifecycle(j)[0] for j in ("j1", "j2")]
    await store.apply(submitted)
    seen = await traced(store)
    # Both jobs' active and completed events in one batch: one row write per job and table.
    await store.apply([ev(j, e, seq, attempt=1, worker="w1", **extra)
                       for j in ("j1", "j2")
                       for e, seq, extra in (("active", 2, {}),
                                             ("completed", 3, {"result": '{"ok": 1}'}))])
    jobs, docs = writes(seen, "jobs"), writes(seen, "job_docs")
    assert len(jobs) == 2 and len(docs) == 2, seen
    assert all(s.startswith("UPDATE") for s in jobs + docs)
    changed = set_columns(jobs[0])
    assert {"status", "attempt", "worker", "started_ms", "finished_ms", "seq"} <= changed
    # Unchanged columns (and the indexes on them) are left alone.
    assert not changed & {"id", "queue", "type", "priority", "submitted_ms", "error_text"}
    assert set_columns(docs[0]) <= {"result", "attempts", "versions"}

    whole = await sqlite_stores("whole")
    await whole.apply([e for j in ("j1", "j2") for e in lifecycle(j)[:1]]
                      + [ev(j, e, seq, attempt=1, worker="w1", **extra)
                         for j in ("j1", "j2")
                         for e, seq, extra in (("active", 2, {}),
                                               ("completed", 3, {"result": '{"ok": 1}'}))])
    for job in ("j1", "j2"):
        assert await store.get_job(job) == await whole.get_job(job)


async def test_an_unchanged_job_is_not_written(sqlite_stores: Opener) -> None:
    store = await sqlite_stores("h")
    events = lifecycle("j1")
    await store.apply(events)
    seen = await traced(store)
    await store.apply(events[2:4])  # a redelivery: nothing new
    assert writes(seen, "jobs") == [] and writes(seen, "job_docs") == []


async def test_indexes_and_error_search_follow_updates(sqlite_stores: Opener) -> None:
    """Jobs written event by event (every write after the first an update of a few columns)
    answer every query as jobs written whole do, and SQLite finds both files intact."""
    ends = ("completed", "dead", "canceled")
    events = [e for i in range(9)
              for e in lifecycle(f"j{i}", t0=10_000 * i, end=ends[i % 3], type=f"t{i % 2}")]
    by_event, whole = await sqlite_stores("by_event"), await sqlite_stores("whole")
    for e in events:
        await by_event.apply([e])
    await whole.apply(events)

    queries = [JobQuery(), JobQuery(status=[Status.DEAD]), JobQuery(text="boom"),
               JobQuery(text="first j4"), JobQuery(type="t1", sort="finished_ms"),
               JobQuery(status=[Status.COMPLETED, Status.CANCELED], sort="updated_ms")]
    for query in queries:
        assert await by_event.search(query) == await whole.search(query), query
    assert (await by_event.search(JobQuery(text="boom"))).items  # the dead jobs' errors
    assert await by_event.count_by_status() == await whole.count_by_status()
    assert (await by_event.time_series(0, 100_000, 10_000)
            == await whole.time_series(0, 100_000, 10_000))
    for store in (by_event, whole):
        async with store._writer.execute("PRAGMA integrity_check") as cur:
            assert await cur.fetchall() == [("ok",)]
        await store._writer.execute(
            "INSERT INTO job_errors(job_errors) VALUES ('integrity-check')")


async def test_recorder_folds_a_jobs_events_of_one_batch_into_one_row_write(
    sqlite_stores: Opener, redis: Redis, keys: Keys, broker: Broker,
    start_recorder: StartRecorder,
) -> None:
    """Events already in the stream (submitted, active, completed of each job) are read in
    one batch and give one row write per job and table."""
    ids = await submit(redis, broker, "emails", 40)
    await work(broker, "emails", "w1", fail=lambda i: False)
    store = await sqlite_stores("h")
    seen = await traced(store)
    recorder = start_recorder(store)

    async def recorded() -> bool:
        return recorder.stats.events == 3 * len(ids)

    await wait_until(recorded, 20, "every event recorded")
    await caught_up(store, redis, keys, dict.fromkeys(ids, "emails"))
    assert recorder.stats.batches == 1
    assert len(writes(seen, "jobs")) == len(ids) == len(writes(seen, "job_docs"))


async def test_a_job_written_again_is_not_read_back(sqlite_stores: Opener) -> None:
    """The writer keeps the rows it committed: a job's next batch needs no SELECT."""
    store = await sqlite_stores("h")
    events = lifecycle("j1")
    await store.apply(events[:2])
    seen = await traced(store)
    await store.apply(events[2:])
    assert not [s for s in seen if s.startswith("SELECT")]
    assert len(writes(seen, "jobs")) == 1


async def test_rows_another_connection_wrote_are_read_again(sqlite_stores: Opener) -> None:
    """Two stores on one file (two recorders): each sees what the other committed, so
    neither overwrites the other's events with rows it kept from before."""
    first = await sqlite_stores("h")
    second = await sqlite_stores("h")
    events = lifecycle("j1", end="dead")
    await first.apply(events[:2])
    await second.apply(events[2:4])  # the retry, by the other recorder
    await first.apply(events[4:])
    whole = await sqlite_stores("whole")
    await whole.apply(events)
    assert await first.get_job("j1") == await whole.get_job("j1")
    job = await first.get_job("j1")
    assert job is not None and job.attempts is not None and len(job.attempts) == 2


async def test_a_purged_job_is_written_anew(sqlite_stores: Opener) -> None:
    """Rows the writer kept are forgotten when it purges them: a late event recreates the
    job instead of updating a row that is gone."""
    store = await sqlite_stores("h")
    events = lifecycle("j1")
    await store.apply(events)
    assert await store.purge(before_ms=10**15) == 1
    await store.apply([ev("j1", "deleted", 9)])
    job = await store.get_job("j1")
    assert job is not None and job.deleted_ms == 9000


async def test_a_batch_that_failed_is_applied_again_in_full(sqlite_stores: Opener) -> None:
    """A batch that fails (the file locked by another process's writer) changes nothing,
    kept rows included: the retry ends where one attempt would have."""
    store = await sqlite_stores("h")
    events = lifecycle("j1")
    await store.apply(events[:2])
    await store._writer.execute("PRAGMA busy_timeout=0")  # fail at once instead of waiting
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await store.apply(events[2:4])
    locker.execute("ROLLBACK")
    locker.close()
    await store.apply(events[2:])
    whole = await sqlite_stores("whole")
    await whole.apply(events)
    assert await store.get_job("j1") == await whole.get_job("j1")
