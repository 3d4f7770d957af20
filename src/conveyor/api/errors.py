"""One error shape for every failure, ``{"error": {"code", "message", "field"}}``, and the
exception handlers that map library errors to it.

Codes are stable (clients branch on them); messages say what to do. No input can produce a
5xx: bad input maps to 4xx here; 503 means Redis or the history store is down.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from conveyor.errors import (
    ConveyorError,
    IdempotencyConflict,
    InvalidState,
    JobNotFound,
    ValidationError,
)
from conveyor.supervise import is_transient, reply_code

log = logging.getLogger("conveyor.api")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_arguments")
    message: str = Field(description="What went wrong and what to do about it")
    field: str | None = Field(
        None, description="Path of the offending input, e.g. jobs[3].args.width or "
        "header.idempotency-key; null when the request as a whole is at fault",
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API has this shape."""

    error: ErrorBody

    model_config = {"json_schema_extra": {"examples": [{"error": {
        "code": "invalid_arguments", "field": "args.width",
        "message": "args.width: Input should be a valid integer (job type 'resize')"}}]}}


class ApiError(Exception):
    """An error the gateway answers itself (auth, limits, malformed bodies)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = list(headers)


def error_response(
    status: int, code: str, message: str, field: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": printable(message),
                                   "field": printable(field) if field else None}})
    response = Response(body, status_code=status, media_type="application/json")
    for name, value in headers:
        response.headers.append(name, value)
    return response


def printable(text: str) -> str:
    """``text`` safe to put in JSON: a lone surrogate from the input becomes ``\\udc00``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def loc_path(loc: Sequence[Any]) -> str:
    """A pydantic/FastAPI error location as a field path: ``jobs[3].args.width``,
    ``query.limit``, ``header.idempotency-key``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_body(errors: Sequence[Any], prefix: Sequence[Any] = ()) -> tuple[str, str]:
    """(field, message) of the first error of a pydantic/FastAPI validation failure."""
    if not errors:
        return "", "the request is invalid"
    err = errors[0]
    loc = [*prefix, *err.get("loc", ())]
    if loc and loc[0] == "body":
        loc = loc[1:]
    field = loc_path(loc)
    return field, f"{field}: {err.get('msg', 'invalid')}" if field else str(err.get("msg"))


# -- handlers ----------------------------------------------------------------------------------

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
              403: "forbidden", 413: "body_too_large", 415: "unsupported_media_type"}


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _library_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    field = exc.field.rstrip(".") or None
    return error_response(422, exc.code, exc.message, field)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_body(exc.errors())
    return error_response(422, "invalid_request", message, field or None)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "job_not_found", str(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    if isinstance(exc, IdempotencyConflict):
        # Not str(exc): it quotes the key as the library stores it, scoped (see tenancy).
        return error_response(409, "idempotency_conflict", "the idempotency key already names "
                              f"job {exc.existing_id}, submitted with different content: use a "
                              "new key for a different job", "header.idempotency-key")
    return error_response(409, "invalid_state", str(exc))


async def _conveyor_error(request: Request, exc: Exception) -> Response:
    return error_response(400, "bad_request", str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    headers = list((exc.headers or {}).items())
    return error_response(exc.status_code, code, str(exc.detail), None, headers)


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("Redis is unavailable: %s", exc)
    return error_response(503, "redis_unavailable",
                          "Redis is unreachable; retry shortly", None, [("Retry-After", "1")])


async def _redis_refused(request: Request, exc: Exception) -> Response:
    """An error reply: one that passes by itself (OOM, READONLY, BUSY, LOADING, MISCONF, ...:
    ``supervise.is_transient``) is a 503 to retry, like Redis being unreachable; any other
    is a bug of ours."""
    if not is_transient(exc):
        return await _unexpected(request, exc)
    log.warning("Redis refuses commands for now: %s", exc)
    # redis-py names some replies by class and strips their code from the message.
    code = reply_code(str(exc)) if type(exc) is ResponseError else type(exc).__name__
    return error_response(503, "redis_unavailable",
                          f"Redis refuses commands for now ({code}); nothing was written; "
                          "retry shortly", None, [("Retry-After", "1")])


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "unexpected server error; it has been logged")


def install_handlers(app: FastAPI) -> None:
    """Map every error a route can meet to the one error shape."""
    handlers: list[tuple[type[Exception], Any]] = [
        (ApiError, _api_error),
        (ValidationError, _library_validation),
        (RequestValidationError, _request_validation),
        (JobNotFound, _not_found),
        (IdempotencyConflict, _conflict),
        (InvalidState, _conflict),
        (ConveyorError, _conveyor_error),
        (StarletteHTTPException, _http_error),
        (RedisConnectionError, _redis_down),
        (RedisTimeoutError, _redis_down),
        (ResponseError, _redis_refused),
        (Exception, _unexpected),
    ]
    for exc_type, handler in handlers:
        app.add_exception_handler(exc_type, handler)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with the error model, for a route's documented failures."""
    described = {
        400: "Malformed JSON (syntax, NaN/Infinity, duplicate keys, lone surrogates, too deep)",
        401: "Missing or unknown API key",
        403: "The key's role may not do this",
        404: "No such job or queue",
        408: "The body did not arrive in time",
        409: "Conflict: idempotency key reused with another body, or wrong job state",
        413: "Body larger than the cap",
        415: "Body is not application/json",
        422: "Invalid input; `field` names it",
        429: "Rate limited; see Retry-After and RateLimit-* headers",
        503: "Redis or the history store is unavailable",
    }
    out: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse, "description": described[s]} for s in statuses}
    if 429 in out:
        out[429]["headers"] = RATE_LIMIT_HEADERS
    return out


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


RATE_LIMIT_HEADERS = {
    "Retry-After": _header("Seconds to wait before retrying"),
    "RateLimit-Limit": _header("Requests allowed in a burst"),
    "RateLimit-Remaining": _header("Requests left now"),
    "RateLimit-Reset": _header("Seconds until the limit is fully replenished"),
    "RateLimit-Policy": _header("The limit and its window, e.g. 100;w=1"),
}
