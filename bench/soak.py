"""Soak: minutes of notifies at 80% of the peak accept rate measured in the same run.

First a short closed-loop run (as bench.ingest) measures the peak; then paced connections hold 80%
of it for the soak. Printed per minute: rate, p50, p99 and the API process's memory (RSS); at the
end the whole run's p50/p99 (target: p99 at most 3x p50) and the memory growth after the first
minute (target: flat).

    python -m bench.soak [--minutes 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import ROOT, build_requests, load, process, python, redis_for_bench
from bench.ingest import _MAKE_KEY, KEY, bodies
from gateway.state.redisdb import free_port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def paced(
    port: int, requests: list[bytes], rate: float, seconds: float, connections: int
) -> list[tuple[float, float, int]]:
    """(send time, latency, status) of every request, each connection sending on its own schedule."""
    out: list[tuple[float, float, int]] = []
    gap = connections / rate
    start = time.perf_counter() + 0.5
    counter = [0]

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = start + k * gap / connections
        try:
            while due < start + seconds:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                i = counter[0]
                counter[0] += 1
                sent = time.perf_counter()
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                out.append((sent - start, time.perf_counter() - sent, int(head[9:12])))
                due += gap
        finally:
            writer.close()

    await asyncio.gather(*(one(k) for k in range(connections)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    payloads = bodies(50_000)
    with redis_for_bench() as url:
        env = {
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_RATE_LIMIT_PER_SECOND": "1e9",
        }
        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, 0)), check=True, cwd=ROOT)
        port = free_port()
        with process(
            python("-m", "gateway.cli", "serve", "--port", str(port)),
            env=env,
            ready_url=f"http://127.0.0.1:{port}/healthz",
        ) as api:
            reqs = build_requests(
                "127.0.0.1", port, "/v1/notify", payloads, {"Authorization": f"Bearer {KEY}"}
            )
            load("127.0.0.1", port, reqs, connections=args.connections, seconds=2.0)  # warm-up
            peak = load("127.0.0.1", port, reqs, connections=args.connections, seconds=10.0).rate
            target = 0.8 * peak
            seconds = args.minutes * 60
            memory: list[tuple[float, float]] = []
            done = asyncio.Event()

            async def sample() -> None:
                t0 = time.perf_counter()
                while not done.is_set():
                    memory.append((time.perf_counter() - t0, rss_mib(api.pid)))
                    await asyncio.sleep(5)

            async def run() -> list[tuple[float, float, int]]:
                sampler = asyncio.create_task(sample())
                try:
                    return await paced(port, reqs, target, seconds, args.connections)
                finally:
                    done.set()
                    await sampler

            results = asyncio.run(run())
    print(
        f"soak: peak {peak:,.0f} req/s (closed loop, {args.connections} connections, same run); holding {target:,.0f} req/s for {args.minutes:g} min"
    )
    print("minute   req/s     p50 ms   p99 ms   RSS MiB   non-2xx")
    for minute in range(int(args.minutes + 0.999)):
        window = [r for r in results if minute * 60 <= r[0] < (minute + 1) * 60]
        if not window:
            continue
        lat = sorted(x[1] for x in window)
        rss = [m for t, m in memory if minute * 60 <= t < (minute + 1) * 60] or [float("nan")]
        bad = sum(1 for x in window if not 200 <= x[2] < 300)
        print(
            f"{minute + 1:>6} {len(window) / 60:>8,.0f} {lat[len(lat) // 2] * 1000:>9.2f} "
            f"{lat[int(len(lat) * 0.99)] * 1000:>8.2f} {max(rss):>9.1f} {bad:>9}"
        )
    lat = sorted(x[1] for x in results)
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
    after_first = [m for t, m in memory if t >= 60] or [m for _, m in memory]
    growth = max(after_first) - after_first[0]
    print(
        f"overall: {len(results) / seconds:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"(p99/p50 {p99 / p50:.2f}, target <= 3), RSS after minute 1: {after_first[0]:.1f} -> {max(after_first):.1f} MiB "
        f"(+{growth:.1f}; median {statistics.median(m for _, m in memory):.1f})"
    )


if __name__ == "__main__":
    main()
