"""The history store, chosen by URL: ``sqlite:///path`` (default) or ``mongodb://...``.

Drivers are imported only when their scheme is used, so MongoDB's stays an optional extra.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from conveyor.errors import ConveyorError
from conveyor.store.base import (
    Attempt,
    ErrorInfo,
    Gap,
    JobPage,
    JobQuery,
    Store,
    StoredJob,
    TimeBucket,
)
from conveyor.store.events import Event, MalformedEvent, parse_entry

__all__ = [
    "Attempt", "ErrorInfo", "Event", "Gap", "JobPage", "JobQuery", "MalformedEvent", "Store",
    "StoreConfigError", "StoredJob", "TimeBucket", "open_store", "parse_entry", "sqlite_path",
]

SQLITE_PREFIX = "sqlite:///"
MONGO_SCHEMES = ("mongodb", "mongodb+srv")


class StoreConfigError(ConveyorError, ValueError):
    """The store URL cannot be used as given; the message says what to change."""


async def open_store(url: str, *, retention_days: float = 30.0) -> Store:
    """Connect to the store ``url`` names, creating its schema and indexes.

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (parent folders are
    created); ``mongodb://host/db?replicaSet=rs`` or ``mongodb+srv://...`` (database
    ``conveyor`` when the URL names none).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        try:
            from conveyor.store.sqlite import SqliteStore
        except ImportError as exc:
            raise StoreConfigError(
                f"the SQLite store needs aiosqlite ({exc}): pip install aiosqlite") from exc
        return await SqliteStore.open(sqlite_path(url), retention_days=retention_days)
    if scheme in MONGO_SCHEMES:
        try:
            from conveyor.store.mongo import MongoStore
        except ImportError as exc:
            raise StoreConfigError(
                f"the MongoDB store needs pymongo ({exc}): pip install 'conveyor[mongo]'"
            ) from exc
        return await MongoStore.open(url, retention_days=retention_days)
    raise StoreConfigError(
        f"unknown history store URL {url!r}: use sqlite:///path/to/history.db or "
        "mongodb://host:27017/conveyor (set CONVEYOR_STORE_URL or --store-url)"
    )


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///`` URL (relative after three slashes, absolute after
    four); query strings are not supported."""
    if not url.startswith(SQLITE_PREFIX) or "?" in url:
        raise StoreConfigError(
            f"bad SQLite URL {url!r}: write sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db, without a query string")
    path = url[len(SQLITE_PREFIX):]
    if not path or path == ":memory:":
        raise StoreConfigError(
            f"bad SQLite URL {url!r}: name a file (the recorder and readers use separate "
            "connections, which an in-memory database cannot share)")
    return path
