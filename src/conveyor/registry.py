"""Registered job types: the handler, its defaults, and an argument model derived from its
signature (strict: ``"5"`` is not an int), published to Redis as a JSON-schema catalog."""

from __future__ import annotations

import difflib
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, create_model

from conveyor.errors import InvalidArguments, ValidationError

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


@dataclass
class JobType:
    """One job type: its handler, where it runs, how it retries, and how arguments validate."""

    name: str
    func: Callable[..., Any]
    queue: str
    max_attempts: int
    timeout: float
    priority: str
    backoff_base: float | None = None
    backoff_cap: float | None = None
    is_async: bool = False
    ctx_param: str | None = None
    model: type[BaseModel] = field(default=BaseModel)
    extra: dict[str, Any] = field(default_factory=dict)
    limits: Limits | None = None
    in_process: bool = False  # run in a child process that timeouts and cancels can kill
    queues: tuple[str, ...] = ()  # more queues submissions may name, besides ``queue``

    @classmethod
    def from_function(
        cls, name: str, func: Callable[..., Any], *, rate: str | None = None,
        burst: int | None = None, concurrency: int | None = None, limit_key: str | None = None,
        process: bool = False, **opts: Any,
    ) -> JobType:
        model, ctx_param = _arguments_model(name, func)
        if process and (inspect.iscoroutinefunction(func) or ctx_param):
            raise TypeError(f"job {name!r}: process=True takes a plain sync function without "
                            "ctx (it runs in another interpreter)")
        limits = Limits.parse(name, rate, concurrency, limit_key, set(model.model_fields),
                              burst=burst)
        return cls(
            name=name, func=func, model=model, ctx_param=ctx_param,
            is_async=inspect.iscoroutinefunction(func), limits=limits, in_process=process,
            **opts,
        )

    def schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    def catalog_entry(self) -> dict[str, Any]:
        return {
            "name": self.name, "queue": self.queue, "max_attempts": self.max_attempts,
            "timeout": self.timeout, "priority": self.priority, "schema": self.schema(),
            "doc": inspect.getdoc(self.func) or "", "queues": list(self.all_queues),
        }

    @property
    def all_queues(self) -> tuple[str, ...]:
        """The queues this type's jobs may go to: its own first, then the declared ones."""
        return (self.queue, *self.queues)

    def validate_json(self, args_json: str | bytes, field_prefix: str = "args") -> BaseModel:
        """Validate JSON arguments; raise ``InvalidArguments`` naming the first bad field."""
        try:
            return self.model.model_validate_json(args_json)
        except pydantic.ValidationError as exc:
            raise arguments_error(exc, field_prefix, self.name) from None

    def call_kwargs(self, parsed: BaseModel) -> dict[str, Any]:
        return dict(parsed.__dict__)  # the validated fields, without per-field lookups


@dataclass(frozen=True)
class Limits:
    """Execution limits across all workers: ``rate`` like "100/m", a ``concurrency`` cap, each
    kept per value of the argument ``key`` when given (e.g. per tenant).

    The rate is GCRA with a burst, as BullMQ's ``{max, duration}`` limiter: ``rate="6/m"``
    lets 6 jobs start at once, then one every 10 s; ``burst`` (default: the rate's count)
    says how many may start back to back, ``burst=1`` spaces every start evenly."""

    concurrency: int = 0
    interval_ms: int = 0  # GCRA emission interval; 0 = no rate
    burst: int = 1
    key: str | None = None

    @classmethod
    def parse(cls, job: str, rate: str | None, concurrency: int | None, key: str | None,
              params: set[str], *, burst: int | None = None) -> Limits | None:
        if burst is not None and rate is None:
            raise ValueError(f"job {job!r}: burst= needs a rate=")
        if rate is None and concurrency is None:
            return None
        if concurrency is not None and not _positive(concurrency):
            raise ValueError(f"job {job!r}: concurrency must be a positive integer")
        if key is not None and key not in params:
            raise ValueError(f"job {job!r}: limit_key {key!r} is not one of its parameters")
        interval, count = _rate(job, rate) if rate else (0, 1)
        if burst is not None and not _positive(burst):
            raise ValueError(f"job {job!r}: burst must be a positive integer")
        return cls(concurrency or 0, interval, burst or count, key)

    def name(self, job: str, args_json: str) -> str:
        """The limit a job counts against: its type, or its type and its key's value."""
        if self.key is None:
            return job
        value = orjson.loads(args_json).get(self.key)
        return f"{job}:{hashlib.sha1(orjson.dumps(value)).hexdigest()[:16]}"


RATE_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000}


def _rate(job: str, rate: str) -> tuple[int, int]:
    """(GCRA emission interval ms, count per period) of a rate like "100/m"."""
    count, _, unit = rate.partition("/")
    if not count.isdigit() or int(count) < 1 or unit not in RATE_UNITS:
        raise ValueError(f"job {job!r}: rate {rate!r} must look like 100/s, 100/m or 100/h")
    return max(1, RATE_UNITS[unit] // int(count)), int(count)


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def unknown_option(name: str, valid: list[str]) -> TypeError:
    """The error for an option ``@app.job(...)`` does not know, naming the closest valid one
    (a typo like ``max_atempts=1`` must not silently fall back to the default)."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return TypeError(f"@app.job() got an unknown option {name!r}: {hint}"
                     f"(valid options: {', '.join(valid)})")


def arguments_error(exc: pydantic.ValidationError, prefix: str, name: str) -> ValidationError:
    err = exc.errors(include_url=False)[0]
    path = ".".join([prefix, *(str(p) for p in err["loc"])])
    return InvalidArguments(
        path, f"{path}: {err['msg']} (job type {name!r}; see its schema in the job-type catalog)"
    )


def _arguments_model(name: str, func: Callable[..., Any]) -> tuple[type[BaseModel], str | None]:
    """A strict pydantic model of ``func``'s parameters, less the ``Context`` one."""
    from conveyor.worker.context import Context  # the worker imports us; avoid the cycle

    hints = get_type_hints(func)
    fields: dict[str, Any] = {}
    ctx_param = None
    for param in inspect.signature(func).parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is Context or param.name == "ctx":
            ctx_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"job {name!r}: parameter {param.name!r} must be a plain or keyword-only "
                "parameter, since arguments arrive as a JSON object"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{name}_args", __config__=STRICT, **fields)
    return model, ctx_param
