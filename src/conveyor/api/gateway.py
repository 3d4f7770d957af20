"""``Gateway``: what the routes of one API app share, and its start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.api.auth import ApiKeys
from conveyor.api.hub import Hub
from conveyor.api.metrics import Metrics
from conveyor.api.ratelimit import Network, Rate, RateLimiter, parse_networks, parse_rate
from conveyor.api.settings import ApiSettings
from conveyor.api.submitter import Submitter
from conveyor.api.wslimits import Connections

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.store.base import Store

log = logging.getLogger("conveyor.api")
# Events the hub takes from Redis per read. Parsing and dispatching them is one stretch of
# the event loop with no await: at 1000 (redis-py's reply parsing is Python) it held the loop
# for 10 ms of CPU, 100-450 ms on a busy 2-core machine, and every request waited behind it.
HUB_READ_COUNT = 100


@dataclass
class Gateway:
    """The app's parts. Responsibilities: build the key store, limiter, hub and metrics from
    the settings; open the history store on start (unless one was given) and close what it
    opened on stop. ``store`` is None when no history store could be opened: the routes that
    need it answer 503 and ``/readyz`` says why."""

    conveyor: Conveyor
    settings: ApiSettings
    keys: ApiKeys
    limiter: RateLimiter
    hub: Hub
    metrics: Metrics
    default_rate: Rate | None
    anonymous_rate: Rate | None
    static_rate: Rate | None
    ws_connections: Connections
    proxies: list[Network]
    submitter: Submitter
    store: Store | None = None
    store_error: str | None = None
    owns_store: bool = False
    # queue -> (monotonic time read, throughput): /api/queues and /api/stats both show it,
    # and a dashboard reads both per refresh; a minute's rate is not worse for a second's age.
    throughput_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    refreshing: dict[str, asyncio.Task[object]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, conveyor: Conveyor, settings: ApiSettings, *, admin_key: str | None = None,
        store: Store | None = None,
    ) -> Gateway:
        metrics = Metrics()
        return cls(
            conveyor=conveyor, settings=settings,
            keys=ApiKeys(conveyor, admin_key=admin_key or conveyor.settings.admin_key,
                         cache_seconds=settings.key_cache_seconds),
            limiter=RateLimiter(conveyor, fail_open=settings.ratelimit_fail_open),
            hub=Hub(conveyor, observers=[metrics.observe], count=HUB_READ_COUNT),
            metrics=metrics,
            default_rate=parse_rate(settings.rate_limit),
            anonymous_rate=parse_rate(settings.anonymous_rate_limit),
            static_rate=parse_rate(settings.static_rate_limit),
            ws_connections=Connections(settings.ws_max_connections,
                                       settings.ws_max_connections_per_key),
            proxies=parse_networks(settings.trusted_proxies), submitter=Submitter(conveyor),
            store=store,
        )

    async def start(self, open_store: bool = True) -> None:
        if self.store is None and open_store:
            await self._open_store()
        await self.hub.start()

    async def _open_store(self) -> None:
        from conveyor.store import open_store

        url = self.conveyor.settings.store_url
        try:
            self.store = await open_store(
                url, retention_days=self.conveyor.settings.history_retention_days)
            self.owns_store = True
        except Exception as exc:  # any driver error: serve without history
            self.store_error = f"history store {url!r} unavailable: {exc}"
            log.warning("%s; job search and stats answer 503", self.store_error)

    def refresh_soon(self, key: str, refresh: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``refresh()`` in the background unless the one for ``key`` still runs: a cache
        refilled off the request path, so no request waits for it. ``stop`` cancels it."""
        if key in self.refreshing:
            return
        task = asyncio.create_task(refresh(), name=f"refresh {key}")
        self.refreshing[key] = task
        task.add_done_callback(lambda _: self.refreshing.pop(key, None))

    async def stop(self) -> None:
        for task in list(self.refreshing.values()):
            task.cancel()
        await asyncio.gather(*self.refreshing.values(), return_exceptions=True)
        await self.hub.stop()
        await self.submitter.batcher.close()
        await self.limiter.batcher.close()
        if self.owns_store and self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()
            self.store = None
