"""The compose stack for real: the project's image, compose.yaml, and the test override
(deploy/test/compose.test.yml) standing in for the redis and mongo images. Driven from the
host through ports published on 127.0.0.1 only. Run by `make test-deploy`
(deploy/test/test-deploy.sh), which builds the images first; the tests run in file order
and share one stack.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
import redis
import yaml

from tests.deploy.e2e.conftest import FACTS

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "conveyor:local"
PROJECT = os.environ.get("CONVEYOR_E2E_PROJECT", "conveyor-e2e")
COMPOSE_FILE = os.environ.get("COMPOSE_FILE", "compose.yaml:deploy/test/compose.test.yml")
ADMIN_KEY = "e2e-" + secrets.token_urlsafe(24)
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CONVEYOR_SERVICES = ("api", "worker", "scheduler")
GRACE = {"api": 15, "worker": 35, "scheduler": 15, "redis": 10, "mongo": 10}


def port(name: str) -> int:
    value = os.environ.get(name)
    assert value, f"{name} is not set: run this through `make test-deploy`"
    return int(value)


API = f"http://127.0.0.1:{port('E2E_API_PORT')}"
DASHBOARD = f"http://127.0.0.1:{port('E2E_DASHBOARD_PORT')}"
MONGO_URL = f"mongodb://127.0.0.1:{port('E2E_MONGO_PORT')}/?directConnection=true"
REDIS_PORT = port("E2E_REDIS_PORT")

pytestmark = pytest.mark.timeout(1200)


# -- helpers ---------------------------------------------------------------------------------

def run(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPOSE_FILE": COMPOSE_FILE, "COMPOSE_PROJECT_NAME": PROJECT,
           "CONVEYOR_ADMIN_KEY": ADMIN_KEY}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def compose(*args: str, timeout: float = 300, check: bool = True) -> str:
    return run("docker", "compose", *args, timeout=timeout, check=check).stdout


def docker(*args: str, timeout: float = 300, check: bool = True) -> str:
    return run("docker", *args, timeout=timeout, check=check).stdout


def containers(service: str, *, all_: bool = False) -> list[str]:
    flags = ["ps", "-q", *(["-a"] if all_ else []), service]
    return compose(*flags).split()


def inspect(container: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker("inspect", container))
    return found[0]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, pymongo.errors.PyMongoError, redis.RedisError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def http() -> httpx.Client:
    return httpx.Client(base_url=API, timeout=30,
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@functools.cache
def mongo_jobs() -> Any:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        MONGO_URL, serverSelectionTimeoutMS=5000)
    return client["conveyor"]["jobs"]


def submit(client: httpx.Client, specs: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(specs), 1000):
        answer = client.post("/api/jobs/bulk", json={"jobs": specs[start:start + 1000]})
        assert answer.status_code == 201, answer.text
        ids += [job["id"] for job in answer.json()["jobs"]]
    return ids


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs = {}
    for job_id in ids:
        answer = client.get(f"/api/jobs/{job_id}")
        if answer.status_code == 429:  # the per-key rate limit: wait as told
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = client.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        jobs[job_id] = answer.json()
    return jobs


def completed_in_history(ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Waits until the history holds every job of ``ids`` completed (a job that died or was
    canceled fails at once); returns their documents."""
    def check() -> bool:
        ended = mongo_jobs().count_documents(
            {"_id": {"$in": ids}, "status": {"$in": ["dead", "canceled"]}})
        assert ended == 0, f"{ended} jobs died or were canceled"
        done: int = mongo_jobs().count_documents({"_id": {"$in": ids}, "status": "completed"})
        return done == len(ids)

    wait_for(f"the history to hold all {len(ids)} jobs completed", check, timeout, every=2)
    return {d["_id"]: d for d in mongo_jobs().find({"_id": {"$in": ids}})}


