"""Webhook deliveries per second to a local endpoint, beside a bare httpx POST loop, same run.

The bare side posts the same number of bodies of the same size, with the same concurrency, from
one asyncio loop to the same receiver. Tidings' side is the whole path: opt-outs written with their
audit events, the audit consumer storing them and handing them to the outbox, the dispatcher
fanning them out to lanes and delivering each signed, one `tidings worker` process.

    python -m bench.webhooks [--events 5000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from typing import Any

import httpx

from bench.common import process, python, redis_for_bench
from gateway.api.auth import store_key
from gateway.api.servers import ServerThread
from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.state.redisdb import async_client, free_port
from gateway.webhooks.endpoints import Endpoints

TENANT = "bench"
HMAC_KEY = "bench-hmac-key-0123"


class Counting:
    """A receiver that answers 200 at once and notes when each delivery arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "GET":  # the bench reading the arrival times
            body = json.dumps(self.times).encode()
        else:
            with self.lock:
                self.times.append(time.time())
            body = b"ok"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def times_of(url: str) -> list[float]:
    """The arrival times the receiver process noted."""
    return [float(t) for t in httpx.get(url, timeout=30).json()]


def rate_of_last(times: list[float], n: int) -> float:
    last = times[-n:]
    return (len(last) - 1) / (last[-1] - last[0])


async def bare(url: str, n: int, concurrency: int, body: bytes) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        queue = list(range(n))

        async def one() -> None:
            while queue:
                queue.pop()
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(concurrency)))


async def prepare(redis_url: str, receiver: str, n: int) -> None:
    client = async_client(redis_url)
    try:
        await store_key(client, "bench-key-0123456789", TENANT, ["admin"])  # makes the tenant known
        await Endpoints(client, allow_private=True).create(TENANT, url=receiver, events_=["optout.created"])
        optouts = OptOuts(client, Members(HMAC_KEY))
        for start in range(0, n, 1000):
            rows = [(f"+86137{i:08d}", None, None) for i in range(start, min(n, start + 1000))]
            await optouts.add_many(TENANT, rows, source="import")  # type: ignore[arg-type]
    finally:
        await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the receiver process, on this port
    args = ap.parse_args()
    if args.serve:
        ServerThread(Counting(), "127.0.0.1", args.serve).run()
        return
    n = args.events
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    sample = (
        b'{"id":"evt_1764554400120_0_0","type":"optout.created","created_at":"2026-12-01T10:00:00+08:00",'
    )
    sample += (
        b'"tenant":"bench","data":{"address":"+86137****0001","brand":null,"channel":null,"source":"import"}}'
    )
    # The receiver is a process of its own, so neither side shares a core's interpreter with it.
    with process(python("-m", "bench.webhooks", "--serve", str(port)), ready_url=url):
        asyncio.run(bare(url, n, args.concurrency, sample))
        bare_rate = rate_of_last(times_of(url), n)
        with redis_for_bench() as redis_url:
            asyncio.run(prepare(redis_url, url, n))
            before = len(times_of(url))
            env = {
                "TIDINGS_REDIS_URL": redis_url,
                "TIDINGS_HMAC_KEY": HMAC_KEY,
                "TIDINGS_AUDIT_URL": f"sqlite:///{tempfile.mkdtemp()}/audit.sqlite3",
                "TIDINGS_WEBHOOK_ALLOW_PRIVATE": "true",
                "TIDINGS_WEBHOOK_CONCURRENCY": str(args.concurrency),
                "TIDINGS_WEBHOOK_LANES": str(args.concurrency),
                "TIDINGS_LOG_LEVEL": "WARNING",
            }
            started = time.monotonic()
            with process(python("-m", "gateway.cli", "worker"), env={**os.environ, **env}):
                while (got := len(times_of(url)) - before) < n:
                    if time.monotonic() - started > 600:
                        raise SystemExit(f"only {got} of {n} deliveries in 10 minutes")
                    time.sleep(0.5)
            rate = rate_of_last(times_of(url), n)
    print(f"webhooks: {n} events to one local endpoint (its own process), concurrency {args.concurrency}")
    print(f"bare httpx POST loop            {bare_rate:>8.0f} posts/s")
    print(f"tidings audit -> outbox -> POST {rate:>8.0f} deliveries/s   (signed, one worker process)")
    print(f"ratio deliveries/bare: {rate / bare_rate:.2f}x")


if __name__ == "__main__":
    main()
