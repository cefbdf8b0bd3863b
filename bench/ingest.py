"""Accepted notifies per second with p50/p99 latency, beside a bare Litestar endpoint, same run.

Both servers run as one uvicorn process each (same settings), driven by the
same load generator (keep-alive connections, closed loop) for the same time.
Tidings' side does the whole accept path: auth, decode, phone parsing,
template rendering, the accept Lua script in Redis and rq job enqueueing.

    python bench/ingest.py [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess

import redis

from bench.common import (
    ROOT,
    LoadResult,
    build_requests,
    load,
    machine_ticks,
    process,
    python,
    redis_for_bench,
    steal_line,
)
from gateway.state.redisdb import free_port

KEY = "bench-key-0123456789"


def bodies(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        out.append(
            json.dumps(
                {
                    "to": {"phone": f"138{i:08d}", "user_id": f"m-{i}"},
                    "channel": "sms",
                    "category": "marketing",
                    "brand": "星耀商城",
                    "template": "points_expiry",
                    "params": {"name": "李女士", "points": 28600 + i, "days": 12},
                    "metadata": {"campaign": "expiry-2026-12"},
                },
                ensure_ascii=False,
            ).encode()
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating bare/tidings measurements; medians reported"
    )
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--webhooks", type=int, default=0, help="webhook endpoints subscribed to every event for the tenant"
    )
    args = ap.parse_args()
    payloads = bodies(20_000)
    bare_runs: list[LoadResult] = []
    ours_runs: list[LoadResult] = []
    with redis_for_bench() as url:
        # The per-key limiter runs but does not limit: the bench measures the accept path.
        env = {
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_RATE_LIMIT_PER_SECOND": "1e9",
        }
        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, args.webhooks)), check=True, cwd=ROOT)
        bare_port, api_port = free_port(), free_port()
        uvicorn_args = ["--log-level", "warning", "--no-access-log"]
        bare_cmd = python("-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), *uvicorn_args)
        ours_cmd = python("-m", "gateway.cli", "serve", "--port", str(api_port))
        with (
            process(bare_cmd, ready_url=f"http://127.0.0.1:{bare_port}/"),
            process(ours_cmd, env=env, ready_url=f"http://127.0.0.1:{api_port}/healthz"),
        ):
            bare_reqs = build_requests("127.0.0.1", bare_port, "/v1/notify", payloads, {})
            ours_reqs = build_requests(
                "127.0.0.1", api_port, "/v1/notify", payloads, {"Authorization": f"Bearer {KEY}"}
            )
            load("127.0.0.1", bare_port, bare_reqs, connections=args.connections, seconds=1.0)  # warm-up
            load("127.0.0.1", api_port, ours_reqs, connections=args.connections, seconds=1.0)
            ticks_before = machine_ticks()
            for _ in range(args.rounds):
                # Each round starts from an empty Redis (nothing drains it here), as a steady state would.
                redis.Redis.from_url(url).flushall()
                subprocess.run(python("-c", _MAKE_KEY % (url, KEY, args.webhooks)), check=True, cwd=ROOT)
                bare_runs.append(
                    load(
                        "127.0.0.1", bare_port, bare_reqs, connections=args.connections, seconds=args.seconds
                    )
                )
                ours_runs.append(
                    load("127.0.0.1", api_port, ours_reqs, connections=args.connections, seconds=args.seconds)
                )
            steal = steal_line(ticks_before)
    bare = sorted(bare_runs, key=lambda r: r.rate)[len(bare_runs) // 2]
    ours = sorted(ours_runs, key=lambda r: r.rate)[len(ours_runs) // 2]
    print(
        f"ingest: {args.connections} keep-alive connections, {args.rounds} alternating rounds of {args.seconds:.0f} s,"
        f" one uvicorn process per server, medians; {args.webhooks} webhook endpoint(s) on every event"
    )
    print(bare.line("bare Litestar endpoint"))
    print(ours.line("tidings POST /v1/notify"))
    print(
        "rounds (req/s): bare "
        + ", ".join(f"{r.rate:.0f}" for r in bare_runs)
        + "; tidings "
        + ", ".join(f"{r.rate:.0f}" for r in ours_runs)
    )
    print(f"ratio accepted/bare: {ours.rate / bare.rate:.2f}x   (target >= 0.7x)")
    print(steal)
    statuses = {s for r in ours_runs for s in r.statuses}
    if statuses != {202}:
        raise SystemExit(f"unexpected statuses from tidings: {statuses}")


_MAKE_KEY = """
import asyncio
from gateway.api.auth import SCOPES, store_key
from gateway.state.redisdb import async_client
from gateway.webhooks.endpoints import Endpoints
async def run():
    c = async_client(%r)
    await store_key(c, %r, "bench", list(SCOPES))
    for i in range(%d):
        await Endpoints(c, allow_private=True).create("bench", url=f"http://127.0.0.1:9/hook{i}", events_=["*"])
    await c.aclose()
asyncio.run(run())
"""

if __name__ == "__main__":
    main()
