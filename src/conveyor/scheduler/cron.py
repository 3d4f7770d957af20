"""Cron schedules: their definitions in Redis, and which ticks are due.

Definitions live in the HASH ``{cv}:schedules`` (name -> JSON), the last fired tick of each in
``{cv}:schedules-ticks`` (name -> epoch ms), so editing a schedule never rewinds its ticks,
and the id of the job it submitted last (fired or run now) in ``{cv}:schedules-runs``.

A schedule that cannot fire (its job type was removed, its args no longer validate, its
definition no longer parses) is skipped without stopping the others: its error is logged once
per distinct error and kept in ``{cv}:schedules-errors`` (name -> JSON ``{"error",
"since_ms"}``), which ``describe`` shows as ``last_error``; the next successful fire clears
it. Its last tick is not advanced, so once fixed it catches up by its misfire policy.
Transient Redis errors (``supervise.is_transient``) propagate: the cron loop backs off.
Date math is croniter's over zone-aware datetimes, which gets DST right: a tick in a skipped
hour fires once at the shift, and an hourly tick fires for both instances of a repeated hour.

Expressions have five fields (minute hour day-of-month month day-of-week) or six with the
seconds FIRST, as BullMQ, Quartz, Spring and node-cron write them: ``"*/15 * * * * *"`` is
every 15 seconds. ``check_cron`` refuses anything else, naming the field at fault.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from croniter import croniter
from pydantic import BaseModel, Field, field_validator

from conveyor.broker.keys import NAME_RE
from conveyor.connect import text_map
from conveyor.errors import ConveyorError, ValidationError
from conveyor.serde import dumps, loads
from conveyor.supervise import describe as describe_error
from conveyor.supervise import is_transient

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.scheduler")
Misfire = Literal["skip", "once", "all"]


class ScheduleNotFound(ConveyorError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name


class Schedule(BaseModel):
    """A recurring submission. ``misfire`` says what to do with ticks missed while no
    scheduler ran: ``skip`` them, run ``once`` for all of them, or run ``all`` (at most
    ``max_catchup``)."""

    name: str = Field(pattern=NAME_RE.pattern)
    type: str
    cron: str
    args: dict[str, Any] = {}
    tz: str = "UTC"
    queue: str | None = None
    priority: Literal["high", "normal", "low"] | None = None
    misfire: Misfire = "once"
    max_catchup: int = Field(100, ge=1, le=10_000)
    paused: bool = False

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("tz")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        return value

    def ticks_after(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Tick times (epoch ms) in (after_ms, until_ms], at most ``limit`` of the earliest."""
        it = _ticker(self.cron, after_ms, self.tz)
        out: list[int] = []
        while len(out) < limit:
            tick = int(it.get_next(datetime).timestamp() * 1000)
            if tick > until_ms:
                break
            out.append(tick)
        return out

    def next_run_ms(self, after_ms: int) -> int:
        return self.next_runs_ms(after_ms, 1)[0]

    def next_runs_ms(self, after_ms: int, count: int) -> list[int]:
        """The next ``count`` tick times (epoch ms) after ``after_ms``."""
        it = _ticker(self.cron, after_ms, self.tz)
        return [int(it.get_next(datetime).timestamp() * 1000) for _ in range(count)]


CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
CRON_SHAPE = ("5 fields (minute hour day-of-month month day-of-week), or 6 with the seconds "
              "first (\"*/15 * * * * *\": every 15 seconds)")


def check_cron(expression: str) -> str:
    """``expression`` if it is a cron expression (see the module doc), else ``ValueError``
    naming the field at fault. ``@hourly``, ``@daily`` and the like are accepted too."""
    fields = expression.split()
    if expression.startswith("@") and len(fields) == 1:
        if croniter.is_valid(expression):
            return expression
        raise ValueError(f"{expression!r} is not a cron nickname (@hourly, @daily, @weekly, "
                         "@monthly, @yearly)")
    if len(fields) not in (5, 6):
        raise ValueError(f"{expression!r} has {len(fields)} field(s); a cron expression has "
                         f"{CRON_SHAPE}")
    names = CRON_FIELDS if len(fields) == 5 else ("second", *CRON_FIELDS)
    for i, (name, value) in enumerate(zip(names, fields, strict=True)):
        alone = " ".join(value if j == i else "*" for j in range(len(fields)))
        if not croniter.is_valid(alone, second_at_beginning=True):
            raise ValueError(f"{expression!r}: the {name} field {value!r} is not valid")
    if not croniter.is_valid(expression, second_at_beginning=True):
        raise ValueError(f"{expression!r} is not a valid cron expression ({CRON_SHAPE})")
    return expression


