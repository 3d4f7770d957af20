"""Builds Redis clients from a URL."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

RETRYABLE = (ConnectionError, TimeoutError, BusyLoadingError)
_client_defaults: dict[str, Any] = {}  # see set_client_defaults


def set_client_defaults(**options: Any) -> None:
    """Options every client made from now on starts from (``make_redis``'s keyword
    overrides still win). The CLI's one-shot commands set short timeouts and no retries, so
    a server that stops answering mid-command ends it in seconds, not minutes. A client for
    blocking reads (``blocking_timeout``) keeps its own socket timeout."""
    _client_defaults.clear()
    _client_defaults.update(options)


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter)."""
    url = re.sub(r"(//[^/@]*?:)[^/@]+@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


def make_redis(url: str, *, blocking_timeout: float | None = None, **overrides: Any) -> Redis:
    """A client for ``url``, retrying connection errors with backoff.

    URLs: ``redis://`` and ``rediss://`` (TLS), ``unix://``;
    ``redis+sentinel://[user:password@]host:26379,host2:26379/service_name[/db]`` (the client
    asks the sentinels for the current primary and follows failovers);
    ``redis+cluster://[user:password@]host:7000,host2:7001`` (Redis Cluster; every queue lives
    on one slot, so each script runs on one node). ``rediss+sentinel`` and
    ``rediss+cluster`` use TLS.

    ``blocking_timeout``: a client for one blocking command at a time; its socket timeout
    is set just past the longest block, so a connection that stops answering raises.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5,
        # Longer than any blocking read Conveyor issues (those block 5 s at most).
        "socket_timeout": 30 if blocking_timeout is None else blocking_timeout + 3,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "retry_on_error": list(RETRYABLE),
    }
    options.update({k: v for k, v in _client_defaults.items()
                    if not (k == "socket_timeout" and blocking_timeout is not None)})
    options.update(overrides)
    scheme, _, rest = url.partition("://")
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(rest, scheme.startswith("rediss"), options)
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(rest, scheme.startswith("rediss"), options)
    options["health_check_interval"] = 15
    single = bool(options.pop("single_connection_client", blocking_timeout is not None))
    # A bounded pool that makes a burst wait for a free connection (up to 10 s) instead of
    # failing with "Too many connections" as the default pool does past its limit.
    pool = BlockingConnectionPool.from_url(url, max_connections=256, timeout=10, **options)
    client = Redis(connection_pool=pool, single_connection_client=single)
    client.auto_close_connection_pool = True
    return client


def _hosts(
    netloc: str, default_port: int
) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``[user:password@]h1:p1,h2:p2`` -> (user, password, [(h1, p1), (h2, p2)])."""
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, secret = auth.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part, "", "")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port) if port else default_port))
    return username, password, hosts


def _sentinel(rest: str, tls: bool, options: dict[str, Any]) -> Redis:
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("a sentinel URL names the service: redis+sentinel://h:26379/mymaster")
    username, password, hosts = _hosts(netloc, 26379)
    params = parse_qs(query)
    sentinel_kwargs: dict[str, Any] = {
        "decode_responses": True, "socket_connect_timeout": 2, "socket_timeout": 2}
    if "sentinel_password" in params:
        sentinel_kwargs["password"] = params["sentinel_password"][0]
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, ssl=tls)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(service, db=int(db or 0), username=username,
                                 password=password, ssl=tls, **options)
    return cast(Redis, client)


def _cluster(rest: str, tls: bool, options: dict[str, Any]) -> Redis:
    netloc = rest.partition("/")[0].partition("?")[0]
    username, password, hosts = _hosts(netloc, 6379)
    for name in ("single_connection_client", "health_check_interval", "retry_on_error"):
        options.pop(name, None)
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts], username=username,
        password=password, ssl=tls,
        **options)
    # RedisCluster offers the same command methods; Conveyor's keys keep each call on a slot.
    return cast(Redis, cluster)


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+cluster", "rediss+cluster")


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
