"""``Annotated`` dependencies the routes declare: the caller (API key, role, rate limit, and
the gateway's parts) and strict JSON bodies.

Order of checks for a protected route: find the key (``Authorization: Bearer`` or
``X-API-Key``; never the URL) -> 401 if missing or unknown (after counting the attempt
against the client IP's anonymous limit) -> rate limit per key (429) -> role (403) -> body.
Each route resolves one dependency for all of that, plus one for its body: FastAPI's
dependency solving is a large part of a request's cost, so the tree stays flat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import pydantic
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from conveyor.api import jsonbody
from conveyor.api.auth import Principal, rate_of
from conveyor.api.errors import ApiError, loc_path
from conveyor.api.gateway import Gateway
from conveyor.api.models import NAME_PATTERN
from conveyor.api.ratelimit import LimiterUnavailable, Rate, client_ip
from conveyor.app import Conveyor
from conveyor.broker.keys import NAME_RE
from conveyor.store.base import Store

M = TypeVar("M", bound=pydantic.BaseModel)

# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def``
# in a worker thread, a thread hop per request for nothing.


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _gateway(request: Request) -> Gateway:
    return get_gateway(request)


GatewayDep = Annotated[Gateway, Depends(_gateway)]


@dataclass(frozen=True, slots=True)
class Call:
    """An authenticated request: who calls, and the gateway's parts."""

    principal: Principal
    gateway: Gateway

    @property
    def conveyor(self) -> Conveyor:
        return self.gateway.conveyor

    @property
    def store(self) -> Store:
        if self.gateway.store is None:
            raise ApiError(503, "store_unavailable", self.gateway.store_error or
                           "no history store is configured: set CONVEYOR_STORE_URL")
        return self.gateway.store


# -- rate limits -------------------------------------------------------------------------------

async def limit(request: Request, bucket: str, rate: Rate | None, kind: str) -> None:
    """Count the request in ``bucket``; 429 when over ``rate``; headers for the response."""
    if rate is None:
        return
    gateway = get_gateway(request)
    try:
        decision = await gateway.limiter.hit(bucket, rate)
    except LimiterUnavailable:
        gateway.metrics.limiter_errors.inc()
        raise ApiError(503, "redis_unavailable", "the rate limiter cannot reach Redis; retry "
                       "shortly", headers=[("Retry-After", "1")]) from None
    if decision is None:
        gateway.metrics.limiter_errors.inc()
        return
    if not decision.allowed:
        gateway.metrics.limited.labels(kind).inc()
        raise ApiError(429, "rate_limited", f"rate limit of {rate} exceeded: retry after the "
                       "Retry-After header's seconds", headers=decision.headers())
    request.scope.setdefault("state", {})["headers"] = decision.headers()


async def limit_anonymous(request: Request) -> None:
    """The per-client-IP limit of unauthenticated requests."""
    gateway = get_gateway(request)
    ip = client_ip(request.scope, gateway.proxies)
    await limit(request, f"ip:{ip}", gateway.anonymous_rate, "ip")


Anonymous = Depends(limit_anonymous)


async def limit_static(request: Request) -> None:
    """The per-client-IP limit of the dashboard's files and the docs (browsers send no key
    for them)."""
    gateway = get_gateway(request)
    ip = client_ip(request.scope, gateway.proxies)
    await limit(request, f"static:{ip}", gateway.static_rate, "static")


# -- authentication ----------------------------------------------------------------------------

