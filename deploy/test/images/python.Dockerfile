# Test-only stand-in for python:3.11-slim-bookworm, made from Debian packages (no image
# registry is reachable where the deploy test runs). Debian bookworm's python3 is 3.11, the
# same minor version as the upstream image, so deploy/Dockerfile builds on it unchanged.
ARG BASE
FROM ${BASE}
# Containers trust what the host trusts (deploy/test/base-images.sh puts the host's CA bundle
# in the base as a local CA): the system store for apt and Python's ssl, and these for pip's
# and Node's own bundles.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       python3 python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python --version
CMD ["python3"]
