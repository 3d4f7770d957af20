"""Runs the history recorder for an app: the store named by ``store_url``, one consumer."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from conveyor.connect import is_cluster, make_redis

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.supervise import LoopHealth


async def run_recorder(
    app: Conveyor, consumer: str | None = None, health: LoopHealth | None = None
) -> None:
    """Record every queue's events into the app's history store until cancelled.

    Transient Redis errors are retried inside; anything else is raised, for a
    ``supervise.Supervisor`` to restart this (``health`` is the loop's ``LoopHealth``: it
    shows the last committed batch, and stays healthy while no events come)."""
    from conveyor.scheduler.recorder import Recorder
    from conveyor.store import open_store

    store = await open_store(app.settings.store_url,
                             retention_days=app.settings.history_retention_days)
    # Its own client: blocking reads must not hold connections the rest of the app needs.
    redis = make_redis(app.settings.redis_url)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    try:
        # On Cluster one XREADGROUP may only name streams of one slot: one reader per queue.
        await Recorder(redis, app.keys, store, app.settings, name,
                       one_stream_per_call=is_cluster(app.settings.redis_url),
                       health=health).run()
    finally:
        await redis.aclose()
        await store.close()
