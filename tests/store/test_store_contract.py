"""The contract every history store keeps, run against each (SQLite, and MongoDB over a real
connection to SecantusDB)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import pytest

from conveyor.job import Status
from conveyor.store import JobQuery, Store, StoredJob
from tests.store.conftest import StoreOpener
from tests.store.helpers import err, ev, lifecycle


async def test_lifecycle_is_recorded_with_its_attempts(store: Store) -> None:
    meta = {"tenant": "acme", "api_key_id": "k1", "idempotency_key": "order-7"}
    await store.apply(lifecycle("j1", meta=meta))
    job = await store.get_job("j1")
    assert job is not None and job.attempts is not None
    assert (job.status, job.queue, job.type, job.priority) == (Status.COMPLETED, "q", "t", "high")
    assert (job.args, job.result, job.attempt, job.max_attempts) == ({"n": 1}, {"ok": 1}, 2, 3)
    assert (job.tenant, job.api_key_id, job.idempotency_key) == ("acme", "k1", "order-7")
    assert (job.submitted_ms, job.scheduled_ms, job.due_ms) == (1000, 1000, 4000)
    assert (job.first_started_ms, job.started_ms, job.finished_ms) == (2000, 5000, 7000)
    assert job.worker == "w2" and job.seq == 6 and job.error is not None
    assert job.error.message == "first j1"
    first, second = job.attempts
    assert (first.attempt, first.worker, first.started_ms, first.finished_ms) == (
        1, "w1", 2000, 3000)
    assert first.outcome == "retrying" and first.error is not None
    assert (first.error.type, first.error.message, first.traceback) == (
        "ValueError", "first j1", "tb first j1")
    assert (second.attempt, second.worker, second.outcome, second.duration_ms) == (
        2, "w2", "completed", 2000)


async def test_applying_twice_changes_nothing(store: Store) -> None:
    events = lifecycle("j1", end="dead")
    await store.apply(events)
    once = await store.get_job("j1")
    await store.apply(events)
    await store.apply(events[2:4])
    assert await store.get_job("j1") == once
    assert once is not None and once.attempts is not None and len(once.attempts) == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_out_of_order_batches_end_where_in_order_does(
    open_stores: StoreOpener, seed: int
) -> None:
    jobs = [f"j{i}" for i in range(6)]
    events = [e for i, j in enumerate(jobs)
              for e in lifecycle(j, end=("completed", "dead", "canceled")[i % 3])]
    in_order, shuffled = await open_stores(), await open_stores()
    await in_order.apply(events)
    events = events[:]
    random.Random(seed).shuffle(events)
    for i in range(0, len(events), 5):
        await shuffled.apply(events[i:i + 5])
    assert [await shuffled.get_job(j) for j in jobs] == [await in_order.get_job(j) for j in jobs]


async def test_an_old_event_never_moves_a_job_backwards(store: Store) -> None:
    events = lifecycle("j1")
    await store.apply(events[-1:])  # completed arrives first
    await store.apply(events[:-1])
    job = await store.get_job("j1")
    assert job is not None and job.status == Status.COMPLETED and job.finished_ms == 7000
    assert job.result == {"ok": 1} and job.started_ms == 5000 and job.worker == "w2"
    assert job.args == {"n": 1} and job.submitted_ms == 1000


async def test_job_known_only_from_late_events_gets_a_submission_time(store: Store) -> None:
    await store.apply([ev("j1", "active", 7, 7000, attempt=1, worker="w")])
    job = await store.get_job("j1")
    assert job is not None and job.submitted_ms == 7000 and job.status == Status.ACTIVE
    page = await store.search(JobQuery())
    assert [j.id for j in page.items] == ["j1"]


async def test_canceling_a_waiting_job_leaves_its_last_attempt_alone(store: Store) -> None:
    events = lifecycle("j1")[:4]  # ... retrying(1), queued
    events.append(ev("j1", "canceled", 5, 9000, attempt=1))
    await store.apply(events)
    job = await store.get_job("j1")
    assert job is not None and job.attempts is not None
    assert job.status == Status.CANCELED and job.finished_ms == 9000
    assert [a.outcome for a in job.attempts] == ["retrying"]


async def test_requeue_release_retry_cancel_and_progress(store: Store) -> None:
    await store.apply([
        ev("j1", "submitted", 1, attempt=0, args="{}", max_attempts=1, due=1000, meta="{}"),
        ev("j1", "active", 2, attempt=1, worker="w1"),
        ev("j1", "progress", 3, attempt=1, progress="0.5", message="half"),
        ev("j1", "requeued", 4, attempt=1, worker="w1", reason="worker lost"),
        ev("j1", "active", 5, attempt=2, worker="w2"),
        ev("j1", "released", 6, attempt=2, reason="shutdown"),
        ev("j1", "active", 7, attempt=3, worker="w3"),
        ev("j1", "progress", 8, attempt=3, progress="0.25", message=""),
        ev("j1", "cancel_requested", 9, attempt=3),
    ])
    job = await store.get_job("j1")
    assert job is not None and job.attempts is not None
    assert (job.status, job.progress, job.cancel_requested) == (Status.ACTIVE, 0.25, True)
    assert [(a.outcome, a.reason) for a in job.attempts] == [
        ("requeued", "worker lost"), ("released", "shutdown"), (None, None)]
    await store.apply([
        ev("j1", "dead", 10, attempt=3, worker="w3", error=err("no")),
        ev("j1", "retried", 11, attempt=3),
    ])
    job = await store.get_job("j1")
    assert job is not None
    assert (job.status, job.finished_ms, job.cancel_requested) == (Status.QUEUED, None, False)


async def test_a_new_life_keeps_the_old_attempts_apart(store: Store) -> None:
    """Recovery enqueues a lost job again: its events count seq from 1 again."""
    await store.apply(lifecycle("j1")[:5])  # active in attempt 2 when Redis lost it
    await store.begin_new_life(["j1", "unknown"])
    await store.apply([
        ev("j1", "submitted", 1, 50_000, attempt=0, args='{"n": 1}', due=50_000, meta="{}"),
        ev("j1", "active", 2, 51_000, attempt=1, worker="w9"),
        ev("j1", "completed", 3, 52_000, attempt=1, worker="w9", result="1"),
    ])
    job = await store.get_job("j1")
    assert job is not None and job.attempts is not None
    assert (job.status, job.attempt, job.result, job.incarnation) == (Status.COMPLETED, 1, 1, 1)
    assert (job.submitted_ms, job.finished_ms, job.seq) == (50_000, 52_000, 3)
    assert [(a.incarnation, a.attempt, a.outcome) for a in job.attempts] == [
        (0, 1, "retrying"), (0, 2, "lost"), (1, 1, "completed")]
    assert await store.get_job("unknown") is None


async def test_deferred_ends_an_attempt_and_parent_failure_cancels_at_once(
    store: Store
) -> None:
    await store.apply([
        ev("j1", "submitted", 1, attempt=0, args="{}", due=1000, meta="{}"),
        ev("j1", "active", 2, attempt=1, worker="w1"),
        ev("j1", "deferred", 3, status="delayed", attempt=1, reason="rate", due=9000),
        ev("child", "submitted", 1, 4000, status="canceled", attempt=0, args="{}", due=4000,
           meta="{}"),
    ])
    job = await store.get_job("j1")
    assert job is not None and job.attempts is not None
    assert (job.status, job.due_ms) == (Status.DELAYED, 9000)
    assert [(a.outcome, a.reason) for a in job.attempts] == [("deferred", "rate")]
    child = await store.get_job("child")
    assert child is not None and (child.status, child.finished_ms) == (Status.CANCELED, 4000)


async def test_deleted_jobs_leave_listings_but_stay_readable(store: Store) -> None:
    await store.apply(lifecycle("j1", end="dead") + lifecycle("j2", end="dead"))
    await store.apply([ev("j1", "deleted", 7, 9000, status="dead")])
    assert [j.id for j in (await store.search(JobQuery())).items] == ["j2"]
    assert (await store.count_by_status())["dead"] == 1
    job = await store.get_job("j1")
    assert job is not None and job.deleted_ms == 9000


async def _three_queues(store: Store) -> None:
    events = []
    for i in range(30):
        end = ("completed", "dead", "canceled")[i % 3]
        events += lifecycle(f"j{i:02d}", queue=f"q{i % 2}", t0=i * 100_000, end=end,
                            type="email" if i < 10 else "report",
                            meta={"tenant": "acme", "api_key_id": f"k{i % 2}"} if i % 5 == 0
                            else {})
    events += [ev("w1", "submitted", 1, 5_000_000, queue="q0", attempt=0, args="{}", due=0,
                  meta="{}")]
    await store.apply(events)


async def test_search_filters(store: Store) -> None:
    await _three_queues(store)

    async def ids(**kw: object) -> list[str]:
        return [j.id for j in (await store.search(JobQuery(limit=500, **kw))).items]

    assert len(await ids()) == 31
    assert await ids(status=[Status.QUEUED]) == ["w1"]
    assert set(await ids(status=[Status.DEAD, Status.CANCELED])) == {
        f"j{i:02d}" for i in range(30) if i % 3}
    assert set(await ids(queue="q1", status=[Status.COMPLETED])) == {"j03", "j09", "j15", "j21",
                                                                   "j27"}
    assert set(await ids(type="email")) == {f"j{i:02d}" for i in range(10)}
    assert set(await ids(type=["email"])) == {f"j{i:02d}" for i in range(10)}
    assert set(await ids(type=["email", "t"])) == {f"j{i:02d}" for i in range(10)} | {"w1"}
    assert set(await ids(type=["report", "email"], queue="q0", status=[Status.COMPLETED])) == {
        "j00", "j06", "j12", "j18", "j24"}
    assert set(await ids(tenant="acme")) == {"j00", "j05", "j10", "j15", "j20", "j25"}
    assert set(await ids(api_key_id="k1")) == {"j05", "j15", "j25"}
    assert await ids(text="BOOM J07") == ["j07"]
    assert await ids(text="boom j0", sort="finished_ms", descending=False) == [
        "j01", "j04", "j07"]
    assert set(await ids(text="first")) == {f"j{i:02d}" for i in range(30)}
    assert await ids(text="100%_") == []
    window = await ids(since_ms=1_000_000, until_ms=1_300_000)
    assert window == ["j12", "j11", "j10"]  # submitted at 1_001_000, 1_101_000, 1_201_000


@pytest.mark.parametrize("statuses", [None, [Status.DEAD, Status.CANCELED]])
async def test_pages_cover_every_job_once_in_order(
    store: Store, statuses: list[Status] | None
) -> None:
    await _three_queues(store)
    for sort, descending in itertools.product(
        ("submitted_ms", "updated_ms", "finished_ms"), (True, False)
    ):
        query = JobQuery(limit=7, sort=sort, descending=descending, status=statuses)
        seen: list[StoredJob] = []
        while True:
            page = await store.search(query)
            seen += page.items
            assert all(j.attempts is None for j in page.items)
            if page.next_cursor is None:
                break
            query = query.model_copy(update={"cursor": page.next_cursor})
        values = [(getattr(j, sort), j.id) for j in seen]
        assert values == sorted(values, reverse=descending)
        assert len(seen) == (20 if statuses else 30 if sort == "finished_ms" else 31)


async def test_a_bad_cursor_says_what_to_do(store: Store) -> None:
    with pytest.raises(ValueError, match="next_cursor"):
        await store.search(JobQuery(cursor="nonsense"))


async def test_counts_by_status(store: Store) -> None:
    await _three_queues(store)
    assert await store.count_by_status() == {
        "delayed": 0, "queued": 1, "active": 0, "completed": 10, "retrying": 0, "dead": 10,
        "canceled": 10}
    q1 = await store.count_by_status(queue="q1")
    assert (q1["completed"], q1["dead"], q1["canceled"], q1["queued"]) == (5, 5, 5, 0)


async def test_time_series(store: Store) -> None:
    await _three_queues(store)
    # Job i ends at i*100_000 + 7000 after a 2000 ms attempt; first pickup 1000 ms after due.
    buckets = await store.time_series(0, 3_000_000, 1_000_000)
    assert [b.start_ms for b in buckets] == [0, 1_000_000, 2_000_000]
    assert [(b.completed, b.failed, b.canceled) for b in buckets] == [(4, 3, 3), (3, 4, 3),
                                                                      (3, 3, 4)]
    assert {(b.duration_p50, b.duration_p99, b.pickup_p50, b.pickup_p95) for b in buckets} == {
        (2000.0, 2000.0, 1000.0, 1000.0)}
    q0 = await store.time_series(0, 1_000_000, 500_000, queue="q0", type="email")
    assert [(b.completed, b.failed, b.canceled) for b in q0] == [(1, 1, 1), (1, 0, 1)]
    with pytest.raises(ValueError, match="interval"):
        await store.time_series(0, 10**12, 1)


async def test_purge_and_retention_remove_only_ended_jobs(store: Store) -> None:
    await _three_queues(store)
    assert await store.purge(1_000_000) == 10  # ended at i*100_000 + 7000 for i < 10
    assert await store.get_job("j05") is None and await store.get_job("j10") is not None
    store.retention_days = 1
    assert await store.apply_retention(now_ms=86_400_000 + 2_000_000) == 10
    assert await store.apply_retention(now_ms=10**13) == 10
    assert [j.id for j in (await store.search(JobQuery())).items] == ["w1"]


async def test_unfinished_lists_what_recovery_needs(store: Store) -> None:
    events = lifecycle("done") + lifecycle("gone")[:2] + [
        ev("gone", "deleted", 3, status="active"),
        ev("a", "submitted", 1, attempt=0, args="{}", due=1000, meta="{}"),
        ev("a", "active", 2, attempt=1, worker="w"),
        ev("d", "submitted", 1, status="delayed", attempt=0, args="{}", due=99_000, meta="{}"),
        ev("r", "retrying", 4, attempt=1, worker="w", error=err("x"), due=7000, queue="other"),
        ev("q", "submitted", 1, attempt=0, args="{}", due=1000, meta="{}"),
    ]
    await store.apply(events)
    found = {j.id: j.status.value async for j in store.unfinished()}
    assert found == {"a": "active", "d": "delayed", "r": "retrying", "q": "queued"}
    assert [j.id async for j in store.unfinished(queue="other")] == ["r"]


async def test_concurrent_writers_lose_no_update(
    open_stores: StoreOpener, store_urls: Callable[[], str]
) -> None:
    """Two store objects (as two recorders would) folding events of the same jobs at once."""
    url = store_urls()
    first, second = await open_stores(url), await open_stores(url)
    events = [e for i in range(20) for e in lifecycle(f"j{i}")]
    random.Random(7).shuffle(events)
    halves = events[::2], events[1::2]
    await asyncio.gather(*(
        s.apply(half[i:i + 10]) for s, half in zip((first, second), halves, strict=True)
        for i in range(0, len(half), 10)))
    for i in range(20):
        job = await first.get_job(f"j{i}")
        assert job is not None and job.attempts is not None
        assert (job.status, job.seq, len(job.attempts)) == (Status.COMPLETED, 6, 2)
