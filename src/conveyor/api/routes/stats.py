"""``/api/stats``: counts by status, a time series for charts (completed, failed, canceled,
duration and pickup percentiles per interval) and the queues as they are now."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api import views
from conveyor.api.deps import Viewer
from conveyor.api.errors import responses
from conveyor.api.models import NAME_PATTERN, StatsOut

router = APIRouter(prefix="/api/stats", tags=["stats"])
HOUR_MS = 3_600_000


@router.get("", response_model=StatsOut, summary="Counts and time series for charts",
            responses=responses(401, 403, 422, 429, 503))
async def stats(
    call: Viewer,
    since_ms: Annotated[int | None, Query(ge=0, le=2**53, description="Default: an hour "
                                          "before until_ms")] = None,
    until_ms: Annotated[int | None, Query(ge=1, le=2**53, description="Default: now")] = None,
    interval_ms: Annotated[int, Query(ge=1000, le=30 * 86_400_000)] = 60_000,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> StatsOut:
    store = call.store
    now = int(time.time() * 1000)
    until = until_ms if until_ms is not None else now
    since = since_ms if since_ms is not None else max(0, until - HOUR_MS)
    series = await views.store_call(
        store, store.time_series(since, until, interval_ms, queue=queue, type=type), "query")
    counts = await views.store_call(store, store.count_by_status(queue))
    queues = await views.queues(call.gateway, [queue] if queue else None)
    return StatsOut(now_ms=now, since_ms=since, until_ms=until, interval_ms=interval_ms,
                    counts=counts, series=series, queues=queues)
