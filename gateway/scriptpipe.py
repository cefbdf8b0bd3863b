"""A lean, pipelined EVALSHA channel for the accept hot path.

redis-py's asyncio pipeline costs about 20 µs per accept (pipeline objects,
connection-pool locking, per-command parsing). Here one connection per process
carries every accept: each call packs its command with hiredis, writes it and
waits on a future; a reader task feeds replies to hiredis and resolves the
futures in order (Redis answers in order). Concurrent requests share the
socket's writes, so they pipeline by themselves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import parse_url


class ScriptPipe:
    """Runs one Lua script by EVALSHA over a dedicated connection."""

    def __init__(self, url: str, source: str, timeout: float = 5.0) -> None:
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        if url.startswith("rediss://"):
            raise ValueError("ScriptPipe speaks plain TCP or unix sockets; use redis-py for TLS")
        self.source = source
        self.timeout = timeout
        self.sha: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def call(self, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        """EVALSHA the script; loads it when Redis does not know it (after a restart or flush)."""
        if self._writer is None or self.sha is None:
            await self._connect()
        result = await self._wait(self._send(("EVALSHA", self.sha, len(keys), *keys, *args)))
        if isinstance(result, hiredis.ReplyError) and str(result).startswith("NOSCRIPT"):
            self.sha = (await self._checked(("SCRIPT", "LOAD", self.source))).decode()
            result = await self._wait(self._send(("EVALSHA", self.sha, len(keys), *keys, *args)))
        if isinstance(result, hiredis.ReplyError):
            raise redis.ResponseError(str(result))
        return result

    def _send(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self._writer is None:
            raise redis.ConnectionError("not connected")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._writer.write(hiredis.pack_command(command))
        return fut

    async def _connect(self) -> None:
        async with self._lock:
            if self._writer is not None and self.sha is not None:
                return
            try:
                if "path" in self.options:
                    reader, writer = await asyncio.open_unix_connection(self.options["path"])
                else:
                    reader, writer = await asyncio.open_connection(
                        self.options.get("host", "localhost"), int(self.options.get("port", 6379))
                    )
            except OSError as exc:
                raise redis.ConnectionError(f"cannot reach Redis: {exc}") from None
            self._reader, self._writer = reader, writer
            self._task = asyncio.get_running_loop().create_task(self._read_replies(reader))
            password, username = self.options.get("password"), self.options.get("username")
            if password:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                await self._checked(auth)
            if int(self.options.get("db", 0) or 0):
                await self._checked(("SELECT", int(self.options["db"])))
            self.sha = (await self._checked(("SCRIPT", "LOAD", self.source))).decode()

    async def _wait(self, fut: asyncio.Future[Any]) -> Any:
        # A reply that comes after the time-out finds its future done and is skipped: order is kept.
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            fut.cancel()
            raise redis.TimeoutError("Redis did not answer in time") from None

    async def _checked(self, command: tuple[Any, ...]) -> Any:
        reply = await self._wait(self._send(command))
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    fut = self._waiters.popleft()
                    if not fut.done():
                        fut.set_result(reply)
        except (OSError, hiredis.ProtocolError):
            pass
        finally:
            self._fail_all(redis.ConnectionError("connection to Redis lost"))

    def _fail_all(self, exc: Exception) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def aclose(self) -> None:
        """Close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(redis.ConnectionError("closed"))
