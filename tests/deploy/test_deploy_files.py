"""Offline checks of the deploy files against the code they deploy.

No Docker engine or cluster runs here, so these tests check what can be checked without one,
and fail when the files drift from the code: every YAML file parses; compose services and
Kubernetes containers run commands and options the CLI has, with real settings as
environment; ports, probe paths and health checks match the API; the Dockerfile's stages
agree with pyproject.toml, the dashboard's build and the API's static folder; the manifests
validate against the Kubernetes schemas; docs/operations.md's ACL user grants what the Lua
scripts call.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import posixpath
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conveyor.api.dashboard import STATIC_DIR
from conveyor.api.settings import ApiSettings
from conveyor.broker.broker import CANCEL_CHANNEL
from conveyor.broker.keys import Keys
from conveyor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "compose.yaml"
TEST_OVERRIDE = DEPLOY / "test" / "compose.test.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
LUA = ROOT / "src" / "conveyor" / "broker" / "lua"

CONVEYOR_SERVICES = ("api", "worker", "scheduler")
STATEFUL_SERVICES = ("redis", "mongo")
API_PATHS = ("/healthz", "/readyz", "/docs", "/metrics")
# Kubernetes versions whose schemas the manifests must satisfy: a conservative floor and
# the newest the validator knows.
K8S_FLOOR = "1.29"
VALIDATOR = "kubernetes-validate==1.37.0"


# -- the code's side -------------------------------------------------------------------------

@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


HELP_ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
# Runs the real entry point, ``conveyor.cli:main`` (what the console script runs, so commands
# mounted at start-up are there), once per help page, in one throwaway interpreter.
HELP_SCRIPT = """
import contextlib, io, json, sys
from conveyor.cli import main
pages = {}
for name in sys.argv[1:]:
    sys.argv = ["conveyor", *([name] if name else []), "--help"]
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
    pages[name] = out.getvalue() if code == 0 else ""
print(json.dumps(pages))
"""


def _run_help(commands: tuple[str, ...]) -> dict[str, str]:
    """``conveyor [CMD] --help`` for each name ("" for the top level)."""
    done = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *commands], env=HELP_ENV,
                          capture_output=True, text=True, timeout=120, check=True)
    pages: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    return pages


@cache
def help_pages() -> dict[str, str]:
    pages = _run_help(("", *CONVEYOR_SERVICES))
    assert pages[""], "`conveyor --help` failed"
    return pages


def _panel_rows(page: str, title: str) -> list[str]:
    """The rows of one rich help panel (``Commands``, ``Options``), box characters removed."""
    rows, inside = [], False
    for line in page.splitlines():
        text = line.strip()
        if text[:1] in "╭+" and title in text:
            inside = True
        elif text[:1] in "╰+" and inside:
            inside = False
        elif inside:
            rows.append(text.strip("│| "))
    return rows


@cache
def cli_commands() -> frozenset[str]:
    """The commands ``conveyor --help`` lists."""
    rows = _panel_rows(help_pages()[""], "Commands")
    return frozenset(row.split()[0] for row in rows if row and row[0].isalpha())


def cli_command(name: str) -> str:
    """The ``--help`` page of ``conveyor NAME``."""
    assert name in cli_commands(), (
        f"`conveyor {name}` is not a command (`conveyor --help` lists {sorted(cli_commands())})")
    page = help_pages().get(name)
    if page is None:
        page = _run_help((name,))[name]
    assert page, f"`conveyor {name} --help` failed"
    return page


def cli_options(name: str) -> set[str]:
    rows = _panel_rows(cli_command(name), "Options")
    return {opt for row in rows for opt in re.findall(r"(?<![\w-])--[a-z][\w-]*", row)}


def api_default_port() -> int:
    rows = _panel_rows(cli_command("api"), "Options")
    port = [re.search(r"\[default: (\d+)\]", row) for row in rows if row.startswith("--port")]
    assert port and port[0], "`conveyor api --help` shows no --port default"
    return int(port[0].group(1))


@cache
def setting_env_names() -> frozenset[str]:
    names = set()
    for model in (Settings, ApiSettings):
        prefix = str(model.model_config.get("env_prefix", "")).upper()
        names |= {prefix + name.upper() for name in model.model_fields}
    return frozenset(names)


def check_invocation(args: list[str], where: str) -> None:
    """``args`` (after ``conveyor``) name a command, options it has, and an importable app."""
    assert args, f"{where}: no command"
    options = cli_options(args[0])
    for arg in args[1:]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in options, (
                f"{where}: `conveyor {args[0]}` has no option {arg} (it has {sorted(options)})")
    apps = [a for a in args[1:] if re.fullmatch(r"[\w.]+:\w+", a)]
    for spec in apps:
        module, _, attribute = spec.partition(":")
        assert hasattr(importlib.import_module(module), attribute), f"{where}: no {spec}"


def option_value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def check_env(env: dict[str, Any], where: str) -> None:
    unknown = sorted(set(env) - setting_env_names())
    assert not unknown, f"{where}: {unknown} are not Conveyor settings (CONVEYOR_<NAME>)"
    for model in (Settings, ApiSettings):  # the values parse (numbers are numbers, ...)
        prefix = str(model.model_config.get("env_prefix", "")).upper()
        values = {n.removeprefix(prefix).lower(): str(v) for n, v in env.items()
                  if n.removeprefix(prefix).lower() in model.model_fields}
        model.model_validate(values)


def grace_seconds(env: dict[str, Any]) -> float:
    raw = env.get("CONVEYOR_GRACE_SECONDS")
    return float(raw) if raw is not None else float(Settings.model_fields["grace_seconds"].default)


def api_routes() -> set[str]:
    """The API's paths: those its OpenAPI document lists, and every route (the docs page)."""
    from conveyor import Conveyor
    from conveyor.api.factory import create_app

    app = create_app(Conveyor(), open_store=False)
    # /docs is served outside the schema (include_in_schema=False), so read the routes too.
    return {*app.openapi()["paths"], *(str(getattr(r, "path", "")) for r in app.routes)}


