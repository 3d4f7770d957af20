"""Cron schedules: their definitions in Redis, and which ticks are due.

Definitions live in the HASH ``{cv}:schedules`` (name -> JSON), the last fired tick of each in
``{cv}:schedule-ticks`` (name -> epoch ms), so editing a schedule never rewinds its ticks.
Date math is croniter's over zone-aware datetimes, which gets DST right: a tick in a skipped
hour fires once at the shift, and an hourly tick fires for both instances of a repeated hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from croniter import croniter
from pydantic import BaseModel, Field, field_validator

from conveyor.broker.keys import NAME_RE
from conveyor.connect import text_map
from conveyor.errors import ConveyorError, ValidationError

if TYPE_CHECKING:
    from conveyor.app import Conveyor

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
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (5 fields, or 6 with seconds)")
        return value

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
        zone = ZoneInfo(self.tz)
        it = croniter(self.cron, datetime.fromtimestamp(after_ms / 1000, zone))
        out: list[int] = []
        while len(out) < limit:
            tick = int(it.get_next(datetime).timestamp() * 1000)
            if tick > until_ms:
                break
            out.append(tick)
        return out

    def next_run_ms(self, after_ms: int) -> int:
        it = croniter(self.cron, datetime.fromtimestamp(after_ms / 1000, ZoneInfo(self.tz)))
        return int(it.get_next(datetime).timestamp() * 1000)


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


def tick_key(name: str, tick_ms: int) -> str:
    """The dedup key of one tick: a tick fires once even if two schedulers both lead."""
    return f"cron.{name}.{tick_ms}"[:64]


class ScheduleBook:
    """Create, change, pause, delete and list schedules (for the library, API and CLI)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    @property
    def _key(self) -> str:
        return self.app.keys.glob.schedules

    @property
    def _ticks(self) -> str:
        return f"{self.app.keys.glob.schedules}-ticks"

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

    async def last_ticks(self) -> dict[str, int]:
        return {k: int(v) for k, v in text_map(await self.app.redis.hgetall(self._ticks)).items()}

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        schedule = (await self.get(name)).model_copy(update={"paused": paused})
        await self.app.redis.hset(self._key, name, schedule.model_dump_json())
        return schedule

    async def delete(self, name: str) -> None:
        if not await self.app.redis.hdel(self._key, name):
            raise ScheduleNotFound(name)
        await self.app.redis.hdel(self._ticks, name)

    async def run_now(self, name: str) -> str:
        schedule = await self.get(name)
        handle = await self.app.enqueue(schedule.type, schedule.args, queue=schedule.queue,
                                        priority=schedule.priority)
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
        return ids


def parse_schedule(data: dict[str, Any], field: str = "") -> Schedule:
    """Validate a schedule definition, raising ``ValidationError`` with the field path."""
    try:
        return Schedule.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ".".join([field.rstrip(".")] * bool(field) + [str(p) for p in err["loc"]])
        raise ValidationError(path or "schedule", f"{path}: {err['msg']}") from None


def describe(schedule: Schedule, last_ms: int | None, now_ms: int) -> dict[str, Any]:
    nxt = schedule.next_run_ms(max(now_ms, last_ms or 0))
    return {**schedule.model_dump(), "last_tick_ms": last_ms, "next_run_ms": nxt,
            "next_run": datetime.fromtimestamp(nxt / 1000, UTC).isoformat()}


