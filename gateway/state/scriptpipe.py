"""A lean, pipelined EVALSHA channel for the accept hot path.

redis-py's asyncio pipeline costs about 20 µs per accept (pipeline objects,
connection-pool locking, per-command parsing). Here one connection per process
carries every accept, driven by an asyncio Protocol:

- each call packs its command with hiredis. A batch's commands (``call_many``,
  ``commands``) are queued, and those queued during one turn of the event loop
  leave in one write (one system call, and Redis reads them in one go). A single
  ``call`` (one notify's accept) is written at once when Redis has none of ours
  left to answer: idle, it starts on it while the API prepares the next request
  (waiting for the turn's end kept the two in lockstep, each idle while the
  other worked). While Redis is busy with earlier calls, a new one joins the
  turn's write instead (Nagle's rule): under ``bench.ingest`` that took the
  API's system time from about 35 to 24 µs per accept and Redis's CPU from
  about 124 to 82 µs (fewer, larger reads and replies);
- replies are fed to hiredis as they arrive and resolve the callers' futures in
  order (Redis answers in order);
- one watchdog timer, not one per call, fails calls Redis has not answered in
  time. A late reply finds its future done and is skipped, so order is kept.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
from redis.connection import parse_url

from gateway.state.redisdb import parse_sentinel


class _Channel(asyncio.Protocol):
    """One Redis connection: queued writes out, replies in order back to their futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.parser = hiredis.Reader()
        # (future, deadline) in the order the commands were written.
        self.waiters: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None

    # -- protocol callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, waiters = self.parser, self.waiters
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                fut = waiters.popleft()[0]
                if not fut.done():
                    fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError):
            self.fail(redis.ConnectionError("Redis sent a reply nobody asked for"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis.ConnectionError("connection to Redis lost"))

    # -- calls ----------------------------------------------------------------------------------
    def send(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue a command; its reply resolves the returned future."""
        if self.closed:
            raise redis.ConnectionError("not connected")
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.waiters.append((fut, time.monotonic() + self.timeout))
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(hiredis.pack_command(command))
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout / 4, self._check_deadlines)
        return fut

    def send_now(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """``send``, written at once when Redis has nothing of ours to answer (idle, it starts on it
        while we go on); else queued like ``send``, to leave with the others of this loop turn."""
        if self.waiters or self.closed:
            return self.send(command)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.waiters.append((fut, time.monotonic() + self.timeout))
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout / 4, self._check_deadlines)
        packed = hiredis.pack_command(command)
        if self.outgoing:  # queued by send() this turn: they go first
            self.outgoing.append(packed)
            self._flush()
        elif self.transport is not None:
            self.transport.write(packed)
        return fut

    def _flush(self) -> None:
        out, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed and out:
            self.transport.write(b"".join(out))

    def _check_deadlines(self) -> None:
        self._watchdog = None
        if self.closed or not self.waiters:
            return
        now = time.monotonic()
        # The oldest call has the earliest deadline: stop at the first one still in time.
        for fut, deadline in self.waiters:
            if deadline > now:
                break
            if not fut.done():
                fut.set_exception(redis.TimeoutError("Redis did not answer in time"))
        self._watchdog = self.loop.call_later(self.timeout / 4, self._check_deadlines)

    def fail(self, exc: Exception) -> None:
        """Close and fail every call still waiting."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        while self.waiters:
            fut = self.waiters.popleft()[0]
            if not fut.done():
                fut.set_exception(exc)


class ScriptPipe:
    """Runs Lua scripts by EVALSHA over one dedicated connection: ``source`` by ``call``, any script
    by ``call_many`` (many calls in one write, for the batch paths: accept, outcomes, receipts)."""

    def __init__(self, url: str, source: str, timeout: float = 5.0) -> None:
        self.sentinel = parse_sentinel(url)
        if self.sentinel is not None:
            # The master is asked of the Sentinels at every (re)connection.
            self.options: dict[str, Any] = {
                "db": self.sentinel.db,
                "password": self.sentinel.password,
                "username": self.sentinel.username,
            }
        else:
            self.options = parse_url(url)  # type: ignore[no-untyped-call]  # noqa: RUF100
        if url.startswith("rediss://"):
            raise ValueError("ScriptPipe speaks plain TCP or unix sockets; use redis-py for TLS")
        self.source = source
        self.timeout = timeout
        self.sha: str | None = None
        self._shas: dict[str, str] = {}  # source -> sha of the scripts loaded on this connection
        self._channel: _Channel | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _ready(self) -> _Channel | None:
        channel = self._channel
        if channel is None or channel.closed or self.sha is None:
            return None
        if channel.loop is not asyncio.get_running_loop():
            return None  # made on another event loop (a process that runs several): connect anew
        return channel

    async def call(self, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        """EVALSHA the script; loads it when Redis does not know it (after a restart or flush)."""
        channel = self._ready() or await self._connect()
        result = await channel.send_now(("EVALSHA", self.sha, len(keys), *keys, *args))
        self._check_master(channel, result)
        if isinstance(result, hiredis.ReplyError) and str(result).startswith("NOSCRIPT"):
            self.sha = (await self._checked(channel, ("SCRIPT", "LOAD", self.source))).decode()
            result = await channel.send(("EVALSHA", self.sha, len(keys), *keys, *args))
        if isinstance(result, hiredis.ReplyError):
            raise redis.ResponseError(str(result))
        return result

    async def call_many(self, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """EVALSHA ``source`` once per (keys, args), all written at once; the replies in order. A
        script error raises after every call has answered (the others' effects stand)."""
        if not calls:
            return []
        channel = self._ready() or await self._connect()
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = (await self._checked(channel, ("SCRIPT", "LOAD", source))).decode()
        futures = [channel.send(("EVALSHA", sha, len(k), *k, *a)) for k, a in calls]
        results = [await f for f in futures]
        missing = [i for i, r in enumerate(results) if isinstance(r, hiredis.ReplyError)]
        if missing:
            self._check_master(channel, results[missing[0]])
            if str(results[missing[0]]).startswith("NOSCRIPT"):  # nothing ran: load and run those again
                sha = self._shas[source] = (await self._checked(channel, ("SCRIPT", "LOAD", source))).decode()
                again = [
                    channel.send(("EVALSHA", sha, len(calls[i][0]), *calls[i][0], *calls[i][1]))
                    for i in missing
                ]
                for i, f in zip(missing, again, strict=True):
                    results[i] = await f
            for r in results:
                if isinstance(r, hiredis.ReplyError):
                    raise redis.ResponseError(str(r))
        return results

    async def commands(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Plain commands (no scripts), all written at once; the replies in order. An error reply
        raises after every command has answered."""
        if not commands:
            return []
        channel = self._ready() or await self._connect()
        futures = [channel.send(c) for c in commands]
        results = [await f for f in futures]
        for r in results:
            if isinstance(r, hiredis.ReplyError):
                self._check_master(channel, r)
                raise redis.ResponseError(str(r))
        return results

    @staticmethod
    def _check_master(channel: _Channel, result: Any) -> None:
        if isinstance(result, hiredis.ReplyError) and str(result).startswith("READONLY"):
            # A failover made this server a replica: drop the connection; the next call finds the master.
            channel.fail(redis.ConnectionError("the master changed"))
            raise redis.ConnectionError("the Redis master changed (failover); retry")

    async def _connect(self) -> _Channel:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            channel = self._ready()
            if channel is not None:
                return channel
            channel = self._channel
            if channel is not None and channel.loop is loop:
                channel.fail(redis.ConnectionError("reconnecting"))
            self._shas = {}
            opts = self.options
            try:
                if self.sentinel is not None:
                    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

                    asker = AsyncSentinel(list(self.sentinel.sentinels), socket_timeout=2.0)  # type: ignore[no-untyped-call, unused-ignore]
                    try:
                        host, port = await asker.discover_master(self.sentinel.service)
                    except redis.RedisError as exc:
                        raise redis.ConnectionError(f"no master from the Sentinels: {exc}") from None
                    _, channel = await loop.create_connection(
                        lambda: _Channel(loop, self.timeout), host, int(port)
                    )
                elif "path" in opts:
                    _, channel = await loop.create_unix_connection(
                        lambda: _Channel(loop, self.timeout), opts["path"]
                    )
                else:
                    _, channel = await loop.create_connection(
                        lambda: _Channel(loop, self.timeout),
                        opts.get("host", "localhost"),
                        int(opts.get("port", 6379)),
                    )
            except OSError as exc:
                raise redis.ConnectionError(f"cannot reach Redis: {exc}") from None
            self._channel = channel
            password, username = opts.get("password"), opts.get("username")
            if password:
                await self._checked(channel, ("AUTH", username, password) if username else ("AUTH", password))
            if int(opts.get("db", 0) or 0):
                await self._checked(channel, ("SELECT", int(opts["db"])))
            self.sha = (await self._checked(channel, ("SCRIPT", "LOAD", self.source))).decode()
            return channel

    @staticmethod
    async def _checked(channel: _Channel, command: tuple[Any, ...]) -> Any:
        reply = await channel.send(command)
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    async def aclose(self) -> None:
        """Close the connection."""
        if self._channel is not None:
            self._channel.fail(redis.ConnectionError("closed"))
            self._channel = None
