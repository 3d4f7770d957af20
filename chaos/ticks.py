"""Accounting of a per-second cron schedule across faults: every tick of the window either
fired exactly once (its job ran once and completed) or was missed during an outage and
coalesced by the misfire policy ``once`` (``due_ticks``: a run of missed ticks fires one job,
for the newest of them); and cron fired again soon after each outage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

SECOND = 1000


@dataclass
class CronJob:
    id: str
    tick: int  # epoch ms (the job's meta)
    created: int  # Redis ms when the scheduler submitted it
    status: str
    runs: int  # executions in the ledger


@dataclass
class TickReport:
    ticks: int = 0  # ticks in the window (first to last fired)
    fired: int = 0
    coalesced: int = 0  # missed during an outage, covered by the next fired tick
    doubled: list[int] = field(default_factory=list)  # ticks fired by two jobs
    unexplained: list[int] = field(default_factory=list)  # not fired, no outage explains it
    bad_runs: list[str] = field(default_factory=list)  # cron jobs not run once (unexplained)
    reruns: int = 0  # cron jobs run again because a fault had their lease requeued
    refire_s: list[float | None] = field(default_factory=list)  # per outage: return -> fire
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def account(jobs: list[CronJob], outages: list[tuple[int, int]],
            refire_limit_s: float = 8.0, rerun_ok: frozenset[str] = frozenset()) -> TickReport:
    """``outages``: (down, answering again) in Redis ms. Ticks are per second. ``rerun_ok``:
    cron jobs whose extra runs a fault explains (a reaper requeued their lease in it): at
    least once, like every job."""
    r = TickReport()
    if not jobs:
        r.problems.append("no cron job fired at all")
        return r
    per_tick = Counter(j.tick for j in jobs)
    r.doubled = sorted(t for t, n in per_tick.items() if n > 1)
    first, last = min(per_tick), max(per_tick)
    window = range(first, last + SECOND, SECOND)
    r.ticks, r.fired = len(window), len(per_tick)
    gap: list[int] = []
    for tick in window:
        if tick not in per_tick:
            gap.append(tick)
            continue
        for missed in gap:  # a run of missed ticks ends at a fired one: 'once' coalesced them
            if any(down - SECOND <= missed <= up for down, up in outages):
                r.coalesced += 1
            else:
                r.unexplained.append(missed)
        gap = []
    r.reruns = sum(1 for j in jobs if j.runs > 1 and j.id in rerun_ok)
    r.bad_runs = [j.id for j in jobs if j.status != "completed" or j.runs < 1
                  or (j.runs > 1 and j.id not in rerun_ok)]
    for _down, up in outages:
        after = [j.created for j in jobs if j.created >= up]
        r.refire_s.append((min(after) - up) / 1000 if after else None)
    _judge(r, refire_limit_s)
    return r


def _judge(r: TickReport, refire_limit_s: float) -> None:
    if r.doubled:
        r.problems.append(f"{len(r.doubled)} ticks fired twice, e.g. {r.doubled[:3]}")
    if r.unexplained:
        r.problems.append(f"{len(r.unexplained)} ticks never fired outside any outage, "
                          f"e.g. {r.unexplained[:3]}")
    if r.bad_runs:
        r.problems.append(f"{len(r.bad_runs)} cron jobs did not run exactly once to "
                          f"completion, e.g. {r.bad_runs[:3]}")
    for i, s in enumerate(r.refire_s):
        if s is None or s > refire_limit_s:
            when = "never" if s is None else f"{s:.1f} s after"
            r.problems.append(f"outage {i + 1}: cron fired again {when} Redis returned "
                              f"(limit {refire_limit_s:g} s)")
