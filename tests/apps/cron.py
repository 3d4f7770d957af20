"""A seconds-level schedule for the scheduler fail-over test."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor()


@app.job(queue="cron", cron="* * * * * *", misfire="all")
async def tick() -> None:
    return None
