"""Redis away for longer than every client retry window (12, 15 and 30 s: SIGTERM, then a start on
the same port and AOF), with a worker and a scheduler running a per-second cron job.

- the worker comes back by itself: it beats again, claims, renews and acknowledges, nothing
  accepted is lost, and only jobs a reaper requeued (their lease ran out in the dark) run
  twice;
- the scheduler comes back by itself: cron fires again within 8 s of Redis answering, and
  every tick of the run is accounted for (fired once, or missed in the outage and coalesced
  by ``misfire="once"``) - see ``chaos.ticks``.
"""

from __future__ import annotations

import signal

import pytest
from chaos.ticks import account

from chaos import redis_faults
from tests.faults.rig import FAST, LEASE, Rig, wait_for

REFIRE_S = 8.0
DEFAULT_LIVENESS = {k: v for k, v in FAST.items() if k.startswith("backoff")}


@pytest.mark.timeout(120)
def test_worker_comes_back_after_a_long_outage(rig: Rig) -> None:
    worker, wid = rig.worker(concurrency=10)
    before = rig.submit(100, ms=200)
    wait_for(lambda: len(rig.runs()) >= 10, 30, "jobs to be running")
    down = rig.redis_ms()

    redis_faults.outage(rig.server, 12.0)

    rig.assert_heartbeats(wid, worker)
    after = rig.submit(1, ms=int((LEASE + 2) * 1000)) + rig.submit(20, ms=20)
    rig.wait_ended(before + after, 60, worker)
    rig.assert_alive(worker)
    rig.assert_ran_once_but(before + after, rig.requeued_since(down))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seconds", [15.0, 30.0])
def test_cron_fires_again_after_a_long_outage_and_accounts_for_every_tick(
    rig: Rig, seconds: float
) -> None:
    # Production liveness (lease 30 s, heartbeat TTL 5 s): no cron job's lease runs out in
    # the outage, so none may run twice.
    worker, _ = rig.worker(concurrency=10, settings=DEFAULT_LIVENESS)
    scheduler = rig.scheduler(settings=DEFAULT_LIVENESS)
    wait_for(lambda: len(rig.tick_runs()) >= 3, 30, "the cron job to run")
    down = rig.redis_ms()

    redis_faults.outage(rig.server, seconds)  # past the scheduler's lease and misfire grace

    up = rig.redis_ms()
    try:
        wait_for(lambda: rig.last_tick() >= up - 1000, REFIRE_S, "cron to fire again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the scheduler logged:\n{rig.log(scheduler)}") from None
    wait_for(lambda: rig.last_tick() >= up + 3000, 10, "a few more ticks after the recovery")
    rig.assert_alive(scheduler)
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(30) == 0, rig.log(scheduler)
    wait_for(lambda: {j.status for j in rig.cron_jobs()} == {"completed"}, 30,
             "every cron job to complete")
    report = account(rig.cron_jobs(), [(down, up)], REFIRE_S)
    assert report.ok, f"{report.problems}\n{report}"
    assert report.coalesced > 0  # the outage outlasted the grace: 'once' covered a gap
    rig.assert_alive(worker)
