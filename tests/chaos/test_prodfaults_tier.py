"""The CI tier of the production-fault run (``python -m chaos.prodfaults``; the long one is
part of ``make chaos``; see docs/chaos.md).

Jobs flow at 80/s through two real workers (default liveness settings) that reach Redis
through a TCP proxy, while a scheduler fires a per-second cron job, and the driver injects
in turn: a 12 s Redis outage (past every client retry window), an OOM window, READONLY,
BUSY, LOADING, an 8 s event-loop stall in a handler, a paused network path and connection
resets. Nothing accepted may be lost, every duplicate execution must come from a fault (none
from the stall), and every cron tick is accounted for. ``CHAOS_SEED`` / ``CHAOS_WORKDIR`` as
in the other tier; the tables go to ``test-artifacts/prodfaults-tier.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chaos.prodfaults import run_prodfaults, short_config
from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)
def test_production_faults_lose_nothing_and_cron_accounts_for_every_tick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else None
    workdir = Path(os.environ.get("CHAOS_WORKDIR") or tmp_path / "prodfaults")
    cfg = short_config(seed=seed, workdir=workdir, drain_timeout=60.0)
    outcome = run_prodfaults(cfg)
    report = outcome.report
    r = report.base

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with (artifacts / "prodfaults-tier.txt").open("w") as sink:
        outcome.print(Console(file=sink, width=110, color_system=None))
    with capsys.disabled():
        print()
        outcome.print(Console(width=110))
        print(f"(workdir {outcome.workdir})")

    assert [f.kind for f in outcome.faults if f.at] == list(cfg.faults)
    assert r.accepted > 0
    assert r.lost == [], f"{len(r.lost)} accepted jobs never ended"
    assert r.doubled == 0
    assert r.unattributed == [], f"{len(r.unattributed)} duplicate executions unexplained"
    assert r.attributed["stall"] == 0, "a worker whose handler blocked its loop was judged dead"
    assert r.dead_poison == 0 and r.dead_other == 0
    assert (report.stall_runs, report.stall_status) == (1, "completed")
    assert report.ticks.ok, report.ticks.problems
    assert report.ok, [*r.problems, *report.problems]