def _ticker(cron: str, after_ms: int, tz: str) -> croniter:
    """croniter from ``after_ms`` in ``tz``, with a sixth field read as seconds first."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(tz))
    return croniter(cron, start, second_at_beginning=True)


def due_ticks(schedule: Schedule, last_ms: int | None, now_ms: int, grace_ms: int) -> list[int]:
    """Ticks to fire now. Ticks older than ``grace_ms`` were missed and follow the policy."""
    if last_ms is None:
        last_ms = now_ms - grace_ms  # a new schedule starts now; nothing to catch up
    # Take the newest ticks when there are more than the bound can hold.
    window = schedule.max_catchup + 1000
    ticks = schedule.ticks_after(max(last_ms, now_ms - 400 * 86400_000), now_ms, window)
    missed = [t for t in ticks if t < now_ms - grace_ms]
    on_time = [t for t in ticks if t >= now_ms - grace_ms]
    if schedule.misfire == "skip" or not missed:
        return on_time
    if schedule.misfire == "once":
        return [missed[-1], *on_time]
    return [*missed[-schedule.max_catchup:], *on_time]


TICK_KEY_MAX = 64  # idempotency keys are names: ^[A-Za-z0-9_.-]{1,64}$
TICK_HASH_LEN = 12  # hex digits of sha256: 48 bits, far past any count of schedules


def tick_key(name: str, tick_ms: int) -> str:
    """The dedup key of one tick: a tick fires once even if two schedulers both lead.

    ``cron.<name>.<tick>`` when that fits in 64 characters (names up to 45 characters);
    for a longer name, ``cronh.<start of name>-<hash of name>.<tick>``: still unique per
    (name, tick) and recognisable. The ``cronh.`` prefix keeps the two forms apart, so no
    short name can take a long name's key."""
    readable = f"cron.{name}.{tick_ms}"
    if len(readable) <= TICK_KEY_MAX:
        return readable
    digest = hashlib.sha256(name.encode()).hexdigest()[:TICK_HASH_LEN]
    room = TICK_KEY_MAX - len(f"cronh.-{digest}.{tick_ms}")
    return f"cronh.{name[:max(room, 0)]}-{digest}.{tick_ms}"


