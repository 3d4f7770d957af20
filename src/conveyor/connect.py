"""Builds Redis clients from a URL."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

RETRYABLE = (ConnectionError, TimeoutError, BusyLoadingError)


def make_redis(url: str, **overrides: Any) -> Redis:
    """A client for ``url`` that retries connection errors with backoff."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 15,
        "socket_connect_timeout": 5,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "retry_on_error": list(RETRYABLE),
    }
    options.update(overrides)
    return Redis.from_url(url, **options)
