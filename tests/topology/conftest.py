"""Real topologies started from the server binaries: Sentinel (1 primary, 1 replica,
3 sentinels) and Cluster (3 primaries). Valkey's binary is used (it ships in a dependency,
and it has WAITAOF); the same code runs on Redis 7.0."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as sync_redis

from conveyor.embedded import RedisServer, free_port
from tests.conftest import BINARIES

BINARY = BINARIES[-1][1]
SERVICE = "mymaster"


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except (sync_redis.RedisError, OSError):
            pass
        time.sleep(0.05)  # servers in other processes: no event to await
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def client(port: int) -> sync_redis.Redis:
    return sync_redis.Redis(port=port, decode_responses=True, socket_timeout=2)


@dataclass
class SentinelSetup:
    primary: RedisServer
    replica: RedisServer
    sentinel_ports: list[int]
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def current_primary_port(self) -> int:
        for port in self.sentinel_ports:
            try:
                _, p = client(port).sentinel_get_master_addr_by_name(SERVICE)
                return int(p)
            except sync_redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")


def start_sentinel(tmp: Path, index: int, primary_port: int) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    folder = tmp / f"sentinel{index}"
    folder.mkdir()
    conf = folder / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 4000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n")
    proc = subprocess.Popen([BINARY, str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: client(port).ping(), 10, "a sentinel")
    return port, proc


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    # Serve a returning replica at once (the default waits 5 s for more replicas to batch).
    fast_sync = ["--repl-diskless-sync-delay", "0"]
    primary = RedisServer(BINARY, tmp_path / "primary", extra=fast_sync)
    replica = RedisServer(BINARY, tmp_path / "replica", extra=fast_sync)
    setup = SentinelSetup(primary, replica, [])
    try:  # a setup that fails half way must not leave servers behind
        primary.start()
        replica.extra += ["--replicaof", "127.0.0.1", str(primary.port)]
        replica.start()
        wait_until(lambda: client(replica.port).info("replication")["master_link_status"]
                   == "up", 15, "the replica to sync")
        for i in range(3):
            port, proc = start_sentinel(tmp_path, i, primary.port)
            setup.sentinel_ports.append(port)
            setup.sentinels.append(proc)
        wait_until(lambda: all(
            len(client(p).sentinel_slaves(SERVICE)) == 1
            and int(client(p).sentinel_master(SERVICE)["num-other-sentinels"]) == 2
            for p in setup.sentinel_ports), 20, "the sentinels to see everyone")
        yield setup
    finally:
        for proc in setup.sentinels:
            proc.kill()
            proc.wait()
        primary.kill()
        replica.kill()


@dataclass
class ClusterSetup:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


@pytest.fixture
def cluster_setup(tmp_path: Path) -> Iterator[ClusterSetup]:
    """Three primaries with the slots split evenly."""
    # The bus port defaults to port + 10000, which a free high port can overflow: set it.
    bus_ports = [free_port() for _ in range(3)]
    nodes = [
        RedisServer(BINARY, tmp_path / f"node{i}", extra=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--cluster-port", str(bus)])
        for i, bus in enumerate(bus_ports)
    ]
    try:  # a setup that fails half way must not leave servers behind
        for node in nodes:
            node.start()
        form_cluster(nodes, bus_ports)
        yield ClusterSetup(nodes)
    finally:
        for node in nodes:
            node.kill()


def form_cluster(nodes: list[RedisServer], bus_ports: list[int]) -> None:
    bounds = [(0, 5460), (5461, 10922), (10923, 16383)]
    for node, (low, high) in zip(nodes, bounds, strict=True):
        client(node.port).execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
    for node, bus in zip(nodes[1:], bus_ports[1:], strict=True):
        client(nodes[0].port).execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
    wait_until(lambda: all("cluster_state:ok" in client(n.port).execute_command("CLUSTER", "INFO")
                           and len(client(n.port).execute_command("CLUSTER", "NODES")
                                   .strip().splitlines()) == 3
                           for n in nodes), 30, "the cluster to form")
