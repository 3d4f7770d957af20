"""One router per resource; ``ROUTERS`` is the order they are mounted in."""

from __future__ import annotations

from conveyor.api.routes import dlq, health, jobs, queues, schedules, stats, types, workers, ws

ROUTERS = [jobs.router, queues.router, dlq.router, schedules.router, schedules.delayed_router,
           workers.router, types.router, stats.router, ws.router, health.router]
