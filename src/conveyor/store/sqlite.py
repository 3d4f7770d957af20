"""The embedded history store: one SQLite file in WAL mode, through aiosqlite."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from conveyor.job import Status
from conveyor.store.base import (
    ARGS_SCAN_ROWS,
    SORT_FIELDS,
    Gap,
    JobPage,
    JobQuery,
    Store,
    StoredJob,
    TimeBucket,
    build_series,
    check_series,
    decode_cursor,
    empty_counts,
    encode_cursor,
    next_cursor,
)
from conveyor.store.fold import DOC_DEFAULTS, DOC_FIELDS, UNFINISHED, Doc, Transform

log = logging.getLogger("conveyor.store.sqlite")

# Two tables: ``jobs`` holds the scalar columns every query filters, sorts and counts on, so its
# rows stay small and scans stay fast; ``job_docs`` holds the bulky JSON (args, result,
# attempts with tracebacks), read only for the rows a query returns.
NARROW = (
    "id", "queue", "type", "status", "priority", "attempt", "max_attempts", "worker",
    "progress", "progress_message", "cancel_requested", "submitted_ms", "scheduled_ms",
    "due_ms", "started_ms", "first_started_ms", "finished_ms", "updated_ms", "deleted_ms",
    "ended_ms", "idempotency_key", "tenant", "api_key_id", "seq", "incarnation", "error_text",
)
WIDE = ("id", "args", "result", "meta", "error", "attempts", "versions")
SUMMARY_WIDE = ("args", "result", "meta", "error")  # what a search returns of job_docs
JSON_COLUMNS = frozenset({"error", "attempts", "versions"})
assert set(NARROW) | set(WIDE) == set(DOC_FIELDS)
SCHEMA_VERSION = 1
CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit
ROW_CACHE = 20_000  # jobs whose committed rows the writer keeps (1-1.5 KB each)
PURGE_CHUNK = 5000  # rows per purge transaction, so the recorder never waits long
LIVE = "WHERE deleted_ms IS NULL"  # the partial-index condition every listing query repeats
MIN_FTS = 3  # the trigram index matches substrings of 3 characters or more

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, queue TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
        priority TEXT, attempt INTEGER, max_attempts INTEGER, worker TEXT, progress REAL,
        progress_message TEXT, cancel_requested INTEGER, submitted_ms INTEGER,
        scheduled_ms INTEGER, due_ms INTEGER, started_ms INTEGER, first_started_ms INTEGER,
        finished_ms INTEGER, updated_ms INTEGER, deleted_ms INTEGER, ended_ms INTEGER,
        idempotency_key TEXT, tenant TEXT, api_key_id TEXT, seq INTEGER NOT NULL,
        incarnation INTEGER NOT NULL DEFAULT 0, error_text TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS job_docs (
        id TEXT PRIMARY KEY, args TEXT, result TEXT, meta TEXT, error TEXT,
        attempts TEXT NOT NULL, versions TEXT NOT NULL)""",
    # One index per query shape: (filter columns..., sort column, id) serves both the filter
    # and the keyset cursor. Partial on live jobs, which every listing asks for.
    f"CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_status_updated ON jobs (status, updated_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_status_finished ON jobs (status, finished_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_queue_status ON jobs "
    f"(queue, status, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (queue, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_type ON jobs (type, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_api_key ON jobs (api_key_id, submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_ms, id) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_ms, id) {LIVE}",
    # These two also cover the time series (their trailing columns), which read many rows.
    f"CREATE INDEX IF NOT EXISTS jobs_finished ON jobs "
    f"(finished_ms, id, status, started_ms, queue, type) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_first_started ON jobs "
    f"(first_started_ms, scheduled_ms, submitted_ms, queue, type) {LIVE}",
    # One queue's series (the dashboard's metrics page) reads only that queue's rows: at a
    # million jobs a day of one queue drops from seconds to under one.
    f"CREATE INDEX IF NOT EXISTS jobs_queue_finished ON jobs "
    f"(queue, finished_ms, status, started_ms) {LIVE}",
    f"CREATE INDEX IF NOT EXISTS jobs_queue_first_started ON jobs "
    f"(queue, first_started_ms, scheduled_ms, submitted_ms) {LIVE}",
    "CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (ended_ms) WHERE ended_ms IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS jobs_ikey ON jobs (idempotency_key) "
    "WHERE idempotency_key IS NOT NULL",
    "CREATE TRIGGER IF NOT EXISTS jobs_delete AFTER DELETE ON jobs BEGIN "
    "DELETE FROM job_docs WHERE id = old.id; END",
    # Events trimmed before the recorder read them (see ``base.Gap``): a few rows, ever.
    """CREATE TABLE IF NOT EXISTS gaps (
        queue TEXT NOT NULL, after_id TEXT NOT NULL, end_id TEXT NOT NULL,
        end_ms INTEGER NOT NULL, lost INTEGER, detected_ms INTEGER NOT NULL,
        PRIMARY KEY (queue, after_id, end_id))""",
]
GAP_COLUMNS = ("queue", "after_id", "end_id", "end_ms", "lost", "detected_ms")
# Error text search: a trigram full-text index over jobs.error_text, kept by triggers (the
# external-content pattern of the FTS5 documentation). Skipped where SQLite lacks FTS5.
FTS_SCHEMA = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS job_errors USING fts5(error_text, content='jobs', "
    "content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS job_errors_insert AFTER INSERT ON jobs "
    "WHEN new.error_text != '' BEGIN "
    "INSERT INTO job_errors(rowid, error_text) VALUES (new.rowid, new.error_text); END",
    "CREATE TRIGGER IF NOT EXISTS job_errors_update AFTER UPDATE OF error_text ON jobs "
    "WHEN old.error_text IS NOT new.error_text BEGIN "
    "INSERT INTO job_errors(job_errors, rowid, error_text) "
    "SELECT 'delete', old.rowid, old.error_text WHERE old.error_text != ''; "
    "INSERT INTO job_errors(rowid, error_text) "
    "SELECT new.rowid, new.error_text WHERE new.error_text != ''; END",
    "CREATE TRIGGER IF NOT EXISTS job_errors_delete AFTER DELETE ON jobs "
    "WHEN old.error_text != '' BEGIN "
    "INSERT INTO job_errors(job_errors, rowid, error_text) "
    "VALUES ('delete', old.rowid, old.error_text); END",
]


