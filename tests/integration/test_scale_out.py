"""Two API processes and two worker processes (as on separate hosts) on one Redis share a campaign:
nothing sent twice, nothing lost, both workers doing their part."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.state.redisdb import free_port
from tests.conftest import API_KEY, QUIET_OFF_POLICY, ROOT, TENANT, make_key, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 3000


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def cluster(redis_url: str, rdb: redis.Redis, tmp_path: Path) -> Iterator[dict[str, list[str]]]:
    policy = tmp_path / "policy.toml"
    policy.write_text(QUIET_OFF_POLICY, encoding="utf-8")
    sim_port = free_port()
    api_ports = [free_port(), free_port()]
    metric_ports = [free_port(), free_port()]
    base = {
        **os.environ,
        "TIDINGS_REDIS_URL": redis_url,
        "TIDINGS_POLICY_PATH": str(policy),
        "TIDINGS_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
        # Receipts go to the first API; any would do.
        "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{api_ports[0]}",
        "TIDINGS_AUDIT_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    make_key(redis_url, API_KEY, TENANT, ["notify"])
    cli = [sys.executable, "-m", "gateway.cli"]
    procs = [subprocess.Popen([*cli, "simulator", "--port", str(sim_port)], cwd=ROOT, env=base)]
    procs += [subprocess.Popen([*cli, "serve", "--port", str(p)], cwd=ROOT, env=base) for p in api_ports]
    procs += [
        subprocess.Popen([*cli, "worker"], cwd=ROOT, env={**base, "TIDINGS_WORKER_METRICS_PORT": str(p)})
        for p in metric_ports
    ]
    urls = {
        "sim": [f"http://127.0.0.1:{sim_port}"],
        "api": [f"http://127.0.0.1:{p}" for p in api_ports],
        "worker_metrics": [f"http://127.0.0.1:{p}/metrics" for p in metric_ports],
    }
    try:
        for url in [f"{u}/healthz" for u in urls["sim"] + urls["api"]] + urls["worker_metrics"]:
            wait_for(lambda url=url: _up(url), timeout=30)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def sent_by(url: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for s in family.samples:
            if s.name == "tidings_sends_total" and s.labels.get("outcome") == "sent":
                total += s.value
    return total


def test_two_apis_and_two_workers_share_a_campaign_with_nothing_lost_or_doubled(
    cluster: dict[str, list[str]],
) -> None:
    defaults = {
        "channel": "sms",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "会员", "points": 100, "days": 3},
    }
    ids: list[str] = []
    lock = threading.Lock()

    def post(api: str, starts: list[int]) -> None:
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
            for start in starts:
                items = [{"to": {"phone": f"135{i:08d}"}} for i in range(start, start + 250)]
                r = c.post("/v1/notify/batch", json={"defaults": defaults, "items": items})
                assert r.status_code == 200, r.text
                got = [x["id"] for x in r.json()["results"] if x["status"] == "queued"]
                with lock:
                    ids.extend(got)

    starts = list(range(0, N, 250))
    threads = [
        threading.Thread(target=post, args=(api, starts[k::2])) for k, api in enumerate(cluster["api"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == N

    sim = cluster["sim"][0]
    wait_for(lambda: httpx.get(f"{sim}/stats").json()["messages"] >= N, timeout=120, interval=0.5)
    stats = httpx.get(f"{sim}/stats").json()
    assert stats["messages"] == N and stats["duplicates"] == 0
    references = {m["reference"].rsplit(":", 1)[-1] for m in httpx.get(f"{sim}/messages", timeout=30).json()}
    assert references == set(ids)
    per_worker = [sent_by(u) for u in cluster["worker_metrics"]]
    assert sum(per_worker) == N and min(per_worker) > 0, per_worker
    # Receipts settle every one, through whichever API the simulator calls.
    with httpx.Client(
        base_url=cluster["api"][1], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as c:

        def delivered() -> bool:
            return all(c.get(f"/v1/notifications/{i}").json()["status"] == "delivered" for i in ids[::50])

        wait_for(delivered, timeout=60, interval=0.5)
