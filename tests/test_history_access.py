"""The app opens its history store from settings and finds recorded jobs in it."""

from __future__ import annotations

from pathlib import Path

from conveyor import Conveyor
from conveyor.store.base import JobQuery


async def test_history_is_opened_from_the_store_url(tmp_path: Path) -> None:
    app = Conveyor(store_url=f"sqlite:///{tmp_path}/h.db")
    store = await app.history()
    assert store is await app.history()  # one per event loop
    page = await store.search(JobQuery())
    assert page.items == []
    await app.close()
    assert (tmp_path / "h.db").exists()
