"""The production history store: MongoDB through pymongo's async API.

Needs the ``mongo`` extra (``pip install 'conveyor[mongo]'``); ``open_store`` imports this
module only for ``mongodb://`` and ``mongodb+srv://`` URLs.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.uri_parser import parse_uri
from pymongo.write_concern import WriteConcern

from conveyor.store.base import (
    DAY_MS,
    ArgValue,
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
    next_cursor,
)
from conveyor.store.fold import DOC_DEFAULTS, UNFINISHED, Doc, Transform

Mongo = dict[str, Any]
Plan = tuple[list[InsertOne[Mongo] | ReplaceOne[Mongo]], dict[str, str]]

DEFAULT_DB = "conveyor"
COLLECTION = "jobs"
GAPS = "gaps"  # events trimmed before the recorder read them (see ``base.Gap``)
TTL_INDEX = "ended_at_ttl"
DUPLICATE_KEY = 11000
INDEX_OPTIONS_CONFLICT = (85, 86)
MAX_ROUNDS = 25  # optimistic-concurrency retries of one batch before giving up
SUMMARY_PROJECTION = {"attempts": 0, "versions": 0, "error_text": 0, "rev": 0, "ended_at": 0}
ENDED = ["completed", "dead", "canceled"]


class WriteConflict(RuntimeError):
    """Other writers kept changing the same jobs; the recorder retries the batch later."""


def _by_submitted(*fields: str) -> IndexModel:
    keys = [(f, ASCENDING) for f in fields] + [("submitted_ms", DESCENDING), ("_id", DESCENDING)]
    return IndexModel(keys, name="_".join((*fields, "submitted")))


INDEXES = [
    _by_submitted("status"),
    _by_submitted("queue", "status"),
    _by_submitted("queue"),
    _by_submitted("type"),
    _by_submitted("tenant"),
    _by_submitted("api_key_id"),
    _by_submitted(),
    IndexModel([("updated_ms", DESCENDING), ("_id", DESCENDING)], name="updated"),
    IndexModel([("finished_ms", DESCENDING), ("_id", DESCENDING)], name="finished"),
    IndexModel([("first_started_ms", ASCENDING)], name="first_started"),
    # One queue's time series reads only that queue's documents.
    IndexModel([("queue", ASCENDING), ("finished_ms", ASCENDING)], name="queue_finished"),
    IndexModel([("queue", ASCENDING), ("first_started_ms", ASCENDING)],
               name="queue_first_started"),
    IndexModel([("idempotency_key", ASCENDING)], name="idempotency_key", sparse=True),
]


class MongoStore(Store):
    """History in one MongoDB collection, one document per job (``_id`` = job id).

    Responsibilities: indexes, including a TTL index on ``ended_at`` that enforces retention;
    majority write concern when the URL names a replica set; applying batches as unordered
    bulk writes. Each document carries a ``rev`` token and a write replaces it only if
    ``rev`` is unchanged (inserts rely on the ``_id`` unique index), so recorders folding the
    same job concurrently never overwrite each other: the loser folds again.
    """

    def __init__(self, client: AsyncMongoClient[Mongo], collection: AsyncCollection[Mongo],
                 retention_days: float) -> None:
        self.client = client
        self.jobs = collection
        self.retention_days = retention_days

    @classmethod
    async def open(cls, url: str, *, retention_days: float = 30.0,
                   server_selection_timeout_ms: int = 30_000) -> MongoStore:
        """Connect, check the server answers, and create the indexes."""
        client: AsyncMongoClient[Mongo] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=server_selection_timeout_ms, tz_aware=True)
        try:
            db = client.get_default_database(DEFAULT_DB, write_concern=write_concern(url))
            await db.command("ping")
            store = cls(client, db[COLLECTION], retention_days)
            await store._ensure_indexes()
        except BaseException:
            await client.close()
            raise
        return store

    async def close(self) -> None:
        await self.client.close()

    async def _ensure_indexes(self) -> None:
        await self.jobs.create_indexes(INDEXES)
        ttl = int(self.retention_days * DAY_MS / 1000)
        try:
            await self.jobs.create_index(
                [("ended_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=ttl)
        except OperationFailure as exc:
            if exc.code not in INDEX_OPTIONS_CONFLICT:
                raise
            # The retention changed since the index was made: change it in place.
            await self.jobs.database.command(
                "collMod", COLLECTION, index={"name": TTL_INDEX, "expireAfterSeconds": ttl})

    # -- writing ---------------------------------------------------------------------------

    async def _update(self, changes: dict[str, Transform]) -> None:
        pending = changes
        for round_ in range(MAX_ROUNDS):
            pending = await self._update_round(pending)
            if not pending:
                return
            # Jitter, so writers that collided do not collide again in lockstep.
            await asyncio.sleep(random.uniform(0, 0.005 * (round_ + 1)))
        raise WriteConflict(f"{len(pending)} jobs kept changing under concurrent writers")

    async def _update_round(self, changes: dict[str, Transform]) -> dict[str, Transform]:
        """Transform and write; returns the jobs another writer changed meanwhile."""
        current = {d["_id"]: d async for d in self.jobs.find({"_id": {"$in": list(changes)}})}
        ops, tokens = await asyncio.to_thread(_plan, current, changes)
        if not ops or await self._bulk(ops) == len(ops):
            return {}
        written = self.jobs.find({"_id": {"$in": list(tokens)}}, {"rev": 1})
        revs = {d["_id"]: d.get("rev") async for d in written}
        return {job: changes[job] for job, token in tokens.items() if revs.get(job) != token}

    async def _bulk(self, ops: list[InsertOne[Mongo] | ReplaceOne[Mongo]]) -> int:
        """Run the writes; returns how many took effect. Duplicate keys (another writer
        inserted the job first) count as conflicts, any other error is raised."""
        try:
            result = await self.jobs.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            details = exc.details
            if any(e.get("code") != DUPLICATE_KEY for e in details.get("writeErrors", [])):
                raise
            if details.get("writeConcernErrors"):
                raise
            return int(details.get("nInserted", 0)) + int(details.get("nMatched", 0))
        return result.inserted_count + result.matched_count

    async def purge(self, before_ms: int) -> int:
        result = await self.jobs.delete_many({"ended_at": {"$lt": _date(before_ms)}})
        return result.deleted_count

    async def record_gap(self, gap: Gap) -> None:
        key = f"{gap.queue}/{gap.after_id}/{gap.end_id}"
        await self.jobs.database[GAPS].update_one(
            {"_id": key}, {"$setOnInsert": gap.model_dump()}, upsert=True)

    # -- reading ---------------------------------------------------------------------------

    async def gaps(self, queue: str | None = None) -> list[Gap]:
        query: Mongo = {} if queue is None else {"queue": queue}
        cursor = self.jobs.database[GAPS].find(query, {"_id": 0})
        found = [Gap.model_validate(d) async for d in cursor]
        return sorted(found, key=lambda g: (g.detected_ms, g.end_ms))

    async def get_job(self, job_id: str) -> StoredJob | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return StoredJob.from_doc(from_mongo(doc)) if doc else None

    async def search(self, query: JobQuery) -> JobPage:
        direction = DESCENDING if query.descending else ASCENDING
        cursor = self.jobs.find(search_filter(query), SUMMARY_PROJECTION)
        cursor = cursor.sort([(query.sort, direction), ("_id", direction)]).limit(query.limit)
        items = [StoredJob.from_doc(from_mongo(d), with_attempts=False) async for d in cursor]
        page_cursor = next_cursor(items, query)  # before confirming args: the scan goes on
        items = [j for j in items if args_match(j, query.args)]
        return JobPage(items=items, next_cursor=page_cursor)

    async def count_by_status(self, queue: str | None = None) -> dict[str, int]:
        match: Mongo = {"deleted_ms": None}
        if queue is not None:
            match["queue"] = queue
        counts = empty_counts()
        pipeline = [{"$match": match}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in await self.jobs.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    async def time_series(
        self, since_ms: int, until_ms: int, interval_ms: int,
        queue: str | None = None, type: str | None = None,
    ) -> list[TimeBucket]:
        check_series(since_ms, until_ms, interval_ms)
        base: Mongo = {"deleted_ms": None}
        base.update({k: v for k, v in (("queue", queue), ("type", type)) if v is not None})
        window = {"$gte": since_ms, "$lt": until_ms}
        ended_q = {**base, "finished_ms": window, "status": {"$in": ENDED}}
        ended = [_ended(d, since_ms, interval_ms) async for d in self.jobs.find(
            ended_q, {"finished_ms": 1, "status": 1, "started_ms": 1})]
        pickup_q = {**base, "first_started_ms": window}
        pickups = [_pickup(d, since_ms, interval_ms) async for d in self.jobs.find(
            pickup_q, {"first_started_ms": 1, "scheduled_ms": 1, "submitted_ms": 1})]
        return await asyncio.to_thread(
            build_series, since_ms, until_ms, interval_ms, ended, pickups)

    async def unfinished(self, queue: str | None = None) -> AsyncIterator[StoredJob]:
        query: Mongo = {"status": {"$in": [s.value for s in UNFINISHED]}, "deleted_ms": None}
        if queue is not None:
            query["queue"] = queue
        async for doc in self.jobs.find(query).sort("_id", ASCENDING):
            yield StoredJob.from_doc(from_mongo(doc))


def write_concern(url: str) -> WriteConcern | None:
    """Majority acknowledgement when the URL names a replica set (an SRV URL always does,
    in practice), unless the URL sets ``w`` itself."""
    if url.startswith("mongodb+srv://"):
        return None if re.search(r"[?&]w=", url) else WriteConcern(w="majority")
    options = parse_uri(url)["options"]
    if "w" in options or "replicaSet" not in options:
        return None
    return WriteConcern(w="majority")


def _plan(current: dict[str, Mongo], changes: dict[str, Transform]) -> Plan:
    """The writes for one round, and the rev token each written job will carry."""
    ops: list[InsertOne[Mongo] | ReplaceOne[Mongo]] = []
    tokens: dict[str, str] = {}
    for job_id, transform in changes.items():
        old = current.get(job_id)
        old_doc = from_mongo(old) if old is not None else None
        new = transform(old_doc)
        if new is None or new == old_doc:
            continue  # nothing to write (a replay, say)
        tokens[job_id] = token = uuid.uuid4().hex
        if old is None:
            ops.append(InsertOne(to_mongo(new, token)))
        else:
            ops.append(ReplaceOne({"_id": job_id, "rev": old.get("rev")}, to_mongo(new, token)))
    return ops, tokens


def to_mongo(doc: Doc, rev: str) -> Mongo:
    out = {k: v for k, v in doc.items() if k != "id"}
    out["_id"] = doc["id"]
    out["rev"] = rev
    # The TTL index needs a date; jobs that have not ended have none and never expire.
    out["ended_at"] = _date(doc["ended_ms"]) if doc["ended_ms"] is not None else None
    return out


def from_mongo(raw: Mongo) -> Doc:
    doc = dict(DOC_DEFAULTS)
    doc.update((k, v) for k, v in raw.items() if k in DOC_DEFAULTS)
    doc["id"] = raw["_id"]
    return doc


def search_filter(q: JobQuery) -> Mongo:
    """The find() filter of a search: criteria, range on the sort field and keyset cursor."""
    clauses: list[Mongo] = [{"deleted_ms": None}]
    if q.status:
        clauses.append({"status": {"$in": [s.value for s in q.status]}})
    for name, values in q.matches().items():
        clauses.append({name: values[0] if len(values) == 1 else {"$in": values}})
    if q.text:
        clauses.append({"error_text": {"$regex": re.escape(q.text), "$options": "i"}})
    if q.id_prefix:
        clauses.append({"_id": {"$regex": "^" + re.escape(q.id_prefix)}})  # a prefix: indexed
    clauses += [{"args": {"$regex": _arg_pattern(k, v)}} for k, v in (q.args or {}).items()]
    col = q.sort
    if col == "finished_ms":
        clauses.append({col: {"$ne": None}})
    if q.since_ms is not None:
        clauses.append({col: {"$gte": q.since_ms}})
    if q.until_ms is not None:
        clauses.append({col: {"$lt": q.until_ms}})
    if q.cursor:
        value, job_id = decode_cursor(q.cursor)
        op = "$lt" if q.descending else "$gt"
        clauses.append({"$or": [{col: {op: value}}, {col: value, "_id": {op: job_id}}]})
    return {"$and": clauses}


def _arg_pattern(key: str, value: ArgValue) -> str:
    """``"key": value`` as the JSON of the arguments spells it: a prefilter the search
    confirms on the decoded arguments (the key may also be nested)."""
    return (re.escape(orjson.dumps(key).decode()) + r"\s*:\s*"
            + re.escape(orjson.dumps(value).decode()) + r"\s*[,}]")


def args_match(job: StoredJob, args: dict[str, ArgValue] | None) -> bool:
    return not args or all(k in job.args and job.args[k] == v and type(job.args[k]) is type(v)
                           for k, v in args.items())


def _ended(d: Mongo, since_ms: int, interval_ms: int) -> tuple[int, str, int | None]:
    started = d.get("started_ms")
    duration = d["finished_ms"] - started if started is not None else None
    return (d["finished_ms"] - since_ms) // interval_ms, d["status"], duration


def _pickup(d: Mongo, since_ms: int, interval_ms: int) -> tuple[int, int]:
    due = max(d.get("scheduled_ms") or d["submitted_ms"], d["submitted_ms"])
    first = d["first_started_ms"]
    return (first - since_ms) // interval_ms, first - due


def _date(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
