"""The Grafana dashboard and the Prometheus alert rules in deploy/ name only series that a
real API's ``/metrics`` exports after a short run (a real Redis, the API app with its event
hub, a worker and a scheduler with its history recorder, in this process), so they cannot
drift from the code; and the series they alert on say what happened in that run."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, Worker
from conveyor.api import create_app
from conveyor.embedded import RedisServer
from conveyor.scheduler.service import Scheduler
from conveyor.store import Store
from tests.api.conftest import ADMIN_KEY, UNLIMITED, auth, gateway_of, running, wait_for
from tests.conftest import FAST

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "conveyor.json"
ALERTS = DEPLOY / "prometheus" / "conveyor-alerts.yml"
SERIES = re.compile(r"\bconveyor_[a-z0-9_]+\b")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def dashboard_queries() -> list[str]:
    queries = [v for k, v in walk(json.loads(DASHBOARD.read_text())) if k == "expr"]
    queries += [v for k, v in walk(json.loads(DASHBOARD.read_text())["templating"])
                if k == "query" and isinstance(v, str)]
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def named_series() -> set[str]:
    exprs = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    return {name for expr in exprs for name in SERIES.findall(expr)}


def test_the_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and panel["title"] and panel["description"]
            assert [t["refId"] for t in panel["targets"]] == [
                chr(65 + i) for i in range(len(panel["targets"]))]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("ready jobs", "submitted", "run time", "pickup", "dead-letter", "dlq growth",
                  "live workers", "recorder lag", "rate-limit", "execution limits"):
        assert topic in titles, topic


def test_every_alert_rule_is_complete() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "ConveyorDeadLetterQueueGrowing", "ConveyorNoLiveWorkers", "ConveyorQueueWithoutWorkers",
        "ConveyorOldestWaitingJob", "ConveyorRecorderLagging", "ConveyorSchedulerWithoutLeader"}
    for rule in rules:
        assert rule["alert"].startswith("Conveyor") and rule["expr"].strip()
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def make_app(url: str, store_url: str) -> Conveyor:
    app = Conveyor(redis_url=url, store_url=store_url, **FAST)

    @app.job(queue="ops", max_attempts=1)
    async def ok() -> int:
        return 1

    @app.job(queue="ops", max_attempts=2)
    async def broken() -> None:
        raise RuntimeError("always")

    @app.job(queue="ops", rate="1/m")
    async def throttled() -> None:
        """One a minute: the second of two submitted at once is deferred."""

    return app


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(exported: Samples, name: str, **labels: str) -> float | None:
    return exported.get((name, frozenset(labels.items())))


def settled(exported: Samples) -> bool:
    """Every job of the run has done what it will do, and the scheduler and the recorder
    are seen (the scheduler publishes its status and takes the lead at start)."""
    ops = {"queue": "ops"}
    return (value(exported, "conveyor_jobs_total", outcome="completed", **ops) is not None
            and value(exported, "conveyor_jobs_total", outcome="dead", **ops) is not None
            and (value(exported, "conveyor_jobs_deferred_total", reason="rate limit", **ops)
                 or 0) >= 1
            and value(exported, "conveyor_scheduler_leaders") == 1
            and value(exported, "conveyor_recorder_lag_seconds", **ops) is not None)


async def scrape_after_a_short_run(url: str, store: Store, recorded: str) -> Samples:
    """Run jobs that complete, retry, die and are deferred by a rate, refuse a request with
    429, with a scheduler recording history, then scrape."""
    app = make_app(url, recorded)
    api = create_app(app, settings=UNLIMITED, store=store, admin_key=ADMIN_KEY)
    worker = Worker(app, ["ops"], concurrency=2)
    scheduler = Scheduler(app)
    async with running(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://api",
            headers=auth(ADMIN_KEY)) as client:
        tasks = [asyncio.create_task(worker.run()), asyncio.create_task(scheduler.run())]
        try:
            for type_ in ("ok", "broken", "throttled", "throttled"):
                assert (await client.post("/api/jobs", json={"type": type_})).status_code == 201
            slow, _ = await gateway_of(api).keys.create("viewer", name="slow", rate="1/m")
            codes = [(await client.get("/api/queues", headers=auth(slow))).status_code
                     for _ in range(2)]
            assert codes == [200, 429]

            async def exported() -> Samples | None:
                found = samples((await client.get("/metrics")).text)
                return found if settled(found) else None

            return await wait_for(exported, timeout=30)  # type: ignore[no-any-return]
        finally:
            worker.stop()
            scheduler.stop()
            await asyncio.gather(*tasks)
            await app.close()


async def test_every_series_the_assets_name_is_exported(
    any_redis: RedisServer, tmp_path: Path,
) -> None:
    from conveyor.store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 'history.db'}")
    try:
        exported = await scrape_after_a_short_run(
            any_redis.url, store, f"sqlite:///{tmp_path / 'recorded.db'}")
    finally:
        await store.close()
    names = {name for name, _ in exported}
    named = named_series()
    assert named <= names, f"not in /metrics: {sorted(named - names)}"
    assert value(exported, "conveyor_queue_workers", queue="ops") == 1
    assert value(exported, "conveyor_workers_alive") == 1
    assert (value(exported, "conveyor_jobs_deferred_total", queue="ops",
                  reason="rate limit") or 0) >= 1
    assert value(exported, "conveyor_schedulers_alive") == 1
    assert value(exported, "conveyor_scheduler_leaders") == 1
    lag = value(exported, "conveyor_recorder_lag_seconds", queue="ops")
    assert lag is not None and math.isfinite(lag) and 0 <= lag < 60, lag