def duration_seconds(value: str) -> float:
    """Compose durations: ``1m30s``, ``35s``, ``500ms``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# -- YAML ------------------------------------------------------------------------------------

class _Tagged(yaml.SafeLoader):
    """SafeLoader that also reads Compose's merge tags (!override, !reset) as plain values."""


for _tag in ("!override", "!reset"):
    _Tagged.add_constructor(_tag, lambda loader, node: (
        loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(node)))


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), ROOT / "compose.yaml"])


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = [d for d in yaml.load_all(path.read_text(), Loader=_Tagged) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected mappings"


# -- compose ---------------------------------------------------------------------------------

@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def test_compose_has_the_seeds_services() -> None:
    assert set(services()) == {*CONVEYOR_SERVICES, *STATEFUL_SERVICES}


def test_the_root_compose_file_runs_on_compose_1_29_and_v2() -> None:
    """`docker compose up --build` (DESIGN.md) works from the root, with Compose v2 and with
    Debian bookworm's Compose 1.29: one file, none of the keys 1.29 refuses."""
    assert set(compose()) <= {"services", "volumes", "networks", "configs", "secrets"} | {
        k for k in compose() if k.startswith("x-")}, "1.29 refuses `name:`, `include:`, ..."
    assert not (ROOT / "docker-compose.yml").exists()
    assert not (DEPLOY / "docker-compose.yml").exists(), "one compose file: compose.yaml"


def test_the_test_override_changes_only_what_the_test_machine_needs() -> None:
    """deploy/test/compose.test.yml replaces the registry images and publishes on loopback;
    api, worker and scheduler keep compose.yaml's commands, settings and limits."""
    override = yaml.load(TEST_OVERRIDE.read_text(), Loader=_Tagged)["services"]
    assert set(override) == set(services())
    for name in CONVEYOR_SERVICES:
        assert set(override[name]) <= {"build", "ports"}, f"{name}: {set(override[name])}"
        args = override[name]["build"]["args"]
        assert set(args) == {"PYTHON_IMAGE", "NODE_IMAGE"}
    for name, service in override.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping}"
    redis = [str(part) for part in override["redis"]["command"]]
    production = [str(part) for part in services()["redis"]["command"]]
    for option in ("--appendonly", "--appendfsync", "--maxmemory", "--maxmemory-policy"):
        assert option_value(redis, option) == option_value(production, option), option


