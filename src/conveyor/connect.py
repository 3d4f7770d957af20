"""Builds Redis clients from a URL."""

from __future__ import annotations

from typing import Any, cast

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


# redis-py types replies as ``bytes | str`` whatever ``decode_responses`` says; every client
# made here decodes, so these casts state what the replies are.
def strs(reply: object) -> list[str]:
    return cast(list[str], reply)


def text_map(reply: object) -> dict[str, str]:
    return cast(dict[str, str], reply)


def text(reply: object) -> str | None:
    return cast(str | None, reply)


def server_ms(reply: object) -> int:
    """Milliseconds from a TIME reply."""
    seconds, micros = cast(tuple[int, int], reply)
    return int(seconds) * 1000 + int(micros) // 1000
