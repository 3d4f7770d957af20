"""A worker meets the error replies a production Redis gives while it is unwell - OOM, READONLY,
BUSY, LOADING, MISCONF (a failed snapshot: a full disk) - mid-way through a batch, and comes
through: no accepted job lost, none run twice (the lease outlasts every fault here, so no re-run
is ever needed), its heartbeat lands again, and after the fault it claims, renews (a job longer
than the lease) and acknowledges jobs (DESIGN.md section 9: transient errors to back off from,
never the end of a loop).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chaos import redis_faults
from conveyor.embedded import RedisServer
from tests.faults.rig import LEASE, Rig, wait_for

FAULT_SECONDS = 3.0
FAULTS: dict[str, Callable[[RedisServer], object]] = {
    "oom": lambda server: redis_faults.oom(server, FAULT_SECONDS),
    "readonly": lambda server: redis_faults.readonly(server, FAULT_SECONDS),
    "busy": lambda server: redis_faults.busy(server, FAULT_SECONDS),
    "loading": lambda server: redis_faults.loading(server, 2.5),
    "misconf": lambda server: redis_faults.misconf(server, FAULT_SECONDS),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_worker_rides_out_error_replies(rig: Rig, fault: str) -> None:
    worker, wid = rig.worker(concurrency=10)
    before = rig.submit(150, ms=200)  # ~3 s of work for 10 slots: in flight at the fault
    wait_for(lambda: len(rig.runs()) >= 20, 30, "jobs to be running")

    FAULTS[fault](rig.server)  # claims, renewals, acks and heartbeats all meet the reply

    rig.assert_heartbeats(wid, worker)
    after = rig.submit(1, ms=int((LEASE + 2) * 1000)) + rig.submit(20, ms=20)
    rig.wait_ended(before + after, 45, worker)
    rig.assert_alive(worker)
    rig.assert_ran_once(before + after)
