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

from bench.common import build_requests, load, process, python, redis_for_bench
from gateway.redisdb import free_port

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
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    payloads = bodies(20_000)
    with redis_for_bench() as url:
        env = {"TIDINGS_REDIS_URL": url, "TIDINGS_LOG_LEVEL": "WARNING"}
        import subprocess

        from bench.common import ROOT

        subprocess.run(python("-c", _MAKE_KEY % (url, KEY)), check=True, cwd=ROOT)
        bare_port, api_port = free_port(), free_port()
        uvicorn_args = ["--log-level", "warning", "--no-access-log"]
        with process(
            python("-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), *uvicorn_args),
            ready_url=f"http://127.0.0.1:{bare_port}/",
        ):
            reqs = build_requests("127.0.0.1", bare_port, "/v1/notify", payloads, {})
            load("127.0.0.1", bare_port, reqs, connections=args.connections, seconds=1.0)  # warm-up
            bare = load("127.0.0.1", bare_port, reqs, connections=args.connections, seconds=args.seconds)
        with process(
            python("-m", "gateway.cli", "serve", "--port", str(api_port)),
            env=env,
            ready_url=f"http://127.0.0.1:{api_port}/healthz",
        ):
            reqs = build_requests(
                "127.0.0.1", api_port, "/v1/notify", payloads, {"Authorization": f"Bearer {KEY}"}
            )
            load("127.0.0.1", api_port, reqs, connections=args.connections, seconds=1.0)
            ours = load("127.0.0.1", api_port, reqs, connections=args.connections, seconds=args.seconds)
    print(
        f"ingest: {args.connections} connections, {args.seconds:.0f} s each, one uvicorn process per server"
    )
    print(bare.line("bare Litestar endpoint"))
    print(ours.line("tidings POST /v1/notify"))
    print(f"ratio accepted/bare: {ours.rate / bare.rate:.2f}x   (target >= 0.5x)")
    if set(ours.statuses) != {202}:
        raise SystemExit(f"unexpected statuses from tidings: {ours.statuses}")


_MAKE_KEY = """
import asyncio
from gateway.auth import SCOPES, store_key
from gateway.redisdb import async_client
async def run():
    c = async_client(%r)
    await store_key(c, %r, "bench", list(SCOPES))
    await c.aclose()
asyncio.run(run())
"""

if __name__ == "__main__":
    main()