def _upsert(table: str, columns: Sequence[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT(id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id"))


UPSERT_JOBS = _upsert("jobs", NARROW)
UPSERT_DOCS = _upsert("job_docs", WIDE)
SELECT_FULL = (f"SELECT {', '.join('j.' + c for c in NARROW)}, "
               f"{', '.join('d.' + c for c in WIDE[1:])} "
               "FROM jobs j JOIN job_docs d ON d.id = j.id")
FULL_COLUMNS = (*NARROW, *WIDE[1:])
SUMMARY_COLUMNS = (*NARROW, *SUMMARY_WIDE)
Rows = tuple[tuple[Any, ...], tuple[Any, ...]]  # (jobs row, job_docs row) of one job


class SqliteStore(Store):
    """History in one SQLite file.

    Responsibilities: the schema, its indexes and the error full-text index; a writer
    connection whose transactions apply batches (``BEGIN IMMEDIATE``, read the batch's jobs,
    fold, upsert, commit) and a reader connection for queries, so a search never waits for a
    batch (WAL). Both run in aiosqlite's threads and folding runs in a worker thread: the
    event loop never blocks. ``BEGIN IMMEDIATE`` also serializes writers in other processes,
    so read-fold-write is safe with several recorders.
    """

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
        retention_days: float, fts: bool,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._cache = RowCache(ROW_CACHE)
        self._fts = fts
        self.retention_days = retention_days

    @classmethod
    async def open(
        cls, path: str | Path, *, retention_days: float = 30.0, busy_timeout_ms: int = 5000,
        synchronous: str = "FULL",
    ) -> SqliteStore:
        """Open (creating file, parent folders and schema) the store at ``path``.

        ``synchronous=FULL`` fsyncs each commit: the recorder acknowledges events once the
        store committed, so a commit must survive a power loss too.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path, busy_timeout_ms, synchronous)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            for statement in SCHEMA:
                await writer.execute(statement)
            fts = await _create_fts(writer)
            await writer.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await _analyze(writer)
            reader = await _connect(path, busy_timeout_ms, synchronous)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader, retention_days, fts)

    async def close(self) -> None:
        async with self._write_lock:
            try:
                await self._writer.execute("PRAGMA optimize")
            finally:
                await self._writer.close()
                await self._reader.close()

    # -- writing ---------------------------------------------------------------------------

    async def _update(self, changes: dict[str, Transform]) -> None:
        async with self._write_lock:
            await self._transaction(changes)

    async def _transaction(self, changes: dict[str, Transform]) -> None:
        w = self._writer
        await w.execute("BEGIN IMMEDIATE")
        try:
            rows = await self._rows(w, list(changes))
            writes, written = await asyncio.to_thread(_transform_rows, rows, changes)
            for sql, params in writes.items():
                await w.executemany(sql, params)
            await w.commit()
        except BaseException:
            self._cache.clear()
            await _rollback(w)
            raise
        self._cache.remember(written)

    async def _rows(self, conn: aiosqlite.Connection, ids: list[str]) -> dict[str, Rows]:
        """The stored rows of ``ids``: from the cache of rows this connection committed, if
        no other connection committed since (``data_version``, read inside the transaction,
        so nobody commits until it ends), else from the file."""
        async with conn.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        self._cache.check(row[0] if row else None)
        rows = self._cache.get(ids)
        missing = [i for i in ids if i not in rows]
        if missing:
            rows.update(await self._load(conn, missing))
        return rows

    @staticmethod
    async def _load(conn: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, Rows]:
        rows: dict[str, Rows] = {}
        n = len(NARROW)
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i:i + CHUNK]
            sql = f"{SELECT_FULL} WHERE j.id IN ({_marks(chunk)})"
            async with conn.execute(sql, chunk) as cur:
                for row in await cur.fetchall():
                    rows[row[0]] = (tuple(row[:n]), (row[0], *row[n:]))
        return rows

    async def purge(self, before_ms: int) -> int:
        total = 0
        while True:
            async with self._write_lock, self._writer.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE ended_ms < ? LIMIT ?)",
                (before_ms, PURGE_CHUNK),
            ) as cur:
                deleted = cur.rowcount
            if deleted:
                self._cache.clear()
            total += deleted
            if deleted < PURGE_CHUNK:
                return total

    async def apply_retention(self, now_ms: int | None = None) -> int:
        """Purge, then refresh the planner's statistics (the recorder calls this hourly)."""
        purged = await super().apply_retention(now_ms)
        async with self._write_lock:
            await _analyze(self._writer)
        return purged

    async def record_gap(self, gap: Gap) -> None:
        sql = (f"INSERT OR IGNORE INTO gaps ({', '.join(GAP_COLUMNS)}) "
               f"VALUES ({_marks(GAP_COLUMNS)})")
        async with self._write_lock:
            await self._writer.execute(sql, [getattr(gap, c) for c in GAP_COLUMNS])
            await self._writer.commit()

    # -- reading ---------------------------------------------------------------------------

    async def gaps(self, queue: str | None = None) -> list[Gap]:
        sql = f"SELECT {', '.join(GAP_COLUMNS)} FROM gaps"
        params: list[Any] = []
        if queue is not None:
            sql += " WHERE queue = ?"
            params.append(queue)
        async with self._reader.execute(sql + " ORDER BY detected_ms, end_ms", params) as cur:
            rows = await cur.fetchall()
        return [Gap.model_validate(dict(zip(GAP_COLUMNS, row, strict=True))) for row in rows]

    async def get_job(self, job_id: str) -> StoredJob | None:
        async with self._reader.execute(f"{SELECT_FULL} WHERE j.id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return StoredJob.from_doc(row_to_doc(FULL_COLUMNS, row)) if row else None

    async def search(self, query: JobQuery) -> JobPage:
        bound = await self._args_bound(query) if query.args else None
        sql, params = search_sql(query, fts=self._fts, bound=bound)
        async with self._reader.execute(sql, params) as cur:
            rows = await cur.fetchall()
        items = [StoredJob.from_doc(row_to_doc(SUMMARY_COLUMNS, r), with_attempts=False)
                 for r in rows]
        cursor = next_cursor(items, query)
        if cursor is None and bound is not None:  # the scan stopped before the page filled
            cursor = encode_cursor(*bound)
        return JobPage(items=items, next_cursor=cursor)

    async def _args_bound(self, query: JobQuery) -> tuple[int, str] | None:
        sql, params = args_bound_sql(query, fts=self._fts)
        async with self._reader.execute(sql, params) as cur:
            row = await cur.fetchone()
        return (int(row[0] or 0), str(row[1])) if row else None

    async def count_by_status(self, queue: str | None = None) -> dict[str, int]:
        sql = f"SELECT status, COUNT(*) FROM jobs {LIVE}"
        params: list[Any] = []
        if queue is not None:
            sql += " AND queue = ?"
            params.append(queue)
        counts = empty_counts()
        async with self._reader.execute(sql + " GROUP BY status", params) as cur:
            for status, n in await cur.fetchall():
                counts[status] = n
        return counts

    async def time_series(
        self, since_ms: int, until_ms: int, interval_ms: int,
        queue: str | None = None, type: str | None = None,
    ) -> list[TimeBucket]:
        check_series(since_ms, until_ms, interval_ms)
        extra, params = _queue_type_filter(queue, type)
        # '+status' keeps the planner on the time index: the range is the selective part.
        # Bucket index, duration and latency are computed here, close to the data.
        ended_sql = (
            "SELECT (finished_ms - ?) / ?, status, finished_ms - started_ms FROM jobs "
            f"{LIVE} AND finished_ms >= ? AND finished_ms < ? "
            f"AND +status IN ('completed', 'dead', 'canceled'){extra}")
        pickup_sql = (
            "SELECT (first_started_ms - ?) / ?, first_started_ms - MAX(COALESCE(scheduled_ms, "
            f"submitted_ms), submitted_ms) FROM jobs {LIVE} AND first_started_ms >= ? "
            f"AND first_started_ms < ?{extra}")
        params = [since_ms, interval_ms, since_ms, until_ms, *params]
        async with self._reader.execute(ended_sql, params) as cur:
            ended = list(await cur.fetchall())
        async with self._reader.execute(pickup_sql, params) as cur:
            pickups = list(await cur.fetchall())
        return await asyncio.to_thread(
            build_series, since_ms, until_ms, interval_ms, ended, pickups)  # type: ignore[arg-type]

    async def unfinished(self, queue: str | None = None) -> AsyncIterator[StoredJob]:
        for status in UNFINISHED:
            async for job in self._unfinished_of(status, queue):
                yield job

    async def _unfinished_of(self, status: Status, queue: str | None) -> AsyncIterator[StoredJob]:
        after: tuple[int, str] = (-1, "")
        while True:
            sql = (f"{SELECT_FULL} WHERE j.deleted_ms IS NULL AND j.status = ? "
                   "AND (j.submitted_ms, j.id) > (?, ?)")
            params: list[Any] = [status.value, *after]
            if queue is not None:
                sql += " AND j.queue = ?"
                params.append(queue)
            sql += " ORDER BY j.submitted_ms, j.id LIMIT ?"
            async with self._reader.execute(sql, [*params, CHUNK]) as cur:
                rows = list(await cur.fetchall())
            for row in rows:
                yield StoredJob.from_doc(row_to_doc(FULL_COLUMNS, row))
            if len(rows) < CHUNK:
                return
            last = rows[-1]
            after = (last[NARROW.index("submitted_ms")], last[0])


async def _connect(path: Path, busy_timeout_ms: int, synchronous: str) -> aiosqlite.Connection:
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous={synchronous!r}: use OFF, NORMAL, FULL or EXTRA")
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    conn = await aiosqlite.connect(path, isolation_level=None)
    for pragma in (f"busy_timeout={int(busy_timeout_ms)}", f"synchronous={synchronous.upper()}",
                   # Memory-mapped reads and a 32 MB page cache per connection: searches
                   # touch pages all over the file.
                   "mmap_size=268435456", "cache_size=-32768", "temp_store=MEMORY"):
        await conn.execute(f"PRAGMA {pragma}")
    return conn


async def _analyze(conn: aiosqlite.Connection) -> None:
    """Statistics for the query planner, sampled (about 10 ms on 100,000 jobs): without
    them it may pick an index that does not fit the data."""
    await conn.execute("PRAGMA analysis_limit=400")
    await conn.execute("ANALYZE")


async def _create_fts(conn: aiosqlite.Connection) -> bool:
    try:
        for statement in FTS_SCHEMA:
            await conn.execute(statement)
    except sqlite3.OperationalError as exc:
        log.warning("SQLite without FTS5 trigram (%s): error search scans the table", exc)
        return False
    return True


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.rollback()
    except Exception:  # the original error matters more; this one is only logged
        log.exception("rollback of the history store failed")


def _transform_rows(
    rows: dict[str, Rows], changes: dict[str, Transform]
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Rows]]:
    """The writes of a batch, statement -> its parameter rows, and the rows they leave.

    Each job's rows are transformed (its events folded in); a new job's rows inserted whole,
    a stored job's rows updated in only the columns that changed, so SQLite touches only the
    indexes on those columns (updating every column rewrote all 17 index entries of a row,
    most of the cost of an event); unchanged rows left out."""
    writes: dict[str, list[tuple[Any, ...]]] = {}
    written: dict[str, Rows] = {}
    for job_id, transform in changes.items():
        old = rows.get(job_id)
        new = transform(row_to_doc(FULL_COLUMNS, (*old[0], *old[1][1:])) if old else None)
        if new is None:
            continue
        narrow, wide = doc_to_rows(new)
        if old is None:
            writes.setdefault(UPSERT_JOBS, []).append(narrow)
            writes.setdefault(UPSERT_DOCS, []).append(wide)
            written[job_id] = (narrow, wide)
            continue
        for table, columns, before, after in (("jobs", NARROW, old[0], narrow),
                                              ("job_docs", WIDE, old[1], wide)):
            changed = tuple(i for i in range(1, len(after)) if after[i] != before[i])
            if changed:
                writes.setdefault(_update_sql(table, columns, changed), []).append(
                    (*[after[i] for i in changed], job_id))
                written[job_id] = (narrow, wide)
    return writes, written


class RowCache:
    """The rows of the jobs the writer connection committed last, so that a job's next
    events (a job is usually submitted, started and finished within seconds) are folded
    without reading its rows back (reading a row and building its values was about a
    tenth of the recorder's CPU per event in the history benchmark).

    Valid only while no other connection writes the file: ``check`` is given SQLite's
    ``data_version`` at the start of each write transaction and forgets everything when it
    moved; the store clears the cache itself when its own connection deletes rows or a
    transaction fails. Holds at most ``size`` jobs, the least recently written dropped
    first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[str, Rows] = OrderedDict()
        self._version: object = None

    def check(self, data_version: object) -> None:
        if data_version != self._version:
            self._rows.clear()
            self._version = data_version

    def get(self, ids: Iterable[str]) -> dict[str, Rows]:
        cached = self._rows
        return {i: cached[i] for i in ids if i in cached}

    def remember(self, written: dict[str, Rows]) -> None:
        cached = self._rows
        for job_id, rows in written.items():
            cached[job_id] = rows
            cached.move_to_end(job_id)
        while len(cached) > self.size:
            cached.popitem(last=False)

    def clear(self) -> None:
        self._rows.clear()
        self._version = None


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...], changed: tuple[int, ...]) -> str:
    """UPDATE of the ``changed`` columns (indexes into ``columns``) of one row by id."""
    return (f"UPDATE {table} SET {', '.join(columns[i] + ' = ?' for i in changed)} "
            "WHERE id = ?")


def doc_to_rows(doc: Doc) -> Rows:
    return _encoded(doc, NARROW), _encoded(doc, WIDE)


def row_to_doc(columns: tuple[str, ...], row: Iterable[Any]) -> Doc:
    doc = dict(DOC_DEFAULTS)
    doc.update(zip(columns, row, strict=True))
    for column, decode in _decoders(columns):
        doc[column] = decode(doc[column])
    return doc


def _encoded(doc: Doc, columns: tuple[str, ...]) -> tuple[Any, ...]:
    values = [doc[c] for c in columns]
    for i, encode in _encoders(columns):
        values[i] = encode(values[i])
    return tuple(values)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json_value(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


# How a document value becomes a column value and back, for the few columns not stored as
# they are: every batch converts each of its rows, so only these are called per value.
_ENCODE: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(JSON_COLUMNS, _json_text), "cancel_requested": int}
_DECODE: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(JSON_COLUMNS, _json_value), "cancel_requested": bool}


@functools.cache
def _encoders(columns: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    return tuple((i, _ENCODE[c]) for i, c in enumerate(columns) if c in _ENCODE)


@functools.cache
def _decoders(columns: tuple[str, ...]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    return tuple((c, _DECODE[c]) for c in columns if c in _DECODE)


def search_sql(q: JobQuery, fts: bool = True,
               bound: tuple[int, str] | None = None) -> tuple[str, list[Any]]:
    """The SELECT for a search: the page is chosen on ``jobs`` alone (filters, keyset cursor,
    order, limit), and only its rows are joined with their ``job_docs``.

    Several statuses become one branch per status, merged: each branch walks its own
    (status, sort column) index in order and stops after ``limit`` rows, where a single
    ``status IN (...)`` would collect and sort every matching job.
    """
    col = q.sort
    assert col in SORT_FIELDS  # guaranteed by JobQuery; it is interpolated below
    where, params = _search_filters(q, fts)
    order = "DESC" if q.descending else "ASC"
    tail = f"ORDER BY {col} {order}, id {order} LIMIT ?"
    statuses = [s.value for s in q.status or []]
    if q.args:
        page, page_params = _args_page(q, where, params, statuses, tail, bound)
    elif len(statuses) <= 1:
        if statuses:
            where, params = [*where, "status = ?"], [*params, statuses[0]]
        page = f"SELECT {', '.join(NARROW)} FROM jobs WHERE {' AND '.join(where)} {tail}"
        page_params = [*params, q.limit]
    else:
        branch = (f"SELECT * FROM (SELECT {', '.join(NARROW)} FROM jobs "
                  f"WHERE {' AND '.join(where)} AND status = ? {tail})")
        page = f"SELECT * FROM ({' UNION ALL '.join([branch] * len(statuses))}) {tail}"
        page_params = [v for st in statuses for v in (*params, st, q.limit)] + [q.limit]
    sql = (f"SELECT {', '.join('p.' + c for c in NARROW)}, "
           f"{', '.join('d.' + c for c in SUMMARY_WIDE)} FROM ({page}) AS p "
           f"JOIN job_docs d ON d.id = p.id ORDER BY p.{col} {order}, p.id {order}")
    return sql, page_params


def _args_page(q: JobQuery, where: list[str], params: list[Any], statuses: list[str],
               tail: str, bound: tuple[int, str] | None) -> tuple[str, list[Any]]:
    """The page of an argument search: the jobs that pass the other filters, walked in sort
    order down to ``bound`` (the ``ARGS_SCAN_ROWS``-th of them), whose arguments match."""
    if statuses:
        where, params = [*where, f"status IN ({_marks(statuses)})"], [*params, *statuses]
    if bound is not None:
        where = [*where, f"({q.sort}, id) {'>=' if q.descending else '<='} (?, ?)"]
        params = [*params, *bound]
    checks, values = [], []
    for key, value in (q.args or {}).items():
        checks.append("json_extract(a.args, ?) IS ?")
        values += [f'$."{key}"', int(value) if isinstance(value, bool) else value]
    match = (f"EXISTS (SELECT 1 FROM job_docs a WHERE a.id = jobs.id "
             f"AND {' AND '.join(checks)})")
    page = f"SELECT {', '.join(NARROW)} FROM jobs WHERE {' AND '.join([*where, match])} {tail}"
    return page, [*params, *values, q.limit]


def args_bound_sql(q: JobQuery, fts: bool = True) -> tuple[str, list[Any]]:
    """The sort value and id of the ``ARGS_SCAN_ROWS``-th job that passes the filters of an
    argument search but its arguments: where the page's scan stops."""
    where, params = _search_filters(q, fts)
    statuses = [s.value for s in q.status or []]
    if statuses:
        where, params = [*where, f"status IN ({_marks(statuses)})"], [*params, *statuses]
    order = "DESC" if q.descending else "ASC"
    return (f"SELECT {q.sort}, id FROM jobs WHERE {' AND '.join(where)} ORDER BY {q.sort} "
            f"{order}, id {order} LIMIT 1 OFFSET {ARGS_SCAN_ROWS - 1}", params)


def _search_filters(q: JobQuery, fts: bool) -> tuple[list[str], list[Any]]:
    """WHERE clauses (and their parameters) of a search, but for its statuses."""
    where: list[str] = [LIVE.removeprefix("WHERE ")]
    params: list[Any] = []
    for name, values in q.matches().items():
        where.append(f"{name} = ?" if len(values) == 1
                     else f"{name} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    if q.text and fts and len(q.text) >= MIN_FTS:
        # A quoted phrase of trigrams is a case-insensitive substring match.
        where.append("rowid IN (SELECT rowid FROM job_errors WHERE job_errors MATCH ?)")
        params.append('"' + q.text.replace('"', '""') + '"')
    elif q.text:
        where.append("error_text LIKE ? ESCAPE '\\'")
        params.append(f"%{_escape_like(q.text)}%")
    if q.id_prefix:
        where.append("id >= ? AND id < ?")
        params += [q.id_prefix, q.id_prefix + "\U0010ffff"]
    if q.sort == "finished_ms":
        where.append("finished_ms IS NOT NULL")
    if q.since_ms is not None:
        where.append(f"{q.sort} >= ?")
        params.append(q.since_ms)
    if q.until_ms is not None:
        where.append(f"{q.sort} < ?")
        params.append(q.until_ms)
    if q.cursor:
        where.append(f"({q.sort}, id) {'<' if q.descending else '>'} (?, ?)")
        params += list(decode_cursor(q.cursor))
    return where, params


def _queue_type_filter(queue: str | None, type: str | None) -> tuple[str, list[Any]]:
    sql, params = "", list[Any]()
    if queue is not None:
        sql += " AND queue = ?"
        params.append(queue)
    if type is not None:
        sql += " AND type = ?"
        params.append(type)
    return sql, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))
