"""EVALSHA over a Redis Cluster: one pipelined channel per master, each call routed by its slot.

The Cluster counterpart of ``ScriptPipe`` (and of the store's pipelined ``EVALSHA``s, which redis-py's
cluster pipelines refuse). Each call goes to the master that serves the slot of its first key, per
the slot map (``CLUSTER SLOTS``, read at the first call and again after any redirection or lost
connection). The calls made in one turn of the event loop leave in one write per master, on the
same ``_Channel`` as ``ScriptPipe``'s. Replies:

- ``MOVED``: the slot map is stale (a failover, a resharding): read it again and send the call to
  the new owner;
- ``ASK``: the slot is being migrated and this key already moved: ``ASKING`` then the call, on the
  named node, once;
- ``TRYAGAIN``: a multi-key call during a migration: a short wait, again;
- ``NOSCRIPT``: ``SCRIPT LOAD`` on that node (a promoted replica, a restart), again;
- ``CLUSTERDOWN``, ``READONLY``, a refused or lost connection (a master died and no replica took
  over yet): ``redis.ConnectionError`` at once (the API answers 503 with ``Retry-After``); the next
  call reads the slot map again.

Every key of one call must share a slot (the layout in docs/cluster.md makes them).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.crc import key_slot

from gateway.state.redisdb import parse_cluster
from gateway.state.scriptpipe import _Channel

Address = tuple[str, int]
REDIRECTS = 5


def slot_of(key: str | bytes) -> int:
    """The Cluster slot of a key (of its ``{hash tag}`` when it has one)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


