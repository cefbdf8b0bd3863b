"""Short-link redirects per second with p50/p99 latency, beside a bare Litestar redirect, same run.

The bare endpoint answers 302 to a fixed target. Tidings' ``GET /l/{code}`` does the real path:
the code's one Redis script (target, raw and counted clicks, repeat window), the redirect, and for
each person's first tap of a message the click event on its timeline and in the audit stream after
the answer. Every request is a phone's first tap of its own message's link (the costly case).

    python -m bench.links [--seconds 5] [--connections 32] [--links 100000]
"""

from __future__ import annotations

import argparse

import redis

from bench.common import LoadResult, load, process, python, redis_for_bench
from gateway.accept.links import new_code
from gateway.state import keys
from gateway.state.redisdb import free_port

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
TENANT = "bench"


def seed(url: str, n: int) -> list[str]:
    """n notifications, each with one tracked link (as the accept path writes them)."""
    client = redis.Redis.from_url(url)
    codes = [new_code() for _ in range(n)]
    with client.pipeline(transaction=False) as pipe:
        for i, code in enumerate(codes):
            ntf = f"ntf_bench{i:010d}"
            pipe.hset(
                keys.notification(TENANT, ntf),
                mapping={"id": ntf, "member": f"m{i}", "masked": "+86138****0000", "channel": "sms"},
            )
            pipe.hset(
                keys.link(code),
                mapping={
                    "t": TENANT,
                    "n": ntf,
                    "u": "https://m.xingyao.example.cn/points",
                    "c": "sms",
                    "cmp": "",
                },
            )
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    client.close()
    return codes


def requests_for(host: str, port: int, codes: list[str]) -> list[bytes]:
    return [
        f"GET /l/{c} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {PHONE}\r\n\r\n".encode() for c in codes
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating bare/tidings measurements; medians reported"
    )
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--links", type=int, default=100_000, help="distinct links (each tapped once per pass)")
    ap.add_argument(
        "--user-agent", default=PHONE, help="a robot's (curl/8) measures the redirect without the click event"
    )
    args = ap.parse_args()
    bare_runs: list[LoadResult] = []
    ours_runs: list[LoadResult] = []
    with redis_for_bench() as url:
        env = {"TIDINGS_REDIS_URL": url, "TIDINGS_LOG_LEVEL": "WARNING"}
        bare_port, api_port = free_port(), free_port()
        uvicorn_args = ["--log-level", "warning", "--no-access-log"]
        bare_cmd = python("-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), *uvicorn_args)
        ours_cmd = python("-m", "gateway.cli", "serve", "--port", str(api_port))
        with (
            process(bare_cmd, ready_url=f"http://127.0.0.1:{bare_port}/l/x"),
            process(ours_cmd, env=env, ready_url=f"http://127.0.0.1:{api_port}/healthz"),
        ):
            for _ in range(args.rounds):
                codes = seed(url, args.links)  # fresh links each round: every tap is a first tap
                bare_reqs = requests_for("127.0.0.1", bare_port, codes, args.user_agent)
                ours_reqs = requests_for("127.0.0.1", api_port, codes, args.user_agent)
                bare_runs.append(
                    load(
                        "127.0.0.1", bare_port, bare_reqs, connections=args.connections, seconds=args.seconds
                    )
                )
                ours_runs.append(
                    load("127.0.0.1", api_port, ours_reqs, connections=args.connections, seconds=args.seconds)
                )
    bare = sorted(bare_runs, key=lambda r: r.rate)[len(bare_runs) // 2]
    ours = sorted(ours_runs, key=lambda r: r.rate)[len(ours_runs) // 2]
    print(
        f"links: {args.connections} keep-alive connections, {args.rounds} alternating rounds of {args.seconds:.0f} s,"
        f" one uvicorn process per server, medians; every request a person's first tap"
    )
    print(bare.line("bare Litestar redirect"))
    print(ours.line("tidings GET /l/{code}"))
    print(
        "rounds (req/s): bare "
        + ", ".join(f"{r.rate:.0f}" for r in bare_runs)
        + "; tidings "
        + ", ".join(f"{r.rate:.0f}" for r in ours_runs)
    )
    print(f"ratio redirects/bare: {ours.rate / bare.rate:.2f}x   (target >= 0.6x)")
    statuses = {s for r in ours_runs for s in r.statuses}
    if statuses != {302}:
        raise SystemExit(f"unexpected statuses from tidings: {statuses}")


if __name__ == "__main__":
    main()
