"""Searching the history by a top-level argument (``args.order_id=42``) and by a job id
prefix, on every store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conveyor.store import JobQuery, Store, open_store, sqlite
from tests.store.helpers import ev


async def _jobs(store: Store) -> None:
    events = []
    for i in range(30):
        args = {"order_id": i % 10, "customer": f"c{i % 3}", "flag": i % 2 == 0,
                "nested": {"order_id": 99}}
        events.append(ev(f"job-{i:03d}", "submitted", 1, 1000 + i, attempt=0,
                         args=orjson.dumps(args).decode(), max_attempts=1, due=1000 + i))
    await store.apply(events)


async def test_equality_on_a_top_level_argument(store: Store) -> None:
    await _jobs(store)
    page = await store.search(JobQuery(args={"order_id": 4}))
    assert [j.id for j in page.items] == ["job-024", "job-014", "job-004"]
    both = await store.search(JobQuery(args={"order_id": 4, "customer": "c2"}))
    assert [j.id for j in both.items] == ["job-014"]
    assert (await store.search(JobQuery(args={"flag": True, "order_id": 3}))).items == []
    assert len((await store.search(JobQuery(args={"flag": False}))).items) == 15
    assert (await store.search(JobQuery(args={"order_id": "4"}))).items == []  # a string
    assert (await store.search(JobQuery(args={"order_id": 99}))).items == []  # nested only


async def test_argument_search_pages_with_its_cursor(store: Store) -> None:
    await _jobs(store)
    first = await store.search(JobQuery(args={"customer": "c0"}, limit=4))
    assert [j.id for j in first.items] == ["job-027", "job-024", "job-021", "job-018"]
    rest: list[str] = []
    cursor = first.next_cursor
    while cursor:
        page = await store.search(JobQuery(args={"customer": "c0"}, limit=4, cursor=cursor))
        rest += [j.id for j in page.items]
        cursor = page.next_cursor
    assert rest == ["job-015", "job-012", "job-009", "job-006", "job-003", "job-000"]


async def test_a_job_id_prefix(store: Store) -> None:
    await _jobs(store)
    page = await store.search(JobQuery(id_prefix="job-01"))
    assert [j.id for j in page.items] == [f"job-01{i}" for i in range(9, -1, -1)]
    assert (await store.search(JobQuery(id_prefix="nope"))).items == []


async def test_the_sqlite_scan_is_bounded_and_its_cursor_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "ARGS_SCAN_ROWS", 4)
    async with await open_store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        await _jobs(store)
        found: list[str] = []
        page = await store.search(JobQuery(args={"order_id": 4}))
        pages = 1
        while True:
            found += [j.id for j in page.items]
            if page.next_cursor is None:
                break
            page = await store.search(JobQuery(args={"order_id": 4}, cursor=page.next_cursor))
            pages += 1
        assert found == ["job-024", "job-014", "job-004"]
        assert pages >= 30 // 4  # each page looked at 4 jobs at most