@pytest.mark.parametrize("name", CONVEYOR_SERVICES)
def test_compose_services_run_real_commands_with_real_settings(name: str) -> None:
    service = services()[name]
    check_invocation(service["command"], f"compose service {name}")
    check_env(service["environment"], f"compose service {name}")
    env = service["environment"]
    assert env["CONVEYOR_REDIS_URL"] == "redis://redis:6379/0"
    assert env["CONVEYOR_STORE_URL"] == "mongodb://mongo:27017/conveyor"
    build = service["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE.resolve()


def test_compose_urls_name_compose_services() -> None:
    for name in CONVEYOR_SERVICES:
        env = services()[name]["environment"]
        for var in ("CONVEYOR_REDIS_URL", "CONVEYOR_STORE_URL"):
            host = re.sub(r"^[\w+]+://(?:[^@/]*@)?([^:/,]+).*$", r"\1", env[var])
            assert host in services(), f"{name}: {var} names {host}, not a compose service"


def test_compose_dependencies_wait_for_health_checks() -> None:
    for name, service in services().items():
        for dep, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}: {how}"
            check = services()[dep].get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), f"{dep} has no health check"
    assert set(services()["api"]["depends_on"]) == set(STATEFUL_SERVICES)
    assert set(services()["scheduler"]["depends_on"]) == set(STATEFUL_SERVICES)
    assert "redis" in services()["worker"]["depends_on"]


def test_compose_api_serves_8000_and_the_dashboard_on_3000() -> None:
    api = services()["api"]
    port = api_default_port()
    assert port == 8000
    assert option_value(api["command"], "--port") == str(port)
    assert option_value(api["command"], "--host") == "0.0.0.0"
    assert sorted(api["ports"]) == sorted([f"8000:{port}", f"3000:{port}"])
    check = " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check
    assert set(API_PATHS) <= api_routes()


def test_compose_workers_scale() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}, "workers serve no HTTP"
    assert services()["scheduler"]["healthcheck"] == {"disable": True}


def test_compose_workers_get_longer_than_their_grace_period() -> None:
    worker = services()["worker"]
    assert duration_seconds(worker["stop_grace_period"]) > grace_seconds(worker["environment"])


def test_compose_redis_is_durable_and_never_evicts() -> None:
    redis = services()["redis"]
    command = [str(part) for part in redis["command"]]
    assert option_value(command, "--appendonly") == "yes"
    assert option_value(command, "--appendfsync") == "everysec"
    assert option_value(command, "--maxmemory-policy") == "noeviction"
    server, cli_tool = ("valkey-server", "valkey-cli") if "valkey" in redis["image"] else (
        "redis-server", "redis-cli")
    assert command[0] == server
    assert redis["healthcheck"]["test"][:2] == ["CMD", cli_tool]


def test_compose_mongo_is_the_official_image_with_a_health_check() -> None:
    mongo = services()["mongo"]
    assert re.fullmatch(r"mongo:\d+(\.\d+)*", mongo["image"])
    assert "mongosh" in mongo["healthcheck"]["test"]


# -- Dockerfile ------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    image: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


@cache
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", rest, re.I)
            assert match, f"FROM without a stage name: {rest}"
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            stages.append(Stage(match.group(2), image))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def stage(name: str) -> Stage:
    return next(s for s in dockerfile()[1] if s.name == name)


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list)
    return [str(v) for v in value]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def test_dockerfile_stages_are_consistent() -> None:
    _, stages = dockerfile()
    names = [s.name for s in stages]
    assert names == ["dashboard", "build", "runtime"]
    for i, current in enumerate(stages):
        for copy in current.all("COPY"):
            source = re.search(r"--from=(\S+)", copy)
            if source:
                assert source.group(1) in names[:i], f"{current.name} copies from {source[1]}"
    # The runtime reuses the build stage's virtualenv: same interpreter, same path.
    assert stage("build").image == stage("runtime").image


def test_dockerfile_base_images_satisfy_the_projects_requirements() -> None:
    python = re.fullmatch(r"python:(\d+)\.(\d+)-slim(?:-\w+)?", stage("runtime").image)
    assert python, f"runtime image {stage('runtime').image} is not a slim Python image"
    floor = re.search(r">=\s*([\d.]+)", pyproject()["project"]["requires-python"])
    assert floor and version_tuple(python.group(0)) >= version_tuple(floor.group(1))
    node = re.fullmatch(r"node:(\d+)(?:[.\d]*)-\S+", stage("dashboard").image)
    assert node, f"dashboard image {stage('dashboard').image} is not a Node image"
    engines = json.loads((ROOT / "dashboard" / "package.json").read_text())["engines"]["node"]
    wanted = re.search(r">=\s*(\d+)", engines)
    assert wanted and int(node.group(1)) >= int(wanted.group(1))


