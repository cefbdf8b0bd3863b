"""The accept path's pipelined script channel: order, NOSCRIPT after a flush, reconnect after a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import uvloop

from gateway.state.redisdb import EmbeddedRedis
from gateway.state.scriptpipe import ScriptPipe

pytestmark = pytest.mark.integration

ECHO = "return {KEYS[1], ARGV[1]}"
# The API runs on uvloop under uvicorn; tests and tools on the standard loop. Both must work.
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_concurrent_calls_get_their_own_replies_and_survive_flush_and_restart(
    tmp_path: Path, loop_kind: str
) -> None:
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

    loop = LOOPS[loop_kind]()
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


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_a_call_redis_does_not_answer_times_out_and_later_calls_get_their_own_replies(
    tmp_path: Path, loop_kind: str
) -> None:
    server = EmbeddedRedis(tmp_path / "var")
    url = server.start()
    pipe = ScriptPipe(url, ECHO, timeout=0.4)
    blocker = redis.Redis.from_url(url)

    async def run() -> tuple[object, object]:
        await pipe.call(["warm"], ["0"])
        # CLIENT PAUSE holds every other client's commands for 2 s, from the moment it returns: the
        # call behind it gets no answer in time (no race with the pause starting).
        blocker.execute_command("CLIENT", "PAUSE", "2000")
        started = asyncio.get_running_loop().time()
        with pytest.raises(redis.TimeoutError):
            await pipe.call(["late"], ["1"])
        waited = asyncio.get_running_loop().time() - started
        await asyncio.sleep(max(0.0, 2.2 - waited))  # the pause is over; the late reply has come
        after = await pipe.call(["after"], ["2"])  # the late reply is skipped, not handed to this call
        return waited, after

    loop = LOOPS[loop_kind]()
    try:
        waited, after = loop.run_until_complete(run())
        # About the 0.4 s time-out (two clocks read a moment apart), not the end of the 2 s pause.
        assert 0.39 <= float(waited) < 1.5  # type: ignore[arg-type]
        assert after == [b"after", b"2"]
        loop.run_until_complete(pipe.aclose())
    finally:
        loop.close()
        blocker.close()
        server.stop()
