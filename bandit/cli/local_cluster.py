"""Start a throwaway Redis Cluster on loopback from Debian's redis-server and redis-cli.

The tests and the benchmarks run the service against it; `mab demo --redis-cluster` does too.
Each node gets a free port whose cluster-bus port (port + 10000) is free as well, and a work
directory of its own; nothing is persisted unless `durable` (AOF, fsync always).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bandit.cli.local_redis import RedisNotFound, answers, free_port

#: Cluster nodes talk to each other on the client port + this.
BUS_PORT_OFFSET = 10_000


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(count: int) -> list[int]:
    """`count` ports that are free, each with its bus port free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + BUS_PORT_OFFSET < 65_536 and port not in ports and _port_is_free(port + BUS_PORT_OFFSET):
            ports.append(port)
    return ports


def _info(port: int, section: str) -> dict[str, str]:
    reply = subprocess.run(
        ["redis-cli", "-p", str(port), *section.split()], capture_output=True, text=True, timeout=5, check=False
    ).stdout
    return dict(line.split(":", 1) for line in reply.splitlines() if ":" in line)


@dataclass
class LocalCluster:
    """A running Redis Cluster: `primaries` × (1 + `replicas`) redis-server processes."""

    primaries: int = 3
    replicas: int = 0
    # How long a primary may be unreachable before its replica takes over (cluster-node-timeout).
    node_timeout_ms: int = 2000
    durable: bool = False
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mab-cluster-")))

    @property
    def ports(self) -> list[int]:
        return list(self.processes)

    @property
    def url(self) -> str:
        """A URL naming one node (the service discovers the others from it)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise RedisNotFound(f"no {tool} on PATH: install it (apt-get install redis-server)")
        for port in cluster_ports(self.primaries * (1 + self.replicas)):
            self.processes[port] = self._start_node(port)
        deadline = time.monotonic() + 15
        while not all(answers("127.0.0.1", port) for port in self.ports):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server nodes of the cluster did not start")
            time.sleep(0.05)
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr[-2000:]}")
        try:
            self.wait_until_healthy()
        except RuntimeError:
            self.stop()  # no node outlives a cluster that never came up
            raise
        return self

    def _start_node(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        return subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                *persistence,
                "--dir",
                str(node_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_until_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every live node reports the cluster ok and every live replica is in sync."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = [port for port, process in self.processes.items() if process.poll() is None]
            states = [_info(port, "cluster info").get("cluster_state") for port in live]
            replicas_synced = all(
                info.get("master_link_status", "up") == "up"
                for info in (_info(port, "info replication") for port in live)
            )
            if states and all(state == "ok" for state in states) and replicas_synced:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not healthy after {timeout_s} s: states {states}")
            time.sleep(0.1)

    def primary_ports(self) -> list[int]:
        """Ports of the live nodes that are primaries now (a failover changes them)."""
        return [
            port
            for port, process in self.processes.items()
            if process.poll() is None and _info(port, "info replication").get("role") == "master"
        ]

    def owner_of(self, key: str) -> int:
        """Port of the primary that serves `key`'s slot now, as the live nodes see it."""
        port = next(port for port, process in self.processes.items() if process.poll() is None)

        def ask(*command: str) -> str:
            return subprocess.run(
                ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=5, check=True
            ).stdout

        slot = int(ask("cluster", "keyslot", key))
        for line in ask("cluster", "nodes").splitlines():
            node_id, address, flags, *rest = line.split()
            del node_id
            if "master" not in flags or "fail" in flags:
                continue
            for span in rest[5:]:  # after master id, ping/pong times, epoch and link state
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(address.split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no live primary serves the slot of {key!r}")

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        process = self.processes[port]
        process.kill()
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed node again on its port and directory: it rejoins the cluster (as a replica
        of the primary that took over its slots, if one did)."""
        self.processes[port] = self._start_node(port)
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start again on port {port}")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
