"""Fold job events into the job document every store keeps: the one merge both stores share.

The recorder may apply events twice (a redelivery after a crash) or out of order (a second
recorder claims entries a dead one left pending while newer ones were already applied). The
fold is therefore idempotent and order-independent:

- Job fields are grouped; each group remembers the ``seq`` of the event that last wrote it
  (``versions``) and only a newer event overwrites it. So an old event never moves a job
  backwards, and a replayed one changes nothing.
- Attempts are keyed by (incarnation, attempt number) and have two groups of their own,
  ``start`` (from ``active``) and ``end`` (from the event that closed the attempt), so a
  replayed event cannot add an attempt twice.
- ``seq`` is the maximum seen, ``first_started_ms`` the minimum.

A job Redis lost and recovery enqueued again starts a new *life* (``new_life``): its events
count ``seq`` from 1 again, so the store forgets the versions of the old life, and keeps its
attempts apart under the previous ``incarnation`` number.

Documents are plain dicts (``Doc``) on this hot path; ``base.StoredJob`` is their public form.
``args``, ``result`` and ``meta`` stay JSON text: any JSON value round-trips, including
integers no BSON or SQLite type holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from conveyor.job import Status
from conveyor.store.events import Event

Doc = dict[str, Any]
Patch = tuple[str, dict[str, Any]]

STATUSES = frozenset(s.value for s in Status)
UNFINISHED = (Status.QUEUED, Status.DELAYED, Status.RETRYING, Status.ACTIVE)
ATTEMPT_END_EVENTS = frozenset(
    {"completed", "retrying", "dead", "canceled", "requeued", "released", "deferred"})
TERMINAL_STATUSES = frozenset({"completed", "dead", "canceled"})
LOST = "lost"  # outcome of an attempt whose job was lost with Redis and re-enqueued

DOC_DEFAULTS: Doc = {
    "id": "", "queue": "", "type": "", "status": Status.QUEUED.value, "priority": "normal",
    "args": "{}", "result": None, "attempt": 0, "max_attempts": None, "worker": None,
    "error": None, "error_text": "", "progress": None, "progress_message": None,
    "cancel_requested": False, "submitted_ms": None, "scheduled_ms": None, "due_ms": None,
    "started_ms": None, "first_started_ms": None, "finished_ms": None, "updated_ms": None,
    "deleted_ms": None, "ended_ms": None, "idempotency_key": None, "tenant": None,
    "api_key_id": None, "meta": "{}", "seq": -1, "incarnation": 0, "attempts": [],
    "versions": {},
}
DOC_FIELDS = tuple(DOC_DEFAULTS)


Transform = Callable[[Doc | None], Doc | None]  # a job's document -> its new one (None: none)


def folder(events: list[Event]) -> Transform:
    """The transform that folds ``events`` (one job's) into its document."""
    return lambda doc: fold(doc, events)


def new_life(doc: Doc | None) -> Doc | None:
    """The document of a job about to be enqueued again after Redis lost it: the next
    incarnation, with no versions, so events counting ``seq`` from 1 apply again."""
    if doc is None:
        return None
    out = _copy(doc)
    out["incarnation"] += 1
    out["versions"] = {}
    out["seq"] = 0
    _derive(out)
    return out


def fold(doc: Doc | None, events: Iterable[Event]) -> Doc:
    """A new document: ``doc`` (None for a job not stored yet) with ``events`` applied."""
    out = _copy(doc) if doc is not None else None
    for event in events:
        if out is None:
            out = {**DOC_DEFAULTS, "id": event.job, "attempts": [], "versions": {}}
        _apply(out, event)
    if out is None:
        raise ValueError("fold needs a document or at least one event")
    _derive(out)
    return out


def group_by_job(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events per job id, each list in seq order (the order they must be folded in)."""
    by_job: dict[str, list[Event]] = {}
    for event in events:
        by_job.setdefault(event.job, []).append(event)
    for evs in by_job.values():
        evs.sort(key=lambda e: e.seq)
    return by_job


def _copy(doc: Doc) -> Doc:
    out = dict(doc)
    out["versions"] = dict(doc["versions"])
    out["attempts"] = [{**a, "v": dict(a["v"])} for a in doc["attempts"]]
    return out


def _apply(doc: Doc, e: Event) -> None:
    if e.fields.get("type"):
        doc["type"] = e.fields["type"]
    doc["queue"] = e.queue
    versions = doc["versions"]
    for group, values in job_patches(e):
        if e.seq > versions.get(group, -1):
            doc.update(values)
            versions[group] = e.seq
    doc["seq"] = max(doc["seq"], e.seq)
    if e.event == "active":
        doc["first_started_ms"] = _min(doc["first_started_ms"], e.ts)
    if "submit" not in versions:  # the submitted event is missing (trimmed) or not here yet
        doc["submitted_ms"] = _min(doc["submitted_ms"], e.ts)
    _apply_attempt(doc, e)


def job_patches(e: Event) -> list[Patch]:
    """The groups of job fields ``e`` writes, with their values."""
    f = e.fields
    out: list[Patch] = []
    if e.status in STATUSES:
        out.append(("status", {"status": e.status, "updated_ms": e.ts}))
    if f.get("attempt"):
        out.append(("attempt", {"attempt": int(f["attempt"])}))
    if f.get("worker"):
        out.append(("worker", {"worker": f["worker"]}))
    if f.get("due"):
        out.append(("due", {"due_ms": int(f["due"])}))
    extra = _EXTRA.get(e.event)
    if extra is not None:
        out.extend(extra(e))
    return out


def _submitted(e: Event) -> list[Patch]:
    f = e.fields
    meta = _json_obj(f.get("meta"))
    facts = {
        "priority": f.get("priority") or "normal",
        "args": f.get("args") or "{}",
        "max_attempts": e.int_field("max_attempts"),
        "meta": f.get("meta") or "{}",
        "submitted_ms": e.ts,
        "scheduled_ms": e.int_field("due") or e.ts,
        "idempotency_key": _opt_str(meta.get("idempotency_key")),
        "tenant": _opt_str(meta.get("tenant")),
        "api_key_id": _opt_str(meta.get("api_key_id")),
    }
    out: list[Patch] = [("submit", facts), ("deleted", {"deleted_ms": None})]
    if e.status in TERMINAL_STATUSES:  # e.g. canceled at once: a job it depends on failed
        out.append(("finished", {"finished_ms": e.ts}))
    return out


def _active(e: Event) -> list[Patch]:
    # A new attempt starts without the progress its predecessor reported.
    return [("started", {"started_ms": e.ts}),
            ("progress", {"progress": None, "progress_message": None})]


def _completed(e: Event) -> list[Patch]:
    return [("finished", {"finished_ms": e.ts}), ("result", {"result": e.fields.get("result")})]


def _failed(e: Event) -> list[Patch]:
    error, _ = parse_error(e.fields.get("error"))
    out: list[Patch] = [("error", {"error": error})] if error is not None else []
    if e.event != "retrying":
        out.append(("finished", {"finished_ms": e.ts}))
    return out


def _retried(e: Event) -> list[Patch]:
    # retry.lua clears 'finished' and 'cancel' and makes the job due now.
    return [("finished", {"finished_ms": None}), ("cancel", {"cancel_requested": False}),
            ("due", {"due_ms": e.ts})]


def _progress(e: Event) -> list[Patch]:
    raw = e.fields.get("progress")
    value = float(raw) if raw not in (None, "") else None
    return [("progress", {"progress": value, "progress_message": e.fields.get("message")})]


_EXTRA: dict[str, Callable[[Event], list[Patch]]] = {
    "submitted": _submitted,
    "active": _active,
    "completed": _completed,
    "retrying": _failed,
    "dead": _failed,
    "canceled": _failed,
    "retried": _retried,
    "progress": _progress,
    "cancel_requested": lambda e: [("cancel", {"cancel_requested": True})],
    "deleted": lambda e: [("deleted", {"deleted_ms": e.ts})],
}


def attempt_patch(e: Event) -> Patch | None:
    """The attempt group ``e`` writes, or None when it concerns no attempt.

    A ``canceled`` event without a worker comes from cancelling a job that was waiting: its
    ``attempt`` names the last attempt, which had already ended, so it must not touch it.
    """
    if e.event == "active":
        return "start", {"worker": e.fields.get("worker"), "started_ms": e.ts}
    if e.event not in ATTEMPT_END_EVENTS or (e.event == "canceled" and not e.fields.get("worker")):
        return None
    error, traceback = parse_error(e.fields.get("error"))
    return "end", {
        "finished_ms": e.ts, "outcome": e.event, "error": error, "traceback": traceback,
        "reason": e.fields.get("reason") or None,
    }


def _apply_attempt(doc: Doc, e: Event) -> None:
    number = e.int_field("attempt")
    patch = attempt_patch(e) if number else None
    if patch is None or number is None:
        return
    group, values = patch
    attempt = _attempt(doc["attempts"], doc["incarnation"], number)
    if e.seq > attempt["v"].get(group, -1):
        attempt.update(values)
        attempt["v"][group] = e.seq


def _attempt(attempts: list[Doc], incarnation: int, number: int) -> Doc:
    for a in attempts:
        if a["attempt"] == number and a["incarnation"] == incarnation:
            return a
    a = {"incarnation": incarnation, "attempt": number, "worker": None, "started_ms": None,
         "finished_ms": None, "outcome": None, "error": None, "traceback": None,
         "reason": None, "v": {}}
    attempts.append(a)
    attempts.sort(key=lambda x: (x["incarnation"], x["attempt"]))
    return a


def _derive(doc: Doc) -> None:
    """Fields computed from the others, so queries can use an index on them."""
    doc["ended_ms"] = doc["deleted_ms"] or doc["finished_ms"]
    incarnation = doc["incarnation"]
    texts: list[str] = []
    for a in doc["attempts"]:
        # An attempt of an earlier life that never ended will never end: say so. No version
        # is recorded, so a late 'end' event still overrides this.
        if a["incarnation"] < incarnation and "end" not in a["v"]:
            a["outcome"] = LOST
        if a["error"]:
            texts.append(error_text(a["error"]))
    if doc["error"]:
        texts.append(error_text(doc["error"]))
    doc["error_text"] = "\n".join(dict.fromkeys(texts))


def parse_error(raw: str | None) -> tuple[dict[str, str] | None, str | None]:
    """({type, message}, traceback) from an event's error JSON; non-JSON text is kept whole."""
    if not raw:
        return None, None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"type": "Error", "message": raw}, None
    if not isinstance(value, dict):
        return {"type": "Error", "message": str(value)}, None
    error = {"type": str(value.get("type") or "Error"), "message": str(value.get("message", ""))}
    return error, _opt_str(value.get("traceback")) or None


def error_text(error: dict[str, str]) -> str:
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def _json_obj(raw: str | None) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _min(current: int | None, value: int) -> int:
    return value if current is None else min(current, value)
