# Test-only stand-in for node:22-bookworm-slim, made from packages (no image registry is
# reachable where the deploy test runs). Debian bookworm's Node.js is 18 and the dashboard
# needs >= 20.19 (Vite 7): Debian's npm installs Node 22 from the npm registry's `node`
# package (and a current npm), which land in /usr/local/bin, ahead of Debian's on PATH.
ARG BASE
FROM ${BASE}
# Containers trust what the host trusts (deploy/test/base-images.sh puts the host's CA bundle
# in the base as a local CA): the system store for apt and Python's ssl, and these for pip's
# and Node's own bundles.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
ARG NODE_VERSION=22
ARG NPM_VERSION=10
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && npm install -g --no-audit --no-fund "node@${NODE_VERSION}" \
    && npm install -g --no-audit --no-fund "npm@${NPM_VERSION}" \
    && npm cache clean --force \
    && hash -r \
    && node -e 'const [a, b] = process.versions.node.split(".").map(Number); \
if (a < 20 || (a === 20 && b < 19)) { console.error("node " + process.version + " < 20.19"); process.exit(1); }' \
    && node --version && npm --version
CMD ["node"]