class ScheduleBook:
    """Create, change, pause, delete and list schedules (for the library, API and CLI)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self._logged: dict[str, str] = {}  # schedule -> the error this process last logged

    @property
    def _key(self) -> str:
        return self.app.keys.glob.schedules

    @property
    def _ticks(self) -> str:
        return f"{self.app.keys.glob.schedules}-ticks"

    @property
    def _errors(self) -> str:
        return f"{self.app.keys.glob.schedules}-errors"

    @property
    def _runs(self) -> str:
        return f"{self.app.keys.glob.schedules}-runs"

    async def put(self, schedule: Schedule) -> Schedule:
        """Create or replace a schedule (its job type and arguments are validated first)."""
        await self.app.prepare({"type": schedule.type, "args": schedule.args,
                                "queue": schedule.queue, "priority": schedule.priority})
        await self.app.redis.hset(self._key, schedule.name, schedule.model_dump_json())
        return schedule

    async def get(self, name: str) -> Schedule:
        raw = await self.app.redis.hget(self._key, name)
        if raw is None:
            raise ScheduleNotFound(name)
        return Schedule.model_validate_json(raw)

    async def all(self) -> list[Schedule]:
        raw = text_map(await self.app.redis.hgetall(self._key))
        return [Schedule.model_validate_json(v) for _, v in sorted(raw.items())]

    async def definitions(self) -> tuple[list[Schedule], dict[str, str]]:
        """Every schedule that parses, by name, and the error of each one that does not."""
        good, bad = [], {}
        for name, raw in sorted(text_map(await self.app.redis.hgetall(self._key)).items()):
            try:
                good.append(Schedule.model_validate_json(raw))
            except ValueError as exc:  # pydantic's ValidationError is one
                bad[name] = "invalid definition: " + "; ".join(str(exc).splitlines()[:3])
        return good, bad

    async def last_ticks(self) -> dict[str, int]:
        return {k: int(v) for k, v in text_map(await self.app.redis.hgetall(self._ticks)).items()}

    async def last_errors(self) -> dict[str, dict[str, Any]]:
        """Schedules that failed to fire: name -> ``{"error", "since_ms"}``."""
        raw = text_map(await self.app.redis.hgetall(self._errors))
        return {name: loads(value) for name, value in raw.items()}

    async def last_runs(self) -> dict[str, str]:
        """The id of the job each schedule submitted last (fired or run now)."""
        return text_map(await self.app.redis.hgetall(self._runs))

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        schedule = (await self.get(name)).model_copy(update={"paused": paused})
        await self.app.redis.hset(self._key, name, schedule.model_dump_json())
        return schedule

    async def delete(self, name: str) -> None:
        if not await self.app.redis.hdel(self._key, name):
            raise ScheduleNotFound(name)
        await self.app.redis.hdel(self._ticks, name)
        await self.app.redis.hdel(self._errors, name)
        await self.app.redis.hdel(self._runs, name)

    async def run_now(self, name: str) -> str:
        schedule = await self.get(name)
        handle = await self.app.enqueue(schedule.type, schedule.args, queue=schedule.queue,
                                        priority=schedule.priority,
                                        meta={"schedule": schedule.name})
        await self.app.redis.hset(self._runs, name, handle.id)
        return handle.id

    async def fire(self, schedule: Schedule, ticks: list[int]) -> list[str]:
        """Enqueue each tick under its dedup key, then record the newest tick."""
        ids = []
        for tick in ticks:
            handle = await self.app.enqueue(
                schedule.type, schedule.args, queue=schedule.queue, priority=schedule.priority,
                idempotency_key=tick_key(schedule.name, tick),
                meta={"schedule": schedule.name, "tick": tick})
            ids.append(handle.id)
        if ticks:
            await self.app.redis.hset(self._ticks, schedule.name, max(ticks))
            await self.app.redis.hset(self._runs, schedule.name, ids[-1])
        return ids

    async def fire_due(self, now_ms: int, grace_ms: int) -> float:
        """Fire every due tick of every schedule at ``now_ms`` (Redis time); returns seconds
        until the next tick. A schedule that fails is skipped and its error recorded (see
        the module doc); a transient Redis error propagates."""
        schedules, broken = await self.definitions()
        last = await self.last_ticks()
        errors = await self.last_errors()
        for name, error in broken.items():
            await self._failed(name, error, errors, now_ms)
        gone = set(errors) - set(broken) - {s.name for s in schedules}
        if gone:  # deleted behind the book's back
            await self.app.redis.hdel(self._errors, *gone)
        next_tick = now_ms + 60_000
        for schedule in schedules:
            if not schedule.paused:
                due = await self._fire_one(schedule, last.get(schedule.name), now_ms,
                                           grace_ms, errors)
                next_tick = min(next_tick, due)
        return max(0.0, (next_tick - now_ms) / 1000)

    async def _fire_one(self, schedule: Schedule, last_ms: int | None, now_ms: int,
                        grace_ms: int, errors: dict[str, dict[str, Any]]) -> int:
        """Fire one schedule's due ticks; returns its next tick (ms), or a minute from now
        if it failed (it is tried again at every pass of the loop until then)."""
        try:
            ticks = due_ticks(schedule, last_ms, now_ms, grace_ms)
            if ticks:
                await self.fire(schedule, ticks)
            next_ms = schedule.next_run_ms(max([now_ms, *ticks]))
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._failed(schedule.name, describe_error(exc), errors, now_ms)
            return now_ms + 60_000
        if schedule.name in errors or schedule.name in self._logged:
            await self._recovered(schedule.name)
        return next_ms

    async def _failed(self, name: str, error: str, errors: dict[str, dict[str, Any]],
                      now_ms: int) -> None:
        """Log a schedule's error once per distinct error, and keep it in Redis."""
        if self._logged.get(name) != error:
            log.error("schedule %r skipped (other schedules keep firing): %s", name, error)
            self._logged[name] = error
        if errors.get(name, {}).get("error") != error:
            entry = {"error": error, "since_ms": now_ms}
            await self.app.redis.hset(self._errors, name, dumps(entry))
            errors[name] = entry

    async def _recovered(self, name: str) -> None:
        if self._logged.pop(name, None) is not None:
            log.warning("schedule %r fires again", name)
        await self.app.redis.hdel(self._errors, name)


def parse_schedule(data: dict[str, Any], field: str = "") -> Schedule:
    """Validate a schedule definition, raising ``ValidationError`` with the field path."""
    try:
        return Schedule.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ".".join([field.rstrip(".")] * bool(field) + [str(p) for p in err["loc"]])
        raise ValidationError(path or "schedule", f"{path}: {err['msg']}") from None


def describe(schedule: Schedule, last_ms: int | None, now_ms: int,
             error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A schedule for people: its definition, last and next tick, and ``last_error``
    (``{"error", "since_ms"}`` from ``ScheduleBook.last_errors``, None while it fires)."""
    nxt = schedule.next_run_ms(max(now_ms, last_ms or 0))
    return {**schedule.model_dump(), "last_tick_ms": last_ms, "next_run_ms": nxt,
            "next_run": datetime.fromtimestamp(nxt / 1000, UTC).isoformat(),
            "last_error": error}


