"""Opt-outs survive a Redis crash: the embedded redis-server runs with AOF (fsync every second)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.state.redisdb import EmbeddedRedis, async_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_opt_out_acknowledged_a_second_before_sigkill_survives(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "var")
    url = server.start()
    members = Members("test-hmac-key")

    async def add() -> None:
        client = async_client(url)
        try:
            assert await OptOuts(client, members).add(
                "acme", "+8613812345678", brand="星耀商城", source="sms_reply"
            )
        finally:
            await client.aclose()

    asyncio.run(add())
    time.sleep(1.5)  # appendfsync everysec: acknowledged more than a second ago
    server.kill()  # SIGKILL: no shutdown, no final fsync

    restarted = EmbeddedRedis(tmp_path / "var")
    url = restarted.start()
    try:

        async def read() -> list[dict[str, object]]:
            client = async_client(url)
            try:
                return await OptOuts(client, members).entries("acme", "+8613812345678")
            finally:
                await client.aclose()

        entries = asyncio.run(read())
        assert [(e["brand"], e["source"]) for e in entries] == [("星耀商城", "sms_reply")]
    finally:
        restarted.stop()
