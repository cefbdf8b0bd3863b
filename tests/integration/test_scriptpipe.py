"""The accept path's pipelined script channel: order, NOSCRIPT after a flush, reconnect after a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from gateway.redisdb import EmbeddedRedis
from gateway.scriptpipe import ScriptPipe

pytestmark = pytest.mark.integration

ECHO = "return {KEYS[1], ARGV[1]}"


def test_concurrent_calls_get_their_own_replies_and_survive_flush_and_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "var")
    url = server.start()
    pipe = ScriptPipe(url, ECHO)

    async def first_part() -> list[object]:
        replies = await asyncio.gather(*(pipe.call([f"k{i}"], [str(i)]) for i in range(500)))
        assert all(r == [f"k{i}".encode(), str(i).encode()] for i, r in enumerate(replies))
        redis.Redis.from_url(url).script_flush()
        return await pipe.call(["after-flush"], ["1"])  # NOSCRIPT: loaded again

    async def while_down() -> None:
        await asyncio.sleep(0.1)  # the reader sees the connection close
        with pytest.raises(redis.ConnectionError):
            await pipe.call(["k"], ["down"])  # nothing to connect to: a clear error (the API answers 503)

    async def after_restart() -> object:
        result = await pipe.call(["k"], ["back"])  # reconnects by itself
        await pipe.aclose()
        return result

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(first_part()) == [b"after-flush", b"1"]
        server.kill()
        loop.run_until_complete(while_down())
        server = EmbeddedRedis(tmp_path / "var")
        server.start()
        assert loop.run_until_complete(after_restart()) == [b"k", b"back"]
    finally:
        loop.close()
        server.stop()