class ClusterPipe:
    """Runs Lua scripts by EVALSHA on a Cluster: ``call`` one, ``run_many`` a batch in one write per master."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        found = parse_cluster(url)
        if found is None:
            raise ValueError("ClusterPipe needs a redis+cluster:// URL")
        self.seeds: list[Address] = list(found.nodes)
        self.username, self.password = found.username, found.password
        self.timeout = timeout
        self._starts: list[int] = []  # first slot of each range, sorted
        self._ranges: list[tuple[int, Address, int]] = []  # (last slot, master, replicas) per range
        # Per master: the shared lane, and a lane for the calls that WAIT (WAIT blocks its connection).
        self._channels: dict[tuple[Address, bool], _Channel] = {}
        self._shas: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.replicated = False  # some master has had a replica (sticky, as the opt-out waits are)

    # -- slot map ---------------------------------------------------------------------------------
    async def refresh(self, *, stale: bool = True) -> None:
        """Read the slot map from the first node that answers (the known masters, then the seeds).
        ``stale=False``: only when no map is known (the calls that found none while another call was
        reading it do not read it again)."""
        async with self._lock:
            if not stale and self._ranges:
                return
            tried: list[str] = []
            for address in [*(a for a, _ in self._channels), *self.seeds]:
                try:
                    channel = await self._channel_unlocked(address)
                    reply = await channel.send(("CLUSTER", "SLOTS"))
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    tried.append(f"{address[0]}:{address[1]} ({exc})")
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    tried.append(f"{address[0]}:{address[1]} ({reply})")
                    continue
                rows = sorted(
                    (int(r[0]), int(r[1]), (_text(r[2][0]) or address[0], int(r[2][1])), len(r) - 3)
                    for r in reply
                )
                self._starts = [r[0] for r in rows]
                self._ranges = [(r[1], r[2], r[3]) for r in rows]
                self.replicated = self.replicated or any(r[3] > 0 for r in rows)
                return
            raise redis.ConnectionError(f"no Cluster node gave its slot map: {'; '.join(tried)}")

    def _owner(self, slot: int) -> Address:
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0 or slot > self._ranges[i][0]:
            raise redis.ConnectionError(f"no master serves slot {slot} (cluster down?)")
        return self._ranges[i][1]

    def _forget(self) -> None:
        self._starts, self._ranges = [], []

    async def has_replicas(self) -> bool:
        """Whether some master has had a replica (in any slot map this pipe has read)."""
        if not self._ranges:
            await self.refresh(stale=False)
        return self.replicated

    # -- connections ------------------------------------------------------------------------------
    async def _channel(self, address: Address, waits: bool = False) -> _Channel:
        channel = self._channels.get((address, waits))
        if channel is not None and not channel.closed:
            return channel
        async with self._lock:
            return await self._channel_unlocked(address, waits)

    async def _channel_unlocked(self, address: Address, waits: bool = False) -> _Channel:
        channel = self._channels.get((address, waits))
        if channel is not None and not channel.closed:
            return channel
        loop = asyncio.get_running_loop()
        try:
            _, fresh = await asyncio.wait_for(
                loop.create_connection(lambda: _Channel(loop, self.timeout), address[0], address[1]),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise redis.ConnectionError(
                f"cannot reach Cluster node {address[0]}:{address[1]}: {exc}"
            ) from None
        if self.password:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            reply = await fresh.send(auth)
            if isinstance(reply, hiredis.ReplyError):
                fresh.fail(redis.ConnectionError("closed"))
                raise redis.AuthenticationError(str(reply))
        self._channels[(address, waits)] = fresh
        return fresh

    # -- calls ------------------------------------------------------------------------------------
    def sha(self, source: str) -> str:
        """The script's SHA1 (as Redis computes it)."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's id
        return sha

    async def call(
        self, source: str, keys: Sequence[str], args: Sequence[str | bytes | int | float], wait_ms: int = 0
    ) -> Any:
        """EVALSHA one script on the master of its keys' slot; ``wait_ms``: then ``WAIT 1 wait_ms`` on
        the same connection (one of its own, as WAIT holds it), and the reply is ``(result, replicas
        that acknowledged)``."""
        if not keys:
            raise ValueError("a Cluster script call needs a key to route by")
        command = ("EVALSHA", self.sha(source), len(keys), *keys, *args)
        slot = slot_of(keys[0])
        asking: Address | None = None
        for _ in range(REDIRECTS):
            if not self._ranges:
                await self.refresh(stale=False)
            address = asking or self._owner(slot)
            try:
                channel = await self._channel(address, wait_ms > 0)
                reply = await _send(channel, command, asking is not None)
                if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
                    loaded = await channel.send(("SCRIPT", "LOAD", source))
                    if isinstance(loaded, hiredis.ReplyError):
                        raise redis.ResponseError(str(loaded))
                    reply = await _send(channel, command, asking is not None)
            except (redis.ConnectionError, redis.TimeoutError):
                self._forget()
                raise
            asking = None
            if not isinstance(reply, hiredis.ReplyError):
                if wait_ms:
                    acked = await channel.send(("WAIT", 1, wait_ms))
                    return reply, (0 if isinstance(acked, hiredis.ReplyError) else int(acked))
                return reply
            text = str(reply)
            kind = text.split(" ", 1)[0]
            if kind == "MOVED":
                self._forget()
                continue
            if kind == "ASK":
                host, _, port = text.split(" ")[2].rpartition(":")
                asking = (host or address[0], int(port))
                continue
            if kind == "TRYAGAIN":
                await asyncio.sleep(0.05)
                continue
            if kind in ("CLUSTERDOWN", "READONLY", "MASTERDOWN", "LOADING"):
                self._forget()
                raise redis.ConnectionError(f"the Cluster is failing over ({text}); retry")
            raise redis.ResponseError(text)
        raise redis.ConnectionError(f"slot {slot} still moving after {REDIRECTS} redirections; retry")

    async def run_many(self, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """Each call's result, in order; the calls leave together, one write per master. The first
        error is raised once every call has its answer."""
        results = await asyncio.gather(*(self.call(source, k, a) for k, a in calls), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def aclose(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            channel.fail(redis.ConnectionError("closed"))
        self._channels.clear()
        self._forget()


def run_many_sync(
    client: redis.Redis, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
) -> list[Any]:
    """For the blocking clients on a Cluster: EVALSHA each call in one redis-py cluster pipeline (its
    commands grouped per master, redirections followed), loading the script on every master once
    when one says NOSCRIPT. (redis-py's cluster pipelines block their ``evalsha`` method, not the
    command.) Results in order; the first error is raised."""
    sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's id
    for attempt in (1, 2):
        with client.pipeline(transaction=False) as pipe:
            for k, a in calls:
                pipe.execute_command("EVALSHA", sha, len(k), *k, *a)  # type: ignore[no-untyped-call]
            results = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            client.script_load(source)
            continue
        for r in results:
            if isinstance(r, Exception):
                raise r
        return list(results)
    raise AssertionError("unreachable")


async def _send(channel: _Channel, command: tuple[Any, ...], asking: bool) -> Any:
    """The command's reply; ``asking``: preceded by ASKING (queued back to back, so nothing comes between)."""
    if not asking:
        return await channel.send(command)
    ask, reply = channel.send(("ASKING",)), channel.send(command)
    await ask
    return await reply


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