def alive_workers(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get("/api/workers")
    answer.raise_for_status()
    return [w for w in answer.json() if w.get("alive", True)]


def container_of_worker(host: str) -> str:
    for cid in containers("worker"):
        if inspect(cid)["Config"]["Hostname"] == host:
            return cid
    raise AssertionError(f"no worker container has hostname {host}")


def busy_worker_container(client: httpx.Client) -> str:
    def busy() -> str | None:
        for worker in alive_workers(client):
            if worker.get("current") and any(worker["host"] == inspect(c)["Config"]["Hostname"]
                                             for c in containers("worker")):
                return str(worker["host"])
        return None

    return container_of_worker(wait_for("a worker running jobs", busy, 60))


def healthy(service: str) -> bool:
    ids = containers(service)
    return bool(ids) and all(
        inspect(c)["State"].get("Health", {}).get("Status") == "healthy" for c in ids)


def scale_workers(n: int) -> None:
    compose("up", "-d", "--no-build", "--scale", f"worker={n}", timeout=300)
    with http() as client:
        wait_for(f"{n} live workers", lambda: len(alive_workers(client)) == n, 90)


# -- the stack -------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def stack() -> Iterator[None]:
    if not docker("images", "-q", IMAGE).strip():
        compose("build", "api", timeout=1800)
    compose("down", "-v", "--remove-orphans")
    started = time.monotonic()
    compose("up", "-d", "--no-build", timeout=300)
    FACTS.append(f"compose up -d: {time.monotonic() - started:.1f} s")
    try:
        yield
    finally:
        logs = compose("logs", "--no-color", "--tail", "200", check=False, timeout=60)
        (Path(os.environ.get("TMPDIR", "/tmp")) / "conveyor-e2e-compose.log").write_text(logs)
        compose("down", "-v", "--remove-orphans", check=False, timeout=300)


# -- the image -------------------------------------------------------------------------------

def test_image_is_slim_and_non_root_with_tini() -> None:
    config = inspect(IMAGE)["Config"]
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert config["Entrypoint"][:2] == ["tini", "--"]
    tools = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                   "for t in gcc cc c++ make node npm; do command -v $t; done; true")
    assert tools.strip() == "", f"the runtime image has build tools: {tools.split()}"
    size = inspect(IMAGE)["Size"] / 1e6
    venv = docker("run", "--rm", "--entrypoint", "du", IMAGE, "-sm", "/opt/conveyor").split()[0]
    base = inspect("conveyor-test/python:3.11-bookworm")["Size"] / 1e6
    FACTS.append(f"image {IMAGE}: {size:.0f} MB = stand-in Python base {base:.0f} MB + "
                 f"virtualenv {venv} MB + tini and user")
    if build := os.environ.get("CONVEYOR_E2E_BUILD_SECONDS"):
        FACTS.append(f"image build: {build} s")


def test_conveyor_version_in_the_image_matches_the_package() -> None:
    done = run("docker", "run", "--rm", IMAGE, "--version", check=False)
    assert done.returncode == 0, f"`conveyor --version` failed: {done.stderr.strip()[-300:]}"
    assert VERSION in done.stdout, f"`conveyor --version` says {done.stdout!r}, not {VERSION}"


def test_healthchecks_turn_healthy_and_processes_run_as_designed() -> None:
    started = time.monotonic()
    for service in ("redis", "mongo", "api"):
        wait_for(f"{service} healthy", lambda s=service: healthy(s), 180)
    FACTS.append(f"healthy after {time.monotonic() - started:.1f} s more")
    for service in CONVEYOR_SERVICES:
        (cid,) = containers(service)
        state = inspect(cid)["State"]
        assert state["Running"] and inspect(cid)["RestartCount"] == 0, f"{service}: {state}"
        pid1 = docker("exec", cid, "cat", "/proc/1/cmdline").split("\0")
        assert pid1[:3] == ["tini", "--", "conveyor"], f"{service} PID 1: {pid1}"
        assert docker("exec", cid, "id", "-u").strip() == "10001"
        assert inspect(cid)["HostConfig"]["ReadonlyRootfs"]
    info = redis.Redis(port=REDIS_PORT).config_get("append*")
    assert info["appendonly"] == "yes" and info["appendfsync"] == "everysec"
    with httpx.Client(base_url=API) as anonymous:
        assert anonymous.get("/readyz").json()["status"] == "ready"


