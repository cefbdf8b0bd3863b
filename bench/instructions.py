"""Instructions the API process executes per request (valgrind's callgrind), bare endpoint beside ours.

``bench.ingest`` measures rates, and on a shared two-core machine those swing by a third between
rounds a minute apart (the bare endpoint alone: 5,000-10,000 req/s in one run), so a change of a
few per cent in the accept path cannot be seen in it. The instructions a server executes per
request do not swing: here each server runs under callgrind, takes ``--warm`` requests (caches
fill, as in ``bench.ingest``'s later rounds), has its counters zeroed (``callgrind_control -z``),
takes ``--requests`` more from the same closed-loop client and dumps its count. The same bodies
and settings as ``bench.ingest``; Redis runs natively beside it.

What it counts is user space only: the kernel's part of each system call (reads, writes, epoll)
is not in it, nor Redis. The ratio bare/ours is therefore not ``bench.ingest``'s ratio, but a
cut here is a cut there. Needs Debian's ``valgrind`` (``callgrind_control`` comes with it).

    python -m bench.instructions [--requests 2000] [--warm 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.common import ROOT, build_requests, python, redis_for_bench
from bench.ingest import _MAKE_KEY, KEY, bodies
from gateway.state.redisdb import free_port


async def _send(port: int, requests: list[bytes], count: int, connections: int) -> dict[int, int]:
    """``count`` requests over keep-alive connections (closed loop); the statuses answered."""
    statuses: dict[int, int] = {}
    left = [count]

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                writer.write(requests[left[0] % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return statuses


def _count(out_dir: Path) -> int:
    """The instructions in callgrind's dump (the one ``callgrind_control -d`` wrote)."""
    dumps = [p for p in out_dir.iterdir() if re.search(r"\.\d+$", p.name)]
    if not dumps:
        raise SystemExit("callgrind wrote no dump")
    text = max(dumps, key=lambda p: p.stat().st_mtime).read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit("no totals in callgrind's dump")
    return int(found.group(1))


def measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    ready: str,
    requests: list[bytes],
    args: argparse.Namespace,
) -> tuple[float, dict[int, int]]:
    """Instructions per request of one server, and its answers' statuses."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", *cmd]
        proc = subprocess.Popen(
            full, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 600  # imports run some fifty times slower under callgrind
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                    raise SystemExit(f"{name} exited: {err}")
                try:
                    httpx.get(ready, timeout=5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name} did not come up under callgrind") from None
                    time.sleep(1)
            asyncio.run(_send(port, requests, args.warm, args.connections))
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            statuses = asyncio.run(_send(port, requests, args.requests, args.connections))
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            per_request = _count(out) / args.requests
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return per_request, statuses


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000, help="counted requests per server")
    ap.add_argument("--warm", type=int, default=3000, help="requests before the count starts")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind)")
    payloads = bodies(20_000)  # one notify per member: none is capped
    if args.warm + args.requests > len(payloads):
        raise SystemExit(f"--warm plus --requests is at most {len(payloads)}")
    uvicorn_args = ["--log-level", "warning", "--no-access-log"]
    results: dict[str, float] = {}
    with redis_for_bench() as url:
        redis.Redis.from_url(url).flushall()
        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, 0)), check=True, cwd=ROOT)
        env = {
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_RATE_LIMIT_PER_SECOND": "1e9",
        }
        for name in ("bare", "tidings"):
            port = free_port()
            if name == "bare":
                cmd = python("-m", "uvicorn", "bench.bare_app:app", "--port", str(port), *uvicorn_args)
                ready, headers, server_env = f"http://127.0.0.1:{port}/", {}, {}
            else:
                cmd = python("-m", "gateway.cli", "serve", "--port", str(port))
                ready, headers, server_env = (
                    f"http://127.0.0.1:{port}/healthz",
                    {"Authorization": f"Bearer {KEY}"},
                    env,
                )
            reqs = build_requests("127.0.0.1", port, "/v1/notify", payloads, headers)
            per_request, statuses = measure(name, cmd, server_env, port, ready, reqs, args)
            if set(statuses) != {202}:
                raise SystemExit(f"unexpected statuses from {name}: {statuses}")
            results[name] = per_request
            print(
                f"{name:<8} {per_request / 1000:8.1f} k instructions per request   statuses {statuses}",
                flush=True,
            )
    print(
        f"instructions bare/tidings: {results['bare'] / results['tidings']:.2f}x"
        f"   ({args.requests} requests counted after {args.warm}, {args.connections} connections; user space only)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
