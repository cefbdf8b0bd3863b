"""The Cluster script pipe: calls routed by slot to every master in one go, ASK and MOVED followed
through a slot migration, scripts reloaded after a flush, a killed master a ConnectionError until its
replica is promoted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from gateway.state.clusterpipe import ClusterPipe, slot_of
from gateway.state.localcluster import LocalCluster, Node

pytestmark = pytest.mark.integration

SET_AND_SAY = "redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]"


def _node_id(node: Node) -> str:
    client = node.client()
    try:
        return str(client.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _cmd(node: Node, *args: Any) -> Any:
    client = node.client()
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def test_calls_go_to_every_master_in_order(redis_cluster: LocalCluster) -> None:
    async def run() -> list[Any]:
        pipe = ClusterPipe(redis_cluster.url)
        try:
            calls = [([f"tid:{{acme:{b}}}:x"], [f"v{b}"]) for b in range(48)]
            return await pipe.run_many(SET_AND_SAY, calls)
        finally:
            await pipe.aclose()

    assert asyncio.run(run()) == [f"v{b}".encode() for b in range(48)]
    owners = {redis_cluster.node_for_slot(slot_of(f"{{acme:{b}}}")).port for b in range(48)}
    assert len(owners) == 3
    for b in (0, 17, 47):
        node = redis_cluster.node_for_slot(slot_of(f"{{acme:{b}}}"))
        assert _cmd(node, "GET", f"tid:{{acme:{b}}}:x") == f"v{b}".encode()


def test_ask_and_moved_are_followed_through_a_migration(redis_cluster: LocalCluster) -> None:
    key_old, key_new = "tid:{acme:mig}:old", "tid:{acme:mig}:new"
    slot = slot_of(key_old)
    source = redis_cluster.node_for_slot(slot)
    target = next(n for n in redis_cluster.masters() if n.port != source.port)

    async def run() -> None:
        pipe = ClusterPipe(redis_cluster.url)
        try:
            assert await pipe.call(SET_AND_SAY, [key_old], ["1"]) == b"1"  # the map now says: source
            _cmd(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(source))
            _cmd(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(target))
            # A key the source no longer holds: ASK, then ASKING + the call on the target.
            assert await pipe.call(SET_AND_SAY, [key_new], ["2"]) == b"2"
            assert await pipe.call(SET_AND_SAY, [key_old], ["3"]) == b"3"  # still on the source
            _cmd(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key_old)
            for node in redis_cluster.masters():
                _cmd(node, "CLUSTER", "SETSLOT", slot, "NODE", _node_id(target))
            # The pipe's map still names the source: MOVED, the map read again, the call on the target.
            assert await pipe.call(SET_AND_SAY, [key_old], ["4"]) == b"4"
        finally:
            await pipe.aclose()

    asyncio.run(run())
    assert redis_cluster.node_for_slot(slot).port == target.port
    assert _cmd(target, "GET", key_old) == b"4" and _cmd(target, "GET", key_new) == b"2"


def test_scripts_are_loaded_again_after_a_flush(redis_cluster: LocalCluster) -> None:
    async def run() -> None:
        pipe = ClusterPipe(redis_cluster.url)
        try:
            assert await pipe.call(SET_AND_SAY, ["tid:{acme:1}:x"], ["a"]) == b"a"
            for node in redis_cluster.masters():
                _cmd(node, "SCRIPT", "FLUSH")
            assert await pipe.call(SET_AND_SAY, ["tid:{acme:1}:x"], ["b"]) == b"b"
        finally:
            await pipe.aclose()

    asyncio.run(run())


def test_a_killed_master_fails_fast_until_its_replica_serves(redis_cluster: LocalCluster) -> None:
    key = "tid:{acme:9}:x"
    victim = redis_cluster.node_for_slot(slot_of(key))

    async def run() -> tuple[int, float]:
        pipe = ClusterPipe(redis_cluster.url, timeout=1.0)
        try:
            assert await pipe.call(SET_AND_SAY, [key], ["before"]) == b"before"
            redis_cluster.kill(victim)
            failures, started = 0, time.monotonic()
            while True:
                try:
                    assert await pipe.call(SET_AND_SAY, [key], ["after"]) == b"after"
                    return failures, time.monotonic() - started
                except redis.ConnectionError:
                    failures += 1
                    assert time.monotonic() - started < 30, "no replica took over"
                    await asyncio.sleep(0.1)
        finally:
            await pipe.aclose()

    failures, took = asyncio.run(run())
    assert failures >= 1 and took < 30  # the dead master's calls failed (the API answers them 503)
    assert redis_cluster.node_for_slot(slot_of(key)).port != victim.port
