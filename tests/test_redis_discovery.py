"""``Conveyor()`` finds the Redis that ``conveyor up`` started in the working folder: a script
next to it enqueues there, not to whatever answers on 127.0.0.1:6379.

Order: ``Conveyor(redis_url=...)``, then ``CONVEYOR_REDIS_URL``, then ``.conveyor/redis.url``,
then the default.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conveyor import Conveyor
from conveyor.embedded import RedisServer
from conveyor.loader import load_app
from conveyor.settings import Settings

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there


@pytest.fixture
def up_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder like the one `conveyor up` runs in, with no CONVEYOR_REDIS_URL."""
    folder = tmp_path / "project"
    (folder / ".conveyor").mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CONVEYOR_REDIS_URL", raising=False)
    return folder


def write_url(folder: Path, url: str) -> None:
    (folder / ".conveyor" / "redis.url").write_text(url + "\n")


async def enqueue_and_find(app: Conveyor, server: RedisServer) -> None:
    @app.job(queue="mail")
    async def send(to: str) -> None: ...

    async with app:
        handle = await app.enqueue("send", {"to": "a@example.com"})
    probe = Redis.from_url(server.url, decode_responses=True)
    try:
        assert await probe.exists(app.keys.queue("mail").job(handle.id))
    finally:
        await probe.aclose()


async def test_the_url_file_of_conveyor_up_is_used_and_logged(
    up_folder: Path, any_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    write_url(up_folder, any_redis.url)
    with caplog.at_level(logging.INFO, logger="conveyor"):
        app = Conveyor()
    assert app.settings.redis_url == any_redis.url
    said = [r.getMessage() for r in caplog.records if "redis.url" in r.getMessage()]
    assert len(said) == 1 and "conveyor up" in said[0], said
    await enqueue_and_find(app, any_redis)


async def test_the_whole_url_is_read_and_the_password_kept_out_of_the_log(
    up_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_url(up_folder, "redis://:s3cret@127.0.0.1:6390/2")
    with caplog.at_level(logging.INFO, logger="conveyor"):
        app = Conveyor(prefix="other")
    assert app.settings.redis_url == "redis://:s3cret@127.0.0.1:6390/2"
    assert "s3cret" not in caplog.text and "127.0.0.1:6390" in caplog.text


async def test_the_environment_wins_over_the_file(
    up_folder: Path, any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_url(up_folder, NOWHERE)
    monkeypatch.setenv("CONVEYOR_REDIS_URL", any_redis.url)
    await enqueue_and_find(Conveyor(), any_redis)


async def test_an_explicit_url_wins_over_both(
    up_folder: Path, any_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_url(up_folder, NOWHERE)
    monkeypatch.setenv("CONVEYOR_REDIS_URL", NOWHERE)
    await enqueue_and_find(Conveyor(redis_url=any_redis.url), any_redis)
    assert Conveyor(settings=Settings(redis_url=any_redis.url)).settings.redis_url == any_redis.url


def test_without_file_or_environment_the_default(up_folder: Path) -> None:
    assert Conveyor().settings.redis_url == Settings.model_fields["redis_url"].default


def test_the_cli_reads_the_same_file(up_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (up_folder / "discovery_app.py").write_text("from conveyor import Conveyor\napp = Conveyor()\n")
    monkeypatch.delitem(sys.modules, "discovery_app", raising=False)
    app = load_app("discovery_app:app")  # imported before `conveyor up` wrote the file
    assert app.settings.redis_url == Settings.model_fields["redis_url"].default
    write_url(up_folder, "redis://127.0.0.1:6391/0")
    assert load_app("discovery_app:app") is app
    assert app.settings.redis_url == "redis://127.0.0.1:6391/0"
    sys.modules.pop("discovery_app", None)