def key_of(request: HTTPConnection) -> str | None:
    """The API key of ``Authorization: Bearer <key>`` or ``X-API-Key`` (never the URL)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request) -> Principal:
    gateway = get_gateway(request)
    key = key_of(request)
    principal = await gateway.keys.authenticate(key) if key else None
    if principal is None:
        await limit_anonymous(request)
        message = ("this API needs a key: send Authorization: Bearer <key> (create one with "
                   "`conveyor keys create`)") if not key else "the API key is unknown or revoked"
        raise ApiError(401, "unauthorized", message, headers=[("WWW-Authenticate", "Bearer")])
    await limit(request, f"key:{principal.id}", rate_of(principal, gateway.default_rate), "key")
    return principal


async def authorize(request: Request, allowed: Callable[[Principal], bool], action: str) -> Call:
    principal = await authenticate(request)
    if not allowed(principal):
        raise ApiError(403, "forbidden", f"the {principal.role.value} role may not {action}")
    return Call(principal, get_gateway(request))


def require(allowed: Callable[[Principal], bool], action: str) -> Callable[..., Any]:
    async def check(request: Request) -> Call:
        return await authorize(request, allowed, action)

    return check


Caller = Annotated[Call, Depends(require(lambda p: True, ""))]
Viewer = Annotated[Call, Depends(require(lambda p: p.reads_all, "read this resource"))]
Producer = Annotated[Call, Depends(require(lambda p: p.submits, "submit jobs"))]
Admin = Annotated[Call, Depends(require(lambda p: p.is_admin, "change jobs or queues"))]


async def metrics_access(request: Request) -> None:
    """``/metrics`` is public (per-IP limit) unless ``metrics_public`` is off: then a viewer
    or admin key is needed."""
    if get_gateway(request).settings.metrics_public:
        await limit_anonymous(request)
        return
    principal = await authenticate(request)
    if not principal.reads_all:
        raise ApiError(403, "forbidden", f"the {principal.role.value} role may not read metrics")


# -- bodies ------------------------------------------------------------------------------------

ERROR_CODES = {"extra_forbidden": "unknown_field", "missing": "missing_field",
               "string_pattern_mismatch": "invalid_name", "literal_error": "invalid_value"}


async def read_body(request: Request, model: type[M], body: bytes | None = None) -> M:
    """The body (read from the request unless given) as strict JSON, validated with
    ``model``."""
    jsonbody.check_content_type(request.headers.get("content-type"))
    if body is None:
        body = await request.body()
    value = jsonbody.parse(body, get_gateway(request).settings.max_json_depth)
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        raise body_error(exc) from None


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that reads the body as strict JSON and validates it with ``model``."""

    async def read(request: Request) -> M:
        return await read_body(request, model)

    return read


# -- submissions: one dependency for the hottest routes ----------------------------------------

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": NAME_PATTERN},
    "description": "Same key and body: the same job again (200). Same key, other body: 409.",
}


@dataclass(frozen=True, slots=True)
class Submission(Generic[M]):
    """A producer's submission: who, what, and the Idempotency-Key header."""

    call: Call
    body: M
    idempotency_key: str | None


def submission(model: type[M]) -> Callable[[Request], Awaitable[Submission[M]]]:
    """Auth, rate limit, role, the Idempotency-Key header and the body in one dependency:
    submissions are the API's hot path and FastAPI's per-dependency cost is not small."""

    async def read(request: Request) -> Submission[M]:
        return await read_submission(request, model)

    return read


def _submits(principal: Principal) -> bool:
    return principal.submits


async def read_submission(
    request: Request, model: type[M], body: bytes | None = None
) -> Submission[M]:
    """What ``submission(model)`` resolves, in its order of checks; ``body``: the request's
    body when the caller has read it already (``conveyor.api.direct``)."""
    call = await authorize(request, _submits, "submit jobs")
    key = request.headers.get("idempotency-key")
    if key is not None and not NAME_RE.fullmatch(key):
        raise ApiError(422, "invalid_request", "header.Idempotency-Key must be 1 to 64 "
                       "characters from A-Z a-z 0-9 _ . -", "header.Idempotency-Key")
    return Submission(call, await read_body(request, model, body), key)


def body_error(exc: pydantic.ValidationError) -> ApiError:
    err = exc.errors(include_url=False)[0]
    field = loc_path(err["loc"])
    code = ERROR_CODES.get(err["type"], "invalid_type" if err["type"].endswith("_type")
                           else "invalid_value")
    message = f"{field}: {err['msg']}" if field else str(err["msg"])
    if err["type"] == "string_pattern_mismatch":
        message = (f"{field} must be 1 to 64 characters from A-Z a-z 0-9 _ . - (no braces: "
                   "they would move keys to another Cluster slot)")
    return ApiError(422, code, message, field or None)


def body_openapi(
    model: type[pydantic.BaseModel], *, headers: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """``openapi_extra`` documenting a body (and headers) read by ``json_body`` or
    ``submission``, which FastAPI does not see."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    extra: dict[str, Any] = {"requestBody": {
        "required": True, "content": {"application/json": {"schema": ref}}}}
    if headers:
        extra["parameters"] = list(headers)
    return extra
