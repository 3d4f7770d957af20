"""A large job history written straight into a SQLite history store: 100,000 jobs in a few
seconds, where recording them from events would take minutes. Jobs are spread over the last
7 days across queues and types, mostly completed, some dead, with run times and pickup
delays, so counts, searches and every metrics range have data."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from conveyor.store.sqlite import NARROW, SCHEMA, WIDE, SqliteStore

DAY_MS = 86_400_000
QUEUES = ("demo", "reports", "billing")
TYPES = ("demo.fast", "demo.flaky", "demo.slow")


def _job(i: int, now_ms: int, rnd: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    finished = now_ms - int(rnd.random() ** 2 * 7 * DAY_MS) - 1000  # denser near now
    run_ms = int(rnd.lognormvariate(4, 1))
    pickup = int(rnd.lognormvariate(3, 1))
    started = finished - run_ms
    submitted = started - pickup
    dead = i % 20 == 0
    error = f"RuntimeError: volume boom #{i % 7}" if dead else ""
    row: dict[str, Any] = dict.fromkeys(NARROW)
    row.update(id=f"vol{i:07d}", queue=QUEUES[i % len(QUEUES)], type=TYPES[i % len(TYPES)],
               status="dead" if dead else "completed", priority="normal", attempt=1,
               max_attempts=1, submitted_ms=submitted, scheduled_ms=submitted,
               due_ms=submitted, started_ms=started, first_started_ms=started,
               finished_ms=finished, updated_ms=finished, ended_ms=finished, seq=4,
               incarnation=0, error_text=error, cancel_requested=0,
               worker="volume-worker")
    doc = {"id": row["id"], "args": f'{{"order_id": {i}}}', "result": "null", "meta": "{}",
           "error": (orjson.dumps({"type": "RuntimeError", "message": f"volume boom #{i % 7}"})
                     .decode() if dead else None),
           "attempts": "[]", "versions": "{}"}
    return row, doc


def fill_sqlite(path: Path, n: int, now_ms: int, seed: int = 16) -> None:
    """Create the store at ``path`` with ``n`` finished jobs: the rows go in before the
    indexes and the error index are built (``SqliteStore.open`` builds them next), which is
    many times faster than inserting into an indexed table."""
    rnd = random.Random(seed)
    jobs_sql = f"INSERT INTO jobs ({', '.join(NARROW)}) VALUES ({', '.join('?' * len(NARROW))})"
    docs_sql = f"INSERT INTO job_docs ({', '.join(WIDE)}) VALUES ({', '.join('?' * len(WIDE))})"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous=OFF")
        with db:
            for statement in SCHEMA[:2]:  # the two tables, no index yet
                db.execute(statement)
            pairs = [_job(i, now_ms, rnd) for i in range(n)]
            db.executemany(jobs_sql, [tuple(r[c] for c in NARROW) for r, _ in pairs])
            db.executemany(docs_sql, [tuple(d[c] for c in WIDE) for _, d in pairs])
    finally:
        db.close()


async def build_store(path: Path, n: int, now_ms: int) -> None:
    """``fill_sqlite``, then the store's own schema and indexes over the rows, and its error
    index rebuilt (its triggers were not there when the rows went in)."""
    fill_sqlite(path, n, now_ms)
    await (await SqliteStore.open(path)).close()
    db = sqlite3.connect(path)
    try:
        with db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_errors'").fetchone():
                db.execute("INSERT INTO job_errors(job_errors) VALUES ('rebuild')")
    finally:
        db.close()
