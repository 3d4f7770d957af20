"""The CI tier of the chaos suite (``make chaos`` is the long one; see docs/chaos.md).

10,000 jobs through 4 real worker processes while the driver kills 5 busy workers with
``kill -9`` (each replaced), kills the Redis under test with ``kill -9`` and restarts it on
the same port and AOF (``appendfsync always``), freezes a busy worker with SIGSTOP past its
lease, and kills the history recorder and a producer process mid-batch. A ledger on a
second, never-faulted server records every execution. Set ``CHAOS_SEED`` to replay a run's
fault schedule (the seed is printed), and ``CHAOS_WORKDIR`` to keep its files (logs, AOF,
history, ``faults.json``) in a folder of your choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chaos.run import ChaosConfig, run_chaos
from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
JOBS = 10_000
KILLS = 5


@pytest.mark.timeout(480)
def test_chaos_tier_loses_nothing_and_explains_every_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else None
    workdir = Path(os.environ.get("CHAOS_WORKDIR") or tmp_path / "chaos")
    cfg = ChaosConfig(jobs=JOBS, kills=KILLS, workers=4, concurrency=25, rate=200.0,
                      seed=seed, workdir=workdir)
    outcome = run_chaos(cfg)
    r = outcome.report

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with (artifacts / "chaos-tier.txt").open("w") as sink:
        outcome.print(Console(file=sink, width=110, color_system=None))
    with capsys.disabled():
        print()
        outcome.print(Console(width=110))
        print(f"(the Redis under test ran with appendfsync always; workdir {outcome.workdir})")

    kinds = [f.kind for f in r.faults if f.at]
    assert kinds.count("worker kill") == KILLS
    assert {"redis restart", "sigstop", "recorder kill", "producer kill"} <= set(kinds)
    assert r.accepted == JOBS
    assert r.lost == [], f"{len(r.lost)} accepted jobs lost"
    assert r.completed + r.dead == JOBS
    assert r.doubled == 0
    assert r.unattributed == [], f"{len(r.unattributed)} duplicate executions unexplained"
    assert r.attributed["killed worker"] > 0  # the kills landed mid-job
    assert r.latencies and max(r.latencies) <= 10.0  # orphans re-run within 10 s
    assert r.store_matching == JOBS  # the history survived its recorder's kill -9
    assert r.ok, r.problems
