"""Rate limiting: GCRA in one atomic Lua script on Redis time (``broker/lua/ratelimit.lua``).

A limit ``N/period`` admits a burst of N at once and then one request every period/N. Buckets
are named per API key (``key:<id>``) or per client IP (``ip:<address>``) for requests without
a valid key. The client IP is the socket's peer; ``X-Forwarded-For`` is read only when that
peer is a configured trusted proxy, and then the right-most address no trusted proxy added.

When Redis cannot be asked, the limiter *fails open* by default (``ratelimit_fail_open``): the
request goes on and, since every route that does work needs Redis too, answers 503 itself;
``/healthz`` keeps answering and ``/readyz`` reports the outage. Failing closed (503 at once)
is the setting's other value. Either way the failure is counted in
``conveyor_api_ratelimit_errors_total`` and logged.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from conveyor.api.batching import Batcher
from conveyor.broker.broker import SCRIPT_KEYS

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.api.ratelimit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RATE_RE = re.compile(r"^\s*(\d{1,9})\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
           "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
UNLIMITED = ("unlimited", "none", "off")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period`` seconds, in a burst of ``count`` at most."""

    count: int
    period: int

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h", 86400: "d"}[self.period]
        return f"{self.count}/{unit}"

    @property
    def interval_us(self) -> int:
        return max(1, self.period * 1_000_000 // self.count)

    @property
    def policy(self) -> str:
        """The ``RateLimit-Policy`` header value (IETF draft: limit and window in seconds)."""
        return f"{self.count};w={self.period}"


@lru_cache(maxsize=1024)
def parse_rate(text: str) -> Rate | None:
    """``"100/s"`` -> Rate(100, 1); ``"unlimited"`` -> None; anything else -> ValueError."""
    if text.strip().lower() in UNLIMITED:
        return None
    match = RATE_RE.match(text.lower())
    if not match or int(match.group(1)) < 1:
        raise ValueError(
            f"rate {text!r} is not a limit: write N/s, N/m, N/h or N/d with N >= 1 "
            "(e.g. 100/s), or 'unlimited'"
        )
    return Rate(int(match.group(1)), PERIODS[match.group(2)])


def parse_networks(text: str) -> list[Network]:
    """Comma-separated addresses or CIDRs (``10.0.0.0/8, 127.0.0.1``)."""
    nets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {part!r} is not an IP address or CIDR") from None
    return nets


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_ip(scope: MutableMapping[str, Any], proxies: Sequence[Network]) -> str:
    """The client's address: the peer's, or, behind trusted proxies, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ())
                 if k == b"x-forwarded-for"]
    hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against a limit, and the headers that describe it."""

    allowed: bool
    rate: Rate
    remaining: int
    retry_after_us: int
    reset_us: int

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("RateLimit-Limit", str(self.rate.count)),
            ("RateLimit-Remaining", str(self.remaining)),
            ("RateLimit-Reset", str(math.ceil(self.reset_us / 1_000_000))),
            ("RateLimit-Policy", self.rate.policy),
        ]
        if not self.allowed:
            out.append(("Retry-After", str(max(1, math.ceil(self.retry_after_us / 1_000_000)))))
        return out


class LimiterUnavailable(Exception):  # reads as "raise LimiterUnavailable"
    """Redis could not be asked and the limiter is set to fail closed."""


class RateLimiter:
    """Typed wrapper of ``ratelimit.lua``: names the bucket key, sends the checks of
    concurrent requests in one pipeline (see ``batching``), decides what a Redis failure
    means (see the module docstring)."""

    def __init__(self, conveyor: Conveyor, *, fail_open: bool = True) -> None:
        self.conveyor = conveyor
        self.fail_open = fail_open
        self.batcher: Batcher[tuple[str, Rate, int], list[int]] = Batcher(self._run)

    def bucket_keys(self, name: str) -> list[str]:
        by_name = {"bucket": self.conveyor.keys.glob.ratelimit(name)}
        return [by_name[k] for k in SCRIPT_KEYS["ratelimit"]]

    async def hit(self, name: str, rate: Rate, cost: int = 1) -> Decision | None:
        """Count one request in bucket ``name``; None when Redis failed and we fail open."""
        try:
            allowed, remaining, retry, reset = await self.batcher.submit((name, rate, cost))
        except (RedisError, OSError) as exc:
            log.warning("rate limiter cannot reach Redis (%s); failing %s", exc,
                        "open" if self.fail_open else "closed")
            if self.fail_open:
                return None
            raise LimiterUnavailable(str(exc)) from exc
        return Decision(bool(allowed), rate, int(remaining), int(retry), int(reset))

    async def _run(self, items: list[tuple[str, Rate, int]]) -> list[list[int] | BaseException]:
        script = self.conveyor.broker.scripts["ratelimit"]
        results = await self._pipeline(script.sha, items)
        if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted or flushed
            await self.conveyor.redis.script_load(script.script)
            again = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            for i, r in zip(again, await self._pipeline(script.sha, [items[i] for i in again]),
                            strict=True):
                results[i] = r
        return results

    async def _pipeline(
        self, sha: str, items: list[tuple[str, Rate, int]]
    ) -> list[list[int] | BaseException]:
        async with self.conveyor.redis.pipeline(transaction=False) as pipe:
            for name, rate, cost in items:
                pipe.evalsha(sha, 1, *self.bucket_keys(name), rate.interval_us, rate.count, cost)
            return list(await pipe.execute(raise_on_error=False))
