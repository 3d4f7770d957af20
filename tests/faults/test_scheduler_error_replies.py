"""The scheduler meets the error replies of an unwell Redis - OOM, READONLY, BUSY, LOADING -
for 6 s, and comes through: the process stays up, cron fires again within 8 s of the reply
going away, and every tick is accounted for (``chaos.ticks``). 6 s outlasts the period of
every loop of the scheduler (cron, reaper, status: 5 s), so each one meets the reply.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from chaos.ticks import account

from chaos import redis_faults
from conveyor.embedded import RedisServer
from tests.faults.rig import Rig, wait_for

FAULT_SECONDS = 6.0  # past the status loop period (5 s): every loop meets the reply
REFIRE_S = 8.0
FAULTS: dict[str, Callable[[RedisServer], object]] = {
    "oom": lambda server: redis_faults.oom(server, FAULT_SECONDS),
    "readonly": lambda server: redis_faults.readonly(server, FAULT_SECONDS),
    "busy": lambda server: redis_faults.busy(server, FAULT_SECONDS),
    "loading": lambda server: redis_faults.loading(server, FAULT_SECONDS),
    "misconf": lambda server: redis_faults.misconf(server, FAULT_SECONDS),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_scheduler_rides_out_error_replies(rig: Rig, fault: str) -> None:
    rig.worker(concurrency=10)
    scheduler = rig.scheduler()
    wait_for(lambda: len(rig.tick_runs()) >= 2, 30, "the cron job to run")
    start = rig.redis_ms()

    FAULTS[fault](rig.server)

    end = rig.redis_ms()
    rig.assert_alive(scheduler)
    try:
        wait_for(lambda: rig.last_tick() >= end, REFIRE_S, "cron to fire again")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (scheduler exit {scheduler.poll()}):\n"
                             f"{rig.log(scheduler)}") from None
    rig.assert_alive(scheduler)
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(30) == 0, rig.log(scheduler)
    wait_for(lambda: {j.status for j in rig.cron_jobs()} == {"completed"}, 30,
             "every cron job to complete")
    report = account(rig.cron_jobs(), [(start, end)], REFIRE_S)
    assert report.ok, report.problems
