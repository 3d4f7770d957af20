"""The lease keeper: renews every lease the worker holds, one call per queue per period."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.worker.runner import JobRunner

log = logging.getLogger("conveyor.worker")


class LeaseKeeper:
    """Responsibilities: extend the leases of all running jobs (from the event loop, never
    from user code), stop the handlers whose lease was lost (the job was reaped and leased
    again elsewhere) or whose cancellation was requested. The supervisor runs ``renew``
    at once when it restarts the loop after an outage, before reapers take leases that
    ran out meanwhile (they wait for that; see ``Liveness.may_judge``)."""

    def __init__(self, app: Conveyor, worker_id: str, runner: JobRunner) -> None:
        self.app = app
        self.worker_id = worker_id
        self.runner = runner

    async def renew(self) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for r in list(self.runner.running.values()):
            by_queue.setdefault(r.job.queue, []).append((r.job.id, r.job.attempt))
        for queue, leases in by_queue.items():
            lost, cancel = await self.app.broker.renew(queue, leases, worker_id=self.worker_id)
            running = self.runner.running
            for job_id in lost:
                if job_id in running:
                    log.warning("worker %s: lease of job %s lost; stopping it", self.worker_id,
                                job_id)
                    self.runner.stop(running[job_id], "lease lost")
            for job_id in cancel:
                if job_id in running:
                    self.runner.stop(running[job_id], "canceled")
