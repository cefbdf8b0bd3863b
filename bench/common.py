"""Shared benchmark plumbing: processes, an embedded Redis and a lean HTTP/1.1 load generator."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.state.redisdb import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def redis_for_bench() -> Iterator[str]:
    """TIDINGS_REDIS_URL if set (flushed), else an embedded redis-server."""
    given = os.environ.get("TIDINGS_REDIS_URL")
    if given:
        import redis

        redis.Redis.from_url(given).flushdb()
        yield given
        return
    with tempfile.TemporaryDirectory() as d:
        server = EmbeddedRedis(d)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@contextmanager
def process(
    args: Sequence[str], env: dict[str, str] | None = None, ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process (stopped at exit); wait until ready_url answers."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [*args], cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        if ready_url:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{args} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                    )
                try:
                    httpx.get(ready_url, timeout=0.5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{args} did not come up") from None
                    time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def python(*args: str) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *args]


@dataclass
class LoadResult:
    """What a load run measured."""

    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self, name: str) -> str:
        return (
            f"{name:<28} {self.rate:>9.0f} req/s   p50 {self.pct(50):6.2f} ms   p99 {self.pct(99):6.2f} ms"
            f"   statuses {dict(sorted(self.statuses.items()))}"
        )


async def _worker(
    host: str, port: int, requests: list[bytes], index: list[int], result: LoadResult, stop_at: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            i = index[0]
            index[0] += 1
            payload = requests[i % len(requests)]
            started = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.requests += 1
    finally:
        writer.close()


def build_requests(
    host: str, port: int, path: str, bodies: Sequence[bytes], headers: dict[str, str]
) -> list[bytes]:
    """Raw HTTP/1.1 keep-alive requests."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


def load(host: str, port: int, requests: list[bytes], *, connections: int, seconds: float) -> LoadResult:
    """Closed-loop load from `connections` keep-alive connections for `seconds`."""
    result = LoadResult(0, seconds, {}, [])

    async def run() -> None:
        index = [0]
        stop_at = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(_worker(host, port, requests, index, result, stop_at) for _ in range(connections))
        )
        result.seconds = time.perf_counter() - started

    asyncio.run(run())
    return result


def median(values: Sequence[float]) -> float:
    """Median of a few repeats."""
    return statistics.median(values)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process (all its threads) has used so far (Linux /proc), with
    those of its children it has waited for (Redis's AOF rewrite children are its own CPU too). A
    child still running at a sample is not in it yet; one reaped between two samples counts whole."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(map(int, fields[11:15])) / _TICK


def machine_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of the machine so far (/proc/stat): steal is the time the hypervisor
    gave this machine's CPUs to other guests, which makes a run slower than the code."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in first[:8]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_line(before: tuple[int, int]) -> str:
    """How much of the machine the hypervisor took since ``before`` (a ``machine_ticks()``)."""
    steal, total = machine_ticks()
    share = (steal - before[0]) / max(1, total - before[1])
    return f"CPU steal (the hypervisor's other guests): {100 * share:.1f}% of the machine's time in the run"


def redis_command_usec(url: str) -> dict[str, tuple[int, int]]:
    """Redis INFO commandstats: command -> (calls, CPU microseconds) so far."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


def redis_pid(url: str) -> int:
    """The process id of the Redis server behind url (it must run on this machine)."""
    import redis

    return int(redis.Redis.from_url(url).info("server")["process_id"])