def test_dockerfile_builds_the_dashboard_into_the_packages_static_folder() -> None:
    dashboard = stage("dashboard")
    workdir = PurePosixPath(dashboard.all("WORKDIR")[-1])
    assert workdir.name == "dashboard"
    assert any("npm ci" in run for run in dashboard.all("RUN"))
    assert any("npm run build" in run for run in dashboard.all("RUN"))
    vite = (ROOT / "dashboard" / "vite.config.ts").read_text()
    out_dir = re.search(r"outDir:\s*[\"']([^\"']+)[\"']", vite)
    assert out_dir, "vite.config.ts names no outDir"
    copy = next(c for c in stage("build").all("COPY") if "--from=dashboard" in c)
    source, target = copy.split()[-2:]
    assert posixpath.normpath(source) == posixpath.normpath(workdir / out_dir.group(1))
    # The build stage's WORKDIR holds the repository layout (COPY src/ ./src/).
    workdir_build = PurePosixPath(stage("build").all("WORKDIR")[-1])
    static = (workdir_build / STATIC_DIR.relative_to(ROOT)).as_posix()
    assert posixpath.normpath(workdir_build / target) == static


def test_dockerfile_installs_the_mongo_extra_and_no_dev_dependencies() -> None:
    runs = " ".join(stage("build").all("RUN"))
    extras = set(re.findall(r"\.\[([\w,-]+)\]", runs))
    assert extras == {"mongo"}
    assert "mongo" in pyproject()["project"]["optional-dependencies"]
    assert "dev" not in runs and " -e " not in runs


def test_dockerfile_runtime_is_non_root_and_checks_the_api() -> None:
    runtime = stage("runtime")
    user = runtime.all("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    port = api_default_port()
    assert runtime.all("EXPOSE") == [str(port)]
    (check,) = runtime.all("HEALTHCHECK")
    assert f"127.0.0.1:{port}/healthz" in check
    entrypoint = exec_form(runtime.all("ENTRYPOINT")[-1])
    assert entrypoint[-1] in pyproject()["project"]["scripts"]
    command = exec_form(runtime.all("CMD")[-1])
    check_invocation(command, "Dockerfile CMD")
    assert option_value(command, "--port") == str(port)


def test_dockerfile_copies_only_what_the_context_keeps() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert "*" in patterns, ".dockerignore should exclude everything not named"
    for current in dockerfile()[1]:
        for copy in current.all("COPY"):
            if "--from=" in copy:
                continue
            for source in copy.split()[:-1]:
                if source.startswith("--"):
                    continue
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"COPY {source}: no such path"
                assert any(path == k or path.startswith(k + "/") for k in kept), (
                    f"COPY {source}: excluded by .dockerignore")


# -- Kubernetes ------------------------------------------------------------------------------

@cache
def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def conveyor_containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, d in objects("Deployment").items()
            for c in d["spec"]["template"]["spec"]["containers"] if c["image"] == "conveyor"]


def test_k8s_objects_have_kind_and_name() -> None:
    assert manifests()
    for filename, doc in manifests():
        assert doc.get("apiVersion") and doc.get("kind"), filename
        assert doc.get("metadata", {}).get("name"), f"{filename}: {doc['kind']} has no name"


def test_k8s_manifests_validate_against_the_kubernetes_schemas() -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(f"the schema check needs {VALIDATOR} (the dev extra)")
    versions = [K8S_FLOOR, kubernetes_validate.latest_version()]
    for filename, doc in manifests():
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{filename}: {doc['kind']} {doc['metadata']['name']} "
                            f"(Kubernetes {version}): {path}: {exc.message}")


def test_k8s_kustomization_lists_every_manifest_and_the_package_version() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    (image,) = [i for i in kustomization["images"] if i["name"] == "conveyor"]
    assert image["newTag"] == pyproject()["project"]["version"]
    assert {name for name, _ in conveyor_containers()} == {
        "conveyor-api", "conveyor-worker", "conveyor-scheduler"}


