"""Rate limiting: exact admission under concurrency, TTL on every bucket, headers, per-IP
limits for anonymous requests, trusted proxies, and what happens when Redis is down."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.api import ApiSettings, create_app
from conveyor.api.ratelimit import Rate, RateLimiter, client_ip, parse_networks, parse_rate
from conveyor.embedded import RedisServer
from conveyor.store import Store
from tests.api.conftest import ADMIN_KEY, auth, gateway_of, make_conveyor, running
from tests.conftest import FAST


def client_for(app: FastAPI, ip: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 5000)),
                             base_url="http://api", headers=headers)


@pytest.fixture
async def rl_conveyor(redis_server: RedisServer) -> AsyncIterator[Conveyor]:
    """On every server binary: the script must behave the same on Redis 7 and Valkey 8."""
    app = make_conveyor(redis_server.url)
    yield app
    await app.close()


async def _ttls(conveyor: Conveyor) -> list[int]:
    keys = [k async for k in conveyor.redis.scan_iter(match=conveyor.keys.glob.ratelimit("*"))]
    return [await conveyor.redis.pttl(k) for k in keys]


async def test_200_concurrent_hits_on_a_limit_of_50_admit_exactly_50(
    rl_conveyor: Conveyor,
) -> None:
    limiter = RateLimiter(rl_conveyor)
    decisions = await asyncio.gather(*(limiter.hit("key:x", Rate(50, 60)) for _ in range(200)))
    assert sum(d is not None and d.allowed for d in decisions) == 50
    refused = [d for d in decisions if d is not None and not d.allowed]
    assert len(refused) == 150
    assert all(d.remaining == 0 and d.retry_after_us > 0 for d in refused)
    assert sorted(d.remaining for d in decisions if d and d.allowed) == list(range(50))


async def test_no_bucket_ever_lacks_a_ttl(rl_conveyor: Conveyor) -> None:
    limiter = RateLimiter(rl_conveyor)
    stop = asyncio.Event()
    seen: list[int] = []

    async def watch() -> None:
        while not stop.is_set():
            seen.extend(await _ttls(rl_conveyor))

    watcher = asyncio.create_task(watch())
    for _ in range(20):
        await asyncio.gather(*(limiter.hit(f"key:{i % 37}", Rate(5, 1)) for i in range(200)))
    stop.set()
    await watcher
    seen.extend(await _ttls(rl_conveyor))
    assert seen and all(ttl > 0 for ttl in seen), sorted(set(seen))[:5]
    assert max(seen) <= 1000  # a bucket lives no longer than it takes to refill


async def test_the_bucket_refills_with_time(rl_conveyor: Conveyor) -> None:
    limiter = RateLimiter(rl_conveyor)
    rate = Rate(10, 1)
    decisions = [await limiter.hit("key:r", rate) for _ in range(11)]
    assert all(d and d.allowed for d in decisions[:10])
    last = decisions[10]
    assert last is not None and not last.allowed and 0 < last.retry_after_us <= 100_000
    await asyncio.sleep(last.retry_after_us / 1_000_000 + 0.01)  # time itself is the subject
    again = await limiter.hit("key:r", rate)
    assert again is not None and again.allowed


async def test_api_admits_exactly_the_limit_and_sends_headers(
    conveyor: Conveyor, store: Store
) -> None:
    app = create_app(conveyor, settings=ApiSettings(), store=store, admin_key=ADMIN_KEY)
    async with running(app):
        key, _ = await gateway_of(app).keys.create("producer", rate="50/m")
        async with client_for(app, **auth(key)) as c:
            replies = await asyncio.gather(*(c.get("/api/types") for _ in range(200)))
        ok = [r for r in replies if r.status_code == 200]
        limited = [r for r in replies if r.status_code == 429]
        assert len(ok) == 50 and len(limited) == 150
        assert {r.headers["RateLimit-Limit"] for r in replies} == {"50"}
        assert {r.headers["RateLimit-Policy"] for r in replies} == {"50;w=60"}
        assert sorted(int(r.headers["RateLimit-Remaining"]) for r in ok) == list(range(50))
        refused = limited[0]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert int(refused.headers["RateLimit-Reset"]) == 60
        assert all(ttl > 0 for ttl in await _ttls(conveyor))


async def test_default_limit_applies_to_keys_without_one(conveyor: Conveyor,
                                                         store: Store) -> None:
    settings = ApiSettings(rate_limit="3/m")
    app = create_app(conveyor, settings=settings, store=store, admin_key=ADMIN_KEY)
    async with running(app), client_for(app, **auth(ADMIN_KEY)) as c:
        codes = [(await c.get("/api/types")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


async def test_anonymous_requests_are_limited_per_client_ip(conveyor: Conveyor,
                                                            store: Store) -> None:
    settings = ApiSettings(anonymous_rate_limit="2/m")
    app = create_app(conveyor, settings=settings, store=store)
    async with running(app), client_for(app, "10.1.1.1") as a, client_for(app, "10.1.1.2") as b:
        assert [(await a.get("/healthz")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await b.get("/healthz")).status_code == 200
        # failed authentication counts against the IP too: no free guessing
        assert (await b.get("/api/types", headers=auth("wrong"))).status_code == 401
        assert (await b.get("/api/types", headers=auth("wrong"))).status_code == 429


async def test_dashboard_and_docs_are_limited_per_client_ip(conveyor: Conveyor,
                                                            store: Store) -> None:
    """Pages need no key, so each is a hit on the client IP's bucket of pages: without it any
    client could make the process read files and render the docs as fast as it likes."""
    settings = ApiSettings(static_rate_limit="4/m")
    app = create_app(conveyor, settings=settings, store=store)
    async with running(app), client_for(app, "10.1.1.1") as a, client_for(app, "10.1.1.2") as b:
        codes = [(await a.get(path)).status_code
                 for path in ("/", "/jobs/x", "/docs", "/openapi.json", "/", "/docs")]
        assert codes == [200, 200, 200, 200, 429, 429]
        refused = await a.get("/openapi.json")
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Policy"] == "4;w=60"
        assert (await b.get("/")).status_code == 200
        assert (await a.get("/healthz")).status_code == 200  # another bucket


async def test_x_forwarded_for_only_from_trusted_proxies(conveyor: Conveyor,
                                                         store: Store) -> None:
    settings = ApiSettings(anonymous_rate_limit="1/m", trusted_proxies="10.0.0.0/8")
    app = create_app(conveyor, settings=settings, store=store)
    async with running(app):
        async with client_for(app, "10.0.0.5") as proxy:
            for client in ("203.0.113.1", "203.0.113.2"):
                r = await proxy.get("/healthz", headers={"X-Forwarded-For": client})
                assert r.status_code == 200
            r = await proxy.get("/healthz", headers={"X-Forwarded-For": "203.0.113.1"})
            assert r.status_code == 429
        async with client_for(app, "198.51.100.7") as stranger:
            assert (await stranger.get("/healthz", headers={
                "X-Forwarded-For": "192.0.2.1"})).status_code == 200
            assert (await stranger.get("/healthz", headers={
                "X-Forwarded-For": "192.0.2.2"})).status_code == 429


def test_client_ip_rules() -> None:
    proxies = parse_networks("10.0.0.0/8, 2001:db8::/32")
    scope = {"client": ("10.0.0.5", 1), "headers": [
        (b"x-forwarded-for", b"198.51.100.1, 203.0.113.9"), (b"x-forwarded-for", b"10.0.0.9")]}
    assert client_ip(scope, proxies) == "203.0.113.9"  # right-most hop no proxy of ours added
    assert client_ip(scope, []) == "10.0.0.5"
    assert client_ip({**scope, "client": ("192.0.2.1", 1)}, proxies) == "192.0.2.1"
    assert client_ip({**scope, "headers": [(b"x-forwarded-for", b"garbage")]},
                     proxies) == "10.0.0.5"
    assert client_ip({"client": None, "headers": []}, proxies) == "unknown"
    assert ipaddress.ip_network("2001:db8::/32") in proxies


@pytest.mark.parametrize(("text", "rate"), [
    ("100/s", Rate(100, 1)), ("5/m", Rate(5, 60)), ("7 / hour", Rate(7, 3600)),
    ("1/d", Rate(1, 86400)), ("unlimited", None), ("OFF", None),
])
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "0/s", "-1/s", "5", "5/fortnight", "x/s", "1e3/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a limit"):
        parse_rate(text)


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down(any_redis: RedisServer, tmp_path: object, fail_open: bool) -> None:
    """Fail open: requests go on and answer for themselves (health 200, work 503).
    Fail closed: limited routes answer 503 at once. Never a 500."""
    conveyor = Conveyor(redis_url=any_redis.url, **FAST)
    settings = ApiSettings(ratelimit_fail_open=fail_open)
    app = create_app(conveyor, settings=settings, open_store=False, admin_key=ADMIN_KEY)
    async with running(app), client_for(app, **auth(ADMIN_KEY)) as c:
        assert (await c.get("/healthz")).status_code == 200
        any_redis.kill()
        health = await c.get("/healthz")
        assert health.status_code == (200 if fail_open else 503)
        ready = await c.get("/readyz")
        assert ready.status_code in (429, 503) if not fail_open else ready.status_code == 503
        submit = await c.post("/api/jobs", json={"type": "resize",
                                                 "args": {"image_id": "a", "width": 1}})
        assert submit.status_code == 503
        assert submit.json()["error"]["code"] == "redis_unavailable"
        assert submit.headers["Retry-After"] == "1"
    await conveyor.close()
