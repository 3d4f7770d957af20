"""A handler that blocks its worker's event loop: ``time.sleep(8)`` inside an ``async def``
(the commonest handler mistake), with the default liveness settings (heartbeat every 1 s,
judged dead after 5 s of silence, lease 30 s) and a second worker running.

DESIGN.md section 9: a live process is never judged dead - liveness does not depend on the
event loop a handler can block, while the 30 s lease still bounds a loop stuck for real. So
the second worker must not take the stalled worker's jobs: no job runs twice (the stall job
included), none dies, and both workers go on claiming and acknowledging.
"""

from __future__ import annotations

import pytest
from chaos.app import STALL_QUEUE, STALL_TYPE

from tests.faults.rig import FAST, KEYS, Rig, wait_for

STALL_SECONDS = 8.0
# The defaults of conveyor.settings for liveness; only the retry backoff stays fast.
DEFAULT_LIVENESS = {k: v for k, v in FAST.items() if k.startswith("backoff")}


@pytest.mark.timeout(120)
def test_an_event_loop_stall_is_not_a_death(rig: Rig) -> None:
    stalled, _ = rig.worker(concurrency=4, settings=DEFAULT_LIVENESS)
    other, _ = rig.worker(concurrency=4, settings=DEFAULT_LIVENESS)
    # Whichever worker claims first takes the stall and three 12 s jobs with it (a claim
    # leases up to its free slots, oldest first); the other takes the next four.
    ids = rig.submit_specs([{"type": STALL_TYPE, "args": {"seconds": STALL_SECONDS}}]
                           + [rig.work(12_000) for _ in range(7)])
    stall, others = ids[:1], ids[1:]
    wait_for(lambda: len(rig.runs()) == 7, 30, "every job to start")
    wait_for(rig.stall_runs, 30, "the stall to end")

    after = rig.submit(20, ms=20)
    rig.wait_ended(others + after, 60, stalled, other)
    rig.wait_ended(stall, 10, stalled, queue=STALL_QUEUE)
    rig.assert_alive(stalled)
    rig.assert_alive(other)
    job = rig.r.hgetall(KEYS.queue(STALL_QUEUE).job(stall[0]))
    assert job["status"] == "completed", (
        f"the stall job is {job['status']} after {len(rig.stall_runs())} runs: "
        f"{job.get('error')}")
    assert len(rig.stall_runs()) == 1, f"the stall job ran again: {rig.stall_runs()}"
    rig.assert_ran_once(others + after)
