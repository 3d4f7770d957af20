#!/usr/bin/env bash
# Builds the stand-in base images of the deploy test from Debian packages, since no image
# registry can be reached where it runs:
#   1. debootstrap --variant=minbase bookworm, from the mirror apt is configured with
#      (deploy/test/debian-mirror.sh), imported as conveyor-test/debian:bookworm;
#   2. on it, deploy/test/bases.yml's python, node and redis images, then secantusdb.
# The debootstrap is kept between runs (it is the slow, stable part): set
# CONVEYOR_TEST_REBUILD_BASES=1 to make it again. The other images rebuild from the build
# cache in seconds.
#
# The host's trusted CA bundle goes into the base (as a local CA file, which Debian's
# ca-certificates merges into the system bundle), so that containers trust what the host
# trusts, e.g. a TLS-inspecting proxy in front of the package registries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DEBIAN_IMAGE="${CONVEYOR_TEST_DEBIAN:-conveyor-test/debian:bookworm}"
export CONVEYOR_TEST_DEBIAN="$DEBIAN_IMAGE"
compose=(docker compose -f "$here/bases.yml" --project-name conveyor-test-bases)

log() { printf '[base-images] %s\n' "$*" >&2; }

if [ "${CONVEYOR_TEST_REBUILD_BASES:-0}" = 1 ] || ! docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1; then
  mirror="$("$here/debian-mirror.sh")"
  root="$(mktemp -d "${TMPDIR:-/tmp}/conveyor-debootstrap.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror"
  started=$SECONDS
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; rm -f "$root.log"
    echo "test-deploy: debootstrap of Debian bookworm failed (log above)" >&2; exit 1; }
  rm -f "$root.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  if [ -f "$bundle" ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp "$bundle" "$root/usr/local/share/ca-certificates/host-trusted.crt"
  fi
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"; trap - EXIT
  log "imported $DEBIAN_IMAGE in $((SECONDS - started)) s"
else
  log "reusing $DEBIAN_IMAGE (CONVEYOR_TEST_REBUILD_BASES=1 makes it again)"
fi

started=$SECONDS
"${compose[@]}" build --progress=plain python node redis > "${TMPDIR:-/tmp}/conveyor-bases.log" 2>&1 \
  && "${compose[@]}" build --progress=plain secantusdb >> "${TMPDIR:-/tmp}/conveyor-bases.log" 2>&1 || {
  tail -n 40 "${TMPDIR:-/tmp}/conveyor-bases.log" >&2
  echo "test-deploy: building the stand-in base images failed (log above)" >&2; exit 1; }
log "stand-in images built in $((SECONDS - started)) s"
