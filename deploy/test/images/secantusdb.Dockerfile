# Test-only stand-in for the mongo service: SecantusDB, a MongoDB-wire server on WiredTiger
# (GPL-2.0, beta; pinned). No mongod can be installed where the deploy test runs; see
# docs/stores.md for what was verified against it and what to check on a real replica set.
ARG BASE
FROM ${BASE}
ARG SECANTUSDB_VERSION=0.7.0b3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/secantusdb \
    && /opt/secantusdb/bin/pip install --no-cache-dir "secantusdb==${SECANTUSDB_VERSION}" \
    && mkdir -p /data/db && chown 10002:10002 /data/db
ENV PATH=/opt/secantusdb/bin:$PATH
USER 10002:10002
EXPOSE 27017
CMD ["secantusd-py", "--host", "0.0.0.0", "--port", "27017", "--standalone", \
     "--storage-path", "/data/db", "--cache-size", "256M"]