def test_k8s_selectors_match_their_pods() -> None:
    workloads = {**objects("Deployment"), **objects("StatefulSet")}
    templates = [w["spec"]["template"]["metadata"]["labels"] for w in workloads.values()]
    for name, workload in workloads.items():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: selector misses its pods"
    for kind in ("Service", "PodDisruptionBudget"):
        for name, obj in objects(kind).items():
            spec = obj["spec"]
            selector = spec["selector"].get("matchLabels", spec["selector"])
            matched = [t for t in templates if selector.items() <= t.items()]
            assert len(matched) == 1, f"{kind} {name} selects {len(matched)} workloads"
    for name, hpa in objects("HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in objects("Deployment"), name


def test_k8s_services_target_named_container_ports() -> None:
    workloads = {**objects("Deployment"), **objects("StatefulSet")}
    for name, service in objects("Service").items():
        selector = service["spec"]["selector"]
        (pod,) = [w["spec"]["template"] for w in workloads.values()
                  if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"]
                 for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{name}: {target}"


def test_k8s_conveyor_containers_run_real_commands_with_real_settings() -> None:
    config = objects("ConfigMap")["conveyor-config"]["data"]
    secret = objects("Secret")["conveyor-secrets"]["stringData"]
    check_env(config, "ConfigMap conveyor-config")
    check_env(secret, "Secret conveyor-secrets")
    for name, container in conveyor_containers():
        check_invocation(container["args"], f"Deployment {name}")
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"conveyor-config", "conveyor-secrets"}, name
        check_env({e["name"]: e.get("value", "") for e in container.get("env", [])}, name)
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part]), f"{name} {part}"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    services_ = objects("Service")
    for var in ("CONVEYOR_REDIS_URL", "CONVEYOR_STORE_URL"):
        host = re.sub(r"^[\w+]+://(?:[^@/]*@)?([^:/,]+).*$", r"\1", secret[var])
        assert host in services_, f"{var} names {host}, not a Service in deploy/k8s"


def test_k8s_api_probes_and_ports_match_the_api() -> None:
    (api,) = [c for name, c in conveyor_containers() if name == "conveyor-api"]
    port = api_default_port()
    assert option_value(api["args"], "--port") == str(port)
    assert option_value(api["args"], "--host") == "0.0.0.0"
    named = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert named == {"http": port}
    routes = api_routes()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = api[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert named.get(get["port"], get["port"]) == port
    (service,) = [s for s in objects("Service").values() if s["metadata"]["name"] == "conveyor-api"]
    assert [p["port"] for p in service["spec"]["ports"]] == [port]


def test_k8s_workers_get_longer_than_their_grace_period() -> None:
    config = objects("ConfigMap")["conveyor-config"]["data"]
    worker = objects("Deployment")["conveyor-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > grace_seconds(config)


def test_k8s_redis_is_durable_and_never_evicts() -> None:
    (redis,) = objects("StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"]
    args = [str(a) for a in redis["args"]]
    assert option_value(args, "--appendonly") == "yes"
    assert option_value(args, "--appendfsync") == "everysec"
    assert option_value(args, "--maxmemory-policy") == "noeviction"


# -- docs/operations.md: the ACL user --------------------------------------------------------

@cache
def acl_rule() -> list[str]:
    text = OPERATIONS.read_text()
    marker = text.index("<!-- acl:conveyor")
    block = re.search(r"```[^\n]*\n(.*?)```", text[marker:], re.S)
    assert block, "no code block after the acl:conveyor marker"
    return block.group(1).split()


def lua_commands() -> set[str]:
    found = set()
    for path in LUA.rglob("*.lua"):
        found |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]",
                                                  path.read_text())}
    assert found, "no redis.call in the Lua scripts"
    return found


def test_acl_user_grants_every_command_the_lua_scripts_call() -> None:
    granted = {token[1:].lower() for token in acl_rule() if token.startswith("+")}
    missing = lua_commands() - granted
    assert not missing, f"docs/operations.md's ACL user lacks {sorted(missing)}"
    assert {"evalsha", "script|load"} <= granted
    assert "-@all" in acl_rule(), "the user should start from no commands"


def test_acl_user_key_patterns_match_conveyors_keys_and_nothing_else() -> None:
    rule = acl_rule()
    keys = [t[1:] for t in rule if t.startswith("~")]
    channels = [t[1:] for t in rule if t.startswith("&")]
    prefix = Settings().prefix
    k = Keys(prefix)
    queue = k.queue("emails")
    samples = [queue.ready("high"), queue.job("0123"), queue.events, queue.unique("x"),
               k.glob.workers, k.glob.catalog, k.glob.api_keys, k.glob.lock("leader")]
    for key in samples:
        assert any(fnmatch.fnmatchcase(key, p) for p in keys), f"{key} matches no {keys}"
    others = [f"{prefix}:emails:high", "{other}:queues", f"{{{prefix}x}}:queues"]
    for key in others:
        assert not any(fnmatch.fnmatchcase(key, p) for p in keys), f"{key} matches {keys}"
    for channel in (f"{k.glob.tag}:{CANCEL_CHANNEL}", f"{k.glob.lock('leader')}:released"):
        assert any(fnmatch.fnmatchcase(channel, p) for p in channels), channel
