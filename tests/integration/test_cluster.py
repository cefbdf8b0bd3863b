"""The gateway on a Redis Cluster (3 masters, a replica each) with rq on a Redis of its own: notifications
of several tenants accepted, delivered and receipted across the masters; one master SIGKILLed: its
tenants' requests answer 503 (never 500) while the others go on, its replica is promoted, and every
notification ends delivered, none sent twice.

The state still keeps a whole tenant in one slot (``{tenant}``); spreading a tenant's members over
the slots is the next step of docs/cluster.md. The tenants here land on different masters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway import metrics
from gateway.api.auth import SCOPES
from gateway.state.clusterpipe import slot_of
from gateway.state.localcluster import LocalCluster
from gateway.state.redisdb import EmbeddedRedis, async_client, scan_pages, sync_client
from tests.conftest import API_KEY, ROOT, Stack, build_stack, make_key, points_expiry, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def queue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("rq"))
    url = server.start()
    yield url
    server.stop()


def _tenants(cluster: LocalCluster) -> dict[str, int]:
    """One tenant per master (beside the stack's own ``acme``): tenant -> its master's port."""
    found: dict[str, int] = {}
    for i in range(200):
        port = cluster.node_for_slot(slot_of(f"{{shop{i}}}")).port
        if port not in found.values():
            found[f"shop{i}"] = port
        if len(found) == 3:
            return found
    raise AssertionError("three tenants on three masters not found")


def _waits(outcome: str) -> float:
    found = metrics.REGISTRY.get_sample_value("tidings_optout_replication_waits_total", {"outcome": outcome})
    return found or 0.0


def _post(client: httpx.Client, key: str, phone: str) -> httpx.Response:
    return client.post("/v1/notify", json=points_expiry(phone), headers={"Authorization": f"Bearer {key}"})


def _status(stack: Stack, key: str, ntf_id: str) -> str:
    with stack.client(key) as c:
        return str(c.get(f"/v1/notifications/{ntf_id}").json()["status"])


def test_notifications_across_a_cluster_survive_a_master_kill(
    redis_cluster: LocalCluster, queue_redis: str, tmp_path: Path, quiet_off_policy: str
) -> None:
    tenants = _tenants(redis_cluster)
    stack = build_stack(redis_cluster.url, tmp_path, quiet_off_policy, queue_redis_url=queue_redis)
    try:
        api_keys = {t: f"key-{t}-0123456789" for t in tenants}
        for tenant, key in api_keys.items():
            make_key(redis_cluster.url, key, tenant, list(SCOPES))
        sent: dict[str, list[str]] = {t: [] for t in tenants}
        with httpx.Client(base_url=stack.api_url, timeout=10) as c:
            for n, (tenant, key) in enumerate(api_keys.items()):
                for i in range(15):
                    r = _post(c, key, f"13{n}{i:08d}")
                    assert r.status_code == 202, r.text
                    sent[tenant].append(r.json()["id"])
            wait_for(
                lambda: all(_status(stack, api_keys[t], i) == "delivered" for t in sent for i in sent[t]),
                timeout=60,
                interval=0.3,
            )
            # Nothing of the ready lists or jobs is on the Cluster: rq keeps to its own Redis.
            assert redis.Redis.from_url(queue_redis).exists("rq:workers")
            # An opt-out is acknowledged once a replica of its slot's master holds it, and holds.
            replicated = _waits("replicated")
            for key in api_keys.values():
                put = c.put(
                    "/v1/optouts/13012345678",
                    json={"channel": "sms", "reason": "客服来电要求"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert put.status_code == 200 and put.json()["opted_out"] is True, put.text
                assert _post(c, key, "13012345678").json()["status"] == "suppressed"
            assert _waits("replicated") - replicated == len(api_keys)

            victim_tenant = next(iter(tenants))
            victim = next(n for n in redis_cluster.nodes if n.port == tenants[victim_tenant])
            direct = victim.client()
            assert direct.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
            direct.close()
            redis_cluster.kill(victim)

            # The dead master's tenant: 503 (never 500) until its replica serves; the others go on.
            answers: list[int] = []
            others: list[int] = []

            def accepts() -> bool:
                r = _post(c, api_keys[victim_tenant], f"1370{len(answers):07d}")
                answers.append(r.status_code)
                for t in tenants:
                    if t != victim_tenant and len(others) < 10:
                        other = _post(c, api_keys[t], f"1371{len(others):07d}")
                        others.append(other.status_code)
                        if other.status_code == 202:
                            sent[t].append(other.json()["id"])
                if r.status_code == 202:
                    sent[victim_tenant].append(r.json()["id"])
                return r.status_code == 202

            wait_for(accepts, timeout=60, interval=0.2)
            assert 503 in answers and set(answers) <= {202, 503}, answers
            assert set(others) == {202}, others
            redis_cluster.wait_ok(30)
            for tenant, key in api_keys.items():
                for i in range(10):
                    r = _post(c, key, f"1372{i:07d}")
                    assert r.status_code == 202, r.text
                    sent[tenant].append(r.json()["id"])
            wait_for(
                lambda: all(_status(stack, api_keys[t], i) == "delivered" for t in sent for i in sent[t]),
                timeout=90,
                interval=0.5,
            )
            # The audit consumer moved every tenant's events off its stream (handoff per master):
            # each tenant's last notification has its receipt in the log, and the chain holds.
            for tenant, key in api_keys.items():
                auth = {"Authorization": f"Bearer {key}"}
                wait_for(
                    lambda auth=auth, last=sent[tenant][-1]: any(
                        e["type"] == "receipt" and e["notification_id"] == last
                        for e in c.get(
                            "/v1/audit/events", params={"type": "receipt", "limit": 1000}, headers=auth
                        ).json()["events"]
                    ),
                    timeout=30,
                    interval=0.3,
                )
                assert c.get("/v1/audit/verify", headers=auth).json()["ok"] is True
        received = Counter(m["reference"].rsplit(":", 1)[-1] for m in stack.messages())
        everything = {i for ids in sent.values() for i in ids}
        assert everything <= set(received) and max(received.values()) == 1
    finally:
        stack.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_optout_import_export_and_scans_cover_every_master(
    redis_cluster: LocalCluster, queue_redis: str, tmp_path: Path
) -> None:
    tenants = _tenants(redis_cluster)
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": redis_cluster.url,
        "TIDINGS_QUEUE_REDIS_URL": queue_redis,
        "TIDINGS_AUDIT_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        "TIDINGS_HMAC_KEY": "cluster-test-hmac-key",
    }
    for tenant in tenants:  # each tenant has a key (the audit consumer walks the tenants that do)
        make_key(redis_cluster.url, f"key-{tenant}-0123456789", tenant, list(SCOPES))
    csv = tmp_path / "optouts.csv"
    csv.write_text("".join(f"1350000{i:04d},,sms\n" for i in range(30)), encoding="utf-8")
    for tenant in tenants:
        done = _cli(env, "optouts", "import", str(csv), "--tenant", tenant)
        assert done.returncode == 0, done.stderr
    for tenant in tenants:
        done = _cli(env, "optouts", "export", "--tenant", tenant)
        assert done.returncode == 0, done.stderr
        rows = [line for line in done.stdout.splitlines()[1:] if line.strip()]
        assert len(rows) == 30 and all(r.startswith("+86135****") for r in rows), done.stdout[:300]

    async def scanned() -> set[int]:
        client = async_client(redis_cluster.url)
        try:
            found = [k async for page in scan_pages(client, "tid:*:optout:*", 7) for k in page]
        finally:
            await client.aclose()
        assert len(found) == 30 * len(tenants)
        return {redis_cluster.node_for_slot(slot_of(k)).port for k in found}

    assert asyncio.run(scanned()) == set(tenants.values())  # keys on all three masters, all found

    # Three of one tenant's opt-outs lost (a failover, an old backup): the audit log brings them back.
    done = _cli(env, "audit", "consume", "--drain")
    assert done.returncode == 0, done.stderr
    tenant = next(iter(tenants))
    state = sync_client(redis_cluster.url)
    try:
        lost = sorted(k for k in state.scan_iter(match=f"tid:{{{tenant}}}:optout:*", count=100))[:3]
        assert len(lost) == 3 and state.delete(*lost) == 3
    finally:
        state.close()
    first = _cli(env, "optouts", "reconcile", "--tenant", tenant, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["restored"], report["already_present"], report["only_in_redis"]) == (3, 27, 0), report
    again = json.loads(_cli(env, "optouts", "reconcile", "--tenant", tenant, "--json").stdout)
    assert (again["restored"], again["already_present"]) == (0, 30), again


def test_dead_letters_listed_and_replayed_on_a_cluster(
    redis_cluster: LocalCluster, queue_redis: str, tmp_path: Path, quiet_off_policy: str
) -> None:
    stack = build_stack(
        redis_cluster.url, tmp_path, quiet_off_policy, queue_redis_url=queue_redis, max_attempts=2
    )
    try:
        stack.faults(channel="sms", error_rate=1.0, mode="http_500")
        with stack.client() as c:
            ids = [c.post("/v1/notify", json=points_expiry(f"1360000{i:04d}")).json()["id"] for i in range(5)]
        wait_for(lambda: all(_status(stack, API_KEY, i) == "failed" for i in ids), timeout=60)
        stack.clear_faults()
        env = {**os.environ, "TIDINGS_REDIS_URL": redis_cluster.url, "TIDINGS_QUEUE_REDIS_URL": queue_redis}
        listed = _cli(env, "dlq", "list")
        assert listed.returncode == 0 and "5 dead letter(s)" in listed.stderr, listed.stderr
        replayed = _cli(env, "dlq", "replay")
        assert replayed.returncode == 0 and "replayed 5" in replayed.stdout, replayed.stderr
        wait_for(lambda: all(_status(stack, API_KEY, i) == "delivered" for i in ids), timeout=60)
        assert sorted(m["reference"].rsplit(":", 1)[-1] for m in stack.messages()) == sorted(ids)
    finally:
        stack.stop()
