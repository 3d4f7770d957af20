"""Cron: due ticks and misfire policies, DST, and exactly-once ticks across a leader kill."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis

from conveyor import Conveyor
from conveyor.embedded import RedisServer
from conveyor.errors import ValidationError
from conveyor.scheduler.cron import Schedule, due_ticks, parse_schedule
from conveyor.scheduler.service import LEADER_LOCK
from tests.procs import ROOT, wait_for, worker_env

S = 1000


def every_second(misfire: str) -> Schedule:
    return Schedule(name="s", type="t", cron="* * * * * *", misfire=misfire, max_catchup=3)


@pytest.mark.parametrize(("misfire", "expected"), [
    ("skip", [99, 100]),
    ("once", [98, 99, 100]),
    ("all", [96, 97, 98, 99, 100]),
])
def test_misfire_policies(misfire: str, expected: list[int]) -> None:
    # Last tick at 90 s, now 100 s, grace 1.5 s: 91..98 were missed (more than the bound of
    # 3 for "all"), 99 and 100 are on time.
    ticks = due_ticks(every_second(misfire), 90 * S, 100 * S, 1500)
    assert ticks == [t * S for t in expected]


def test_a_new_schedule_does_not_catch_up() -> None:
    assert due_ticks(every_second("all"), None, 100 * S, 1500) == [99 * S, 100 * S]


def test_dst_spring_forward_and_fall_back() -> None:
    paris = ZoneInfo("Europe/Paris")
    daily = Schedule(name="d", type="t", cron="30 2 * * *", tz="Europe/Paris")
    start = int(datetime(2026, 3, 28, 12, tzinfo=paris).timestamp() * 1000)
    end = int(datetime(2026, 3, 31, 12, tzinfo=paris).timestamp() * 1000)
    runs = [datetime.fromtimestamp(t / 1000, paris) for t in daily.ticks_after(start, end, 10)]
    # 02:30 does not exist on 29 March: it runs once, at the shift, not zero or two times.
    assert [r.day for r in runs] == [29, 30, 31]
    hourly = Schedule(name="h", type="t", cron="0 * * * *", tz="Europe/Paris")
    start = int(datetime(2026, 10, 25, 0, 30, tzinfo=paris).timestamp() * 1000)
    ticks = hourly.ticks_after(start, start + 4 * 3600 * S, 10)
    # The repeated hour runs twice (two real instants), one hour apart.
    assert [b - a for a, b in itertools.pairwise(ticks)] == [3600 * S] * (len(ticks) - 1)
    assert len(ticks) == 4


def test_bad_schedules_are_refused_with_the_field() -> None:
    with pytest.raises(ValidationError) as bad_cron:
        parse_schedule({"name": "n", "type": "t", "cron": "every day"})
    assert bad_cron.value.field == "cron"
    with pytest.raises(ValidationError) as bad_tz:
        parse_schedule({"name": "n", "type": "t", "cron": "* * * * *", "tz": "Mars/Olympus"})
    assert bad_tz.value.field == "tz"


async def test_schedule_book_round_trip_and_fire(app: Conveyor) -> None:
    @app.job(queue="q")
    async def report(kind: str) -> None:
        return None

    book = app.schedules
    await book.put(parse_schedule({"name": "nightly", "type": "report", "cron": "0 3 * * *",
                                   "args": {"kind": "full"}}))
    assert [s.name for s in await book.all()] == ["nightly"]
    paused = await book.set_paused("nightly", True)
    assert paused.paused
    schedule = await book.get("nightly")
    first = await book.fire(schedule, [1000, 2000])
    again = await book.fire(schedule, [2000])
    assert again == first[1:]  # the same tick is the same job
    assert await book.last_ticks() == {"nightly": 2000}
    with pytest.raises(ValidationError):
        await book.put(parse_schedule({"name": "x", "type": "report", "cron": "* * * * *",
                                       "args": {"kind": 5}}))


def start_scheduler(url: str) -> subprocess.Popen[bytes]:
    env = worker_env(url, scheduler_lease_seconds=1.0)
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "scheduler", "tests.apps.cron:app", "--no-history"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_leader_killed_mid_minute_every_tick_fires_exactly_once(any_redis: RedisServer) -> None:
    client = sync_redis.Redis.from_url(any_redis.url, decode_responses=True)
    app = Conveyor(redis_url=any_redis.url)
    lock_key = app.keys.glob.lock(LEADER_LOCK)
    stream = app.keys.queue("cron").events
    procs = [start_scheduler(any_redis.url), start_scheduler(any_redis.url)]
    try:
        holder = str(wait_for(lambda: client.get(lock_key), 20, "a leader"))
        wait_for(lambda: client.xlen(stream) >= 3, 20, "the first ticks")
        leader_pid = int(holder.split(" ", maxsplit=1)[0].rsplit("-", 2)[1])
        os.kill(leader_pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: (client.get(lock_key) or holder) != holder, 20, "a new leader")
        wait_for(lambda: time.time() > killed_at + 4, 10, "ticks after the fail-over")
        time.sleep(1.2)  # let the last on-time tick land before we stop the survivor
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
    submitted = [f for _, f in client.xrange(stream) if f["event"] == "submitted"]
    ticks = [json.loads(f["meta"])["tick"] for f in submitted]
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    ticks.sort()
    assert [b - a for a, b in itertools.pairwise(ticks)] == [S] * (len(ticks) - 1), \
        "a tick was skipped"
    assert ticks[-1] / 1000 > killed_at + 3  # ticks kept coming after the kill