def test_a_job_submitted_over_http_completes_and_is_in_the_history() -> None:
    with httpx.Client(base_url=API) as anonymous:
        refused = anonymous.post("/api/jobs", json={"type": "demo.fast", "args": {"n": 7}})
        assert refused.status_code == 401
    with http() as client:
        answer = client.post("/api/jobs", json={"type": "demo.fast", "args": {"n": 7}})
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]

        def done() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
            return job if job["status"] == "completed" else None

        job = wait_for("the job to complete", done, 30)
        assert job["result"] == 49
    stored = wait_for("the history to have the job", lambda: mongo_jobs().find_one(
        {"_id": job_id, "status": "completed"}), 60)
    assert stored["type"] == "demo.fast" and stored["attempt"] == 1


def test_the_dashboard_and_its_assets_are_served_on_both_ports() -> None:
    for base in (DASHBOARD, API):
        with httpx.Client(base_url=base, timeout=10) as client:
            index = client.get("/")
            assert index.status_code == 200 and "text/html" in index.headers["content-type"]
            assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)
            assert any(a.endswith(".js") for a in assets), index.text[:500]
            for asset in assets:
                answer = client.get(asset)
                assert answer.status_code == 200 and answer.content, asset
                if asset.endswith(".js"):
                    assert "javascript" in answer.headers["content-type"]


# -- Kubernetes: the manifests' commands and probes, on the compose network ----------------

def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                found[doc["metadata"]["name"]] = doc
    return found


def k8s_run(name: str, pod: dict[str, Any], env: dict[str, str], publish: int | None) -> str:
    (container,) = pod["containers"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    security = container["securityContext"]
    flags = ["--name", f"{PROJECT}-k8s-{name}", "--hostname", f"k8s-{name}",
             "--network", f"{PROJECT}_default", "--user", user, "--tmpfs", "/tmp"]
    if security["readOnlyRootFilesystem"]:
        flags.append("--read-only")
    if not security["allowPrivilegeEscalation"]:
        flags += ["--security-opt", "no-new-privileges:true"]
    flags += [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]
    memory = container["resources"]["limits"]["memory"]
    flags.append("--memory=" + memory.replace("Mi", "m").replace("Gi", "g"))
    if publish:
        flags += ["-p", f"127.0.0.1:{publish}:8000"]
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]
    return docker("run", "-d", *flags, IMAGE, *container["args"]).strip()


