"""Hostile and careless input: every case gets a 4xx with a stable code and the field path,
never a 5xx, and nothing reaches Redis."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from conveyor import Conveyor
from conveyor.api import ApiServer
from conveyor.embedded import RedisServer
from tests.api.conftest import ADMIN_KEY, auth
from tests.conftest import BINARIES

GOOD_ARGS = {"image_id": "a", "width": 10}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def any_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the whole module: no case writes anything (each test checks)."""
    server = RedisServer(BINARIES[-1][1], Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.kill()


@dataclass
class Case:
    name: str
    status: int
    code: str
    field: str | None = None
    body: bytes | None = None
    path: str = "/api/jobs"
    method: str = "POST"
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(JSON))


def job(**overrides: Any) -> bytes:
    return orjson.dumps({"type": "resize", "args": GOOD_ARGS, **overrides})


def cursor(document: bytes) -> str:
    return base64.urlsafe_b64encode(document).decode()


def raw(text: str) -> bytes:
    return text.encode()


def deep(levels: int) -> bytes:
    return raw('{"type": "resize", "args": {"a": ' + "[" * levels + "]" * levels + "}}")


def bulk(*jobs: dict[str, Any]) -> bytes:
    return orjson.dumps({"jobs": list(jobs)})


GOOD = {"type": "resize", "args": GOOD_ARGS}
CASES = [
    # -- not JSON, or JSON the API refuses ------------------------------------------------
    Case("syntax error", 400, "invalid_json", body=raw('{"type": ')),
    Case("single quotes", 400, "invalid_json", body=raw("{'type': 'resize'}")),
    Case("trailing garbage", 400, "trailing_data", body=raw('{"type": "resize"} x')),
    Case("two documents", 400, "trailing_data", body=raw("{}{}")),
    Case("NaN", 400, "non_finite_number", "args.width",
         raw('{"type": "resize", "args": {"image_id": "a", "width": NaN}}')),
    Case("Infinity", 400, "non_finite_number", "args.ratio",
         raw('{"type": "resize", "args": {"image_id": "a", "width": 1, "ratio": Infinity}}')),
    Case("-Infinity", 400, "non_finite_number", "delay",
         raw('{"type": "resize", "args": {}, "delay": -Infinity}')),
    Case("overflowing double", 400, "non_finite_number", "args.ratio",
         raw('{"type": "resize", "args": {"image_id": "a", "width": 1, "ratio": 1e400}}')),
    Case("duplicate key", 400, "duplicate_key", "type",
         raw('{"type": "resize", "type": "explode", "args": {}}')),
    Case("nested duplicate key", 400, "duplicate_key", "args.width",
         raw('{"type": "resize", "args": {"image_id": "a", "width": 1, "width": 2}}')),
    Case("lone surrogate value", 400, "invalid_unicode", "args.image_id",
         raw('{"type": "resize", "args": {"image_id": "\\ud800", "width": 1}}')),
    Case("lone surrogate key", 400, "invalid_unicode", "args.\\udc00",
         raw('{"type": "resize", "args": {"\\udc00": 1}}')),
    Case("invalid UTF-8", 400, "invalid_utf8", body=b'{"type": "resize\xff"}'),
    Case("CESU surrogate bytes", 400, "invalid_utf8", body=b'{"type": "\xed\xa0\x80"}'),
    Case("empty body", 400, "empty_body", body=b""),
    Case("whitespace body", 400, "empty_body", body=b"  \n "),
    Case("nested too deep", 400, "too_deep", body=deep(60)),
    Case("nested past the parser", 400, "too_deep", body=b"[" * 200_000),
    Case("integer over 64 bits", 400, "number_out_of_range", "args.width",
         raw('{"type": "resize", "args": {"image_id": "a", "width": 18446744073709551616}}')),
    Case("integer of 5000 digits", 400, "number_out_of_range",
         body=raw('{"type": "resize", "args": {"width": ' + "9" * 5000 + "}}")),
    # -- wrong media type and size ---------------------------------------------------------
    Case("text/plain", 415, "unsupported_media_type", body=job(),
         headers={"content-type": "text/plain"}),
    Case("no content type", 415, "unsupported_media_type", body=job(), headers={}),
    Case("form encoded", 415, "unsupported_media_type", body=b"type=resize",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("over 1 MiB", 413, "body_too_large",
         body=job(args={"image_id": "a" * (1024 * 1024), "width": 1})),
    # -- valid JSON, wrong shape -----------------------------------------------------------
    Case("array body", 422, "invalid_type", body=raw("[1, 2]")),
    Case("string body", 422, "invalid_type", body=raw('"resize"')),
    Case("missing type", 422, "missing_field", "type", raw('{"args": {}}')),
    Case("unknown field", 422, "unknown_field", "colour", job(colour="red")),
    Case("string for int", 422, "invalid_arguments", "args.width",
         job(args={"image_id": "a", "width": "5"})),
    Case("bool for int", 422, "invalid_arguments", "args.width",
         job(args={"image_id": "a", "width": True})),
    Case("float for int", 422, "invalid_arguments", "args.width",
         job(args={"image_id": "a", "width": 5.5})),
    Case("extra argument", 422, "invalid_arguments", "args.height",
         job(args={**GOOD_ARGS, "height": 3})),
    Case("missing argument", 422, "invalid_arguments", "args.width",
         job(args={"image_id": "a"})),
    Case("args not an object", 422, "invalid_type", "args", job(args=[1, 2])),
    Case("args null", 422, "invalid_type", "args", job(args=None)),
    Case("unknown job type", 422, "unknown_job_type", "type", job(type="nope")),
    Case("type with braces", 422, "invalid_name", "type", job(type="re{size}")),
    Case("queue with braces", 422, "invalid_name", "queue", job(queue="a{b}")),
    Case("queue of 65 chars", 422, "invalid_name", "queue", job(queue="q" * 65)),
    Case("queue empty", 422, "invalid_name", "queue", job(queue="")),
    Case("queue not a string", 422, "invalid_type", "queue", job(queue=5)),
    Case("unknown priority", 422, "invalid_value", "priority", job(priority="urgent")),
    Case("negative delay", 422, "invalid_value", "delay", job(delay=-1)),
    Case("delay as string", 422, "invalid_type", "delay", job(delay="5")),
    Case("delay as bool", 422, "invalid_type", "delay", job(delay=True)),
    Case("delay of a century", 422, "invalid_value", "delay", job(delay=3.2e9)),
    Case("zero attempts", 422, "invalid_value", "max_attempts", job(max_attempts=0)),
    Case("fractional attempts", 422, "invalid_type", "max_attempts", job(max_attempts=1.5)),
    Case("attempts as string", 422, "invalid_type", "max_attempts", job(max_attempts="3")),
    Case("zero timeout", 422, "invalid_value", "timeout", job(timeout=0)),
    Case("naive run_at", 422, "invalid", "run_at", job(run_at="2030-01-01T00:00:00")),
    Case("garbage run_at", 422, "invalid", "run_at", job(run_at="next tuesday")),
    Case("delay and run_at", 422, "invalid", "delay",
         job(delay=1, run_at="2030-01-01T00:00:00+00:00")),
    Case("reserved meta key", 422, "reserved_field", "meta.api_key_id",
         job(meta={"api_key_id": "someone-else"})),
    Case("NaN hidden in meta", 400, "non_finite_number", "meta.x",
         raw('{"type": "resize", "args": {"image_id": "a", "width": 1}, "meta": {"x": NaN}}')),
    Case("idempotency key with braces", 422, "invalid_request", "header.Idempotency-Key",
         job(), headers={**JSON, "Idempotency-Key": "a{b}"}),
    Case("idempotency key of 65 chars", 422, "invalid_request", "header.Idempotency-Key",
         job(), headers={**JSON, "Idempotency-Key": "k" * 65}),
    # -- bulk --------------------------------------------------------------------------------
    Case("bulk empty", 422, "invalid_value", "jobs", bulk(), path="/api/jobs/bulk"),
    Case("bulk not a list", 422, "invalid_type", "jobs", raw('{"jobs": {}}'),
         path="/api/jobs/bulk"),
    Case("bulk bad item", 422, "invalid_arguments", "jobs[3].args.width",
         bulk(GOOD, GOOD, GOOD, {"type": "resize", "args": {"image_id": "a", "width": "x"}}),
         path="/api/jobs/bulk"),
    Case("bulk unknown type", 422, "unknown_job_type", "jobs[2].type",
         bulk(GOOD, GOOD, {"type": "nope"}), path="/api/jobs/bulk"),
    Case("bulk braces", 422, "invalid_name", "jobs[1].queue",
         bulk(GOOD, {**GOOD, "queue": "{x}"}), path="/api/jobs/bulk"),
    Case("bulk duplicate key", 400, "duplicate_key", "jobs[1].args.width",
         raw('{"jobs": [{"type": "resize"}, {"type": "resize", "args": {"width": 1, '
             '"width": 2}}]}'), path="/api/jobs/bulk"),
    Case("bulk NaN", 400, "non_finite_number", "jobs[0].args.width",
         raw('{"jobs": [{"type": "resize", "args": {"width": NaN}}]}'),
         path="/api/jobs/bulk"),
    # -- paths and queries -------------------------------------------------------------------
    Case("job id with braces", 422, "invalid_request", "path.job_id",
         path="/api/jobs/a%7Bb%7D", method="GET"),
    Case("queue path with braces", 422, "invalid_request", "path.queue",
         path="/api/queues/a%7Bb%7D/pause"),
    Case("search limit 0", 422, "invalid_request", "query.limit",
         path="/api/jobs?limit=0", method="GET"),
    Case("search limit not a number", 422, "invalid_request", "query.limit",
         path="/api/jobs?limit=ten", method="GET"),
    Case("search unknown status", 422, "invalid_request", "query.status[0]",
         path="/api/jobs?status=lost", method="GET"),
    Case("stats interval too small", 422, "invalid_request", "query.interval_ms",
         path="/api/stats?interval_ms=5", method="GET"),
    Case("stats queue given twice", 422, "invalid_request", "query.queue",
         path="/api/stats?queue=a&queue=b", method="GET"),
    Case("search limit given twice, once percent-encoded", 422, "invalid_request",
         "query.limit", path="/api/jobs?limit=5&%6Cimit=6", method="GET"),
    Case("dlq selection unknown field", 422, "unknown_field", "everything",
         raw('{"everything": true}'), path="/api/queues/default/dlq/purge"),
    Case("dlq ids with braces", 422, "invalid_name", "ids[0]", raw('{"ids": ["{x}"]}'),
         path="/api/queues/default/dlq/retry"),
    Case("search text with NUL", 422, "invalid_query", "query.text",
         path="/api/jobs?text=abc%00", method="GET"),
    Case("search text with a newline", 422, "invalid_query", "query.text",
         path="/api/jobs?text=a%0Ab", method="GET"),
    Case("search text of 201 characters", 422, "invalid_request", "query.text",
         path="/api/jobs?text=" + "a" * 201, method="GET"),
    Case("cursor with a huge sort value", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=" + cursor(b'[1e300,"x"]'), method="GET"),
    Case("cursor past 64 bits", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=" + cursor(b'[9223372036854775808,"x"]'), method="GET"),
    Case("cursor with a negative value", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=" + cursor(b'[-1,"x"]'), method="GET"),
    Case("cursor with braces in its id", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=" + cursor(b'[1,"{x}"]'), method="GET"),
    Case("cursor of another shape", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=" + cursor(b'{"a": 1}'), method="GET"),
    Case("cursor not base64", 422, "invalid_query", "query.cursor",
         path="/api/jobs?cursor=%%%", method="GET"),
    Case("run_at in year 9999", 422, "invalid_value", "run_at",
         job(run_at="9999-01-01T00:00:00+00:00")),
    Case("run_at 11 years ahead", 422, "invalid_value", "run_at",
         job(run_at=f"{datetime.now(UTC).year + 11}-01-01T00:00:00+00:00")),
    Case("bulk run_at in year 9999", 422, "invalid_value", "jobs[1].run_at",
         bulk(GOOD, {**GOOD, "run_at": "9999-12-31T23:59:59-01:00"}), path="/api/jobs/bulk"),
    Case("page path of 256 characters", 404, "not_found", path="/" + "a" * 256, method="GET"),
    Case("nested page path of 60 KB", 404, "not_found", path="/jobs/" + "a" * 60_000,
         method="GET"),
    Case("file name of 300 characters", 404, "not_found", path="/assets/" + "b" * 300 + ".js",
         method="GET"),
    Case("unknown route", 404, "not_found", path="/api/nothing", method="GET"),
    Case("wrong method", 405, "method_not_allowed", path="/api/jobs", method="PUT"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input(case: Case, client: httpx.AsyncClient, conveyor: Conveyor) -> None:
    r = await client.request(case.method, case.path, content=case.body,
                             headers=case.headers)
    assert r.status_code == case.status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == case.code
    if case.field is not None:
        assert error["field"] == case.field
    assert error["message"]
    assert await conveyor.queues() == []  # nothing reached Redis


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40


async def test_chunked_body_over_the_cap_is_413(client: httpx.AsyncClient,
                                               conveyor: Conveyor) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536  # 1.25 MiB in all, no Content-Length
        yield job()

    r = await client.post("/api/jobs", content=chunks(), headers=JSON)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert await conveyor.queues() == []


async def test_idempotency_conflict_in_bulk_names_no_partial_batch(
    client: httpx.AsyncClient, conveyor: Conveyor
) -> None:
    """The whole batch is validated before anything is written."""
    r = await client.post("/api/jobs/bulk", content=bulk(
        GOOD, GOOD, {**GOOD, "idempotency_key": "{bad}"}), headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["field"] == "jobs[2].idempotency_key"
    assert await conveyor.queues() == []


class _Tracebacks(logging.Handler):
    """Collects every record that carries a traceback or is an error."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    handler = _Tracebacks()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn's do not propagate
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


async def test_every_case_over_real_http_without_a_traceback(
    server: ApiServer, conveyor: Conveyor, tracebacks: list[logging.LogRecord]
) -> None:
    """The same cases through uvicorn (a 60 KB path once dropped the connection, and each
    500 logged two tracebacks): the same answers, and no 4xx logs a traceback."""
    async with httpx.AsyncClient(base_url=server.url, headers=auth(ADMIN_KEY)) as c:
        for case in CASES:
            r = await c.request(case.method, case.path, content=case.body,
                                headers=case.headers)
            assert r.status_code == case.status, (case.name, r.text)
            assert r.json()["error"]["code"] == case.code, case.name
    assert [r.getMessage()[:200] for r in tracebacks] == []
    assert await conveyor.queues() == []