def probe(pod: dict[str, Any], kind: str, host_port: int) -> bool:
    """One kubelet probe: an HTTP GET whose 2xx/3xx within timeoutSeconds is a success."""
    spec = pod["containers"][0][kind]
    get = spec["httpGet"]
    named = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert named.get(get["port"], get["port"]) == 8000, f"{kind} probes another port"
    answer = httpx.get(f"http://127.0.0.1:{host_port}{get['path']}",
                       timeout=spec.get("timeoutSeconds", 1))
    return 200 <= answer.status_code < 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_k8s_manifests_commands_and_probes_work_on_the_image() -> None:
    config = k8s_objects("ConfigMap")["conveyor-config"]["data"]
    secret = k8s_objects("Secret")["conveyor-secrets"]["stringData"]
    env = {**config, **secret, "CONVEYOR_ADMIN_KEY": ADMIN_KEY}
    pods = {name.removeprefix("conveyor-"): d["spec"]["template"]["spec"]
            for name, d in k8s_objects("Deployment").items()}
    api_port = free_port()
    started = {name: k8s_run(name, pod, env, api_port if name == "api" else None)
               for name, pod in pods.items()}
    try:
        api = pods["api"]
        startup = api["containers"][0]["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]

        wait_for("the startup probe", lambda: probe(api, "startupProbe", api_port), budget,
                 every=startup["periodSeconds"])
        assert probe(api, "livenessProbe", api_port)
        wait_for("the readiness probe", lambda: probe(api, "readinessProbe", api_port), 30)
        with http() as client:
            wait_for("the k8s worker to register", lambda: any(
                w["host"] == "k8s-worker" for w in alive_workers(client)), 60)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as k8s_api:
            answer = k8s_api.post("/api/jobs", json={"type": "demo.fast", "args": {"n": 3}})
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            wait_for("a job through the k8s api", lambda: k8s_api.get(
                f"/api/jobs/{job_id}").json()["status"] == "completed", 30)
        assert inspect(started["scheduler"])["State"]["Running"]
        # SIGTERM with the pod's termination grace period, as the kubelet does.
        for name, cid in started.items():
            grace = pods[name]["terminationGracePeriodSeconds"]
            t0 = time.monotonic()
            docker("stop", "-t", str(grace), cid, timeout=grace + 30)
            took = time.monotonic() - t0
            state = inspect(cid)["State"]
            assert state["ExitCode"] == 0 and took < grace, f"k8s {name}: {state}, {took:.1f} s"
            FACTS.append(f"k8s {name}: SIGTERM -> exit 0 in {took:.1f} s (grace {grace} s)")
    finally:
        for cid in started.values():
            docker("rm", "-f", cid, check=False)


# -- scale, kill, stop, restart --------------------------------------------------------------

def test_three_workers_drain_ten_thousand_jobs() -> None:
    scale_workers(3)
    t0 = int(time.time() * 1000) - 1000
    started = time.monotonic()
    with http() as client:
        ids = submit(client, [{"type": "demo.fast", "args": {"n": i}} for i in range(10_000)])
        assert len(set(ids)) == 10_000
        submitted = time.monotonic() - started

        def drained() -> bool:
            (queue,) = [q for q in client.get("/api/queues").json() if q["name"] == "demo"]
            return queue["waiting"] == queue["active"] == queue["delayed"] == 0

        wait_for("the queue to drain", drained, 600, every=1)
    ran = time.monotonic() - started
    match = {"type": "demo.fast", "submitted_ms": {"$gte": t0}}
    # The recorder's pace is the MongoDB stand-in's (75-440 s measured here, by machine load).
    wait_for("the history to hold 10,000 completed jobs", lambda: mongo_jobs().count_documents(
        {**match, "status": "completed"}) == 10_000, 900, every=2)
    recorded = time.monotonic() - started
    per_worker = {row["_id"]: row["n"] for row in mongo_jobs().aggregate(
        [{"$match": match}, {"$group": {"_id": "$worker", "n": {"$sum": 1}}}])}
    assert len(per_worker) >= 2, f"one worker did everything: {per_worker}"
    FACTS.append(f"10,000 jobs: submitted in {submitted:.1f} s, drained by 3 workers in "
                 f"{ran:.1f} s, all in the history after {recorded:.1f} s; per worker: "
                 f"{sorted(per_worker.values(), reverse=True)}")


def test_docker_kill_of_a_worker_mid_job_loses_nothing() -> None:
    with http() as client:
        ledger = submit(client, [{"type": "demo.slow", "args": {"seconds": 4}}
                                 for _ in range(40)])
        victim = busy_worker_container(client)
        hostname = inspect(victim)["Config"]["Hostname"]
        docker("kill", victim)
        killed_at = time.monotonic()
    jobs = completed_in_history(ledger, 300)
    recovered = time.monotonic() - killed_at
    rerun = [j for j in jobs.values()
             if any((a.get("worker") or "").startswith(hostname) for a in j["attempts"][:-1])]
    assert rerun, "no job was running on the killed worker"
    assert all(j["attempts"][-1]["outcome"] == "completed" for j in jobs.values())
    FACTS.append(f"docker kill of a worker: {len(rerun)} of its jobs ran again elsewhere; all "
                 f"{len(ledger)} ledger jobs completed {recovered:.1f} s after the kill")
    scale_workers(3)


def test_sigterm_lets_a_worker_finish_its_running_jobs_and_exit_zero() -> None:
    with http() as client:
        ids = submit(client, [{"type": "demo.slow", "args": {"seconds": 3}} for _ in range(6)])
        victim = busy_worker_container(client)
        hostname = inspect(victim)["Config"]["Hostname"]
        mine = [i for i, j in statuses(client, ids).items()
                if j["status"] == "active" and (j.get("worker") or "").startswith(hostname)]
        assert mine, "the busy worker has no running job of this test"
        t0 = time.monotonic()
        docker("stop", "-t", str(GRACE["worker"]), victim, timeout=120)
        took = time.monotonic() - t0
        assert inspect(victim)["State"]["ExitCode"] == 0
        assert took < GRACE["worker"]
    jobs = completed_in_history(ids, 120)
    for job_id in mine:  # finished by the stopping worker, not run again
        assert [a["outcome"] for a in jobs[job_id]["attempts"]] == ["completed"], jobs[job_id]
    FACTS.append(f"SIGTERM to a busy worker: finished {len(mine)} running jobs, exit 0 in "
                 f"{took:.1f} s")
    scale_workers(3)


def test_compose_stop_ends_every_container_with_exit_code_zero_within_its_grace() -> None:
    with http() as client:
        submit(client, [{"type": "demo.slow", "args": {"seconds": 2}} for _ in range(30)])
        busy_worker_container(client)
    every = {s: containers(s) for s in GRACE}
    t0 = time.monotonic()
    compose("stop", timeout=300)
    took = time.monotonic() - t0
    for service, ids in every.items():
        for cid in ids:
            state = inspect(cid)["State"]
            # Docker sends SIGKILL after the grace period: exit 0 means the process ended
            # by itself before that (a SIGKILL shows as 137).
            assert not state["Running"] and state["ExitCode"] == 0 and not state["OOMKilled"], (
                f"{service} {cid[:12]}: {state}")
    FACTS.append(f"docker compose stop: {sum(map(len, every.values()))} containers, all exit "
                 f"0, in {took:.1f} s")
    compose("up", "-d", "--no-build", "--scale", "worker=3", timeout=300)
    for service in ("redis", "mongo", "api"):
        wait_for(f"{service} healthy again", lambda s=service: healthy(s), 180)


def test_a_redis_container_killed_and_recreated_keeps_every_accepted_job() -> None:
    """SIGKILL (no shutdown save), a new container on the same volume: the AOF brings back
    every job accepted more than a second (appendfsync everysec) before."""
    compose("stop", "worker", timeout=120)
    with http() as client:
        ledger = submit(client, [{"type": "demo.fast", "args": {"n": i}} for i in range(500)])
    time.sleep(2.5)
    (old,) = containers("redis")
    docker("kill", old)
    compose("rm", "-f", "redis")
    compose("up", "-d", "--no-build", "--no-deps", "redis")
    (new,) = containers("redis")
    assert new != old
    wait_for("redis healthy", lambda: healthy("redis"), 120)
    keys = redis.Redis(port=REDIS_PORT).dbsize()
    assert keys > 0, "redis came back empty: the AOF volume did not keep the data"
    compose("up", "-d", "--no-build", "--scale", "worker=3", timeout=300)
    with httpx.Client(base_url=API) as client:
        # /readyz's Redis check: the api reconnected by itself. (Its store check may time out
        # for a while here: the MongoDB stand-in is still digesting the recorder's backlog.)
        wait_for("the api to reach the new redis", lambda: client.get("/readyz").json().get(
            "redis") == "ok", 120)
    completed_in_history(ledger, 300)
    FACTS.append(f"redis SIGKILLed and recreated on its volume: all {len(ledger)} accepted "
                 "jobs completed")
