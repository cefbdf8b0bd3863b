"""Console pages over a large audit log: milliseconds per page, beside the sign-in page, same run.

Seeds an SQLite audit store with ``--events`` events (a realistic mix of types; one member in fifty
thousand repeats; a few rare types), runs ``tidings serve`` on it, signs in as a browser does and
times each kind of page ``--rounds`` times: the newest page, a page half-way down (``before=``),
one member's events, a rare type, a time window in the middle, and the notification list (accepted
events plus each row's Redis record). The baseline is the sign-in page: the same process, session
and template machinery, no store.

    python -m bench.console [--events 1000000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.common import process, python, redis_for_bench
from gateway.api.auth import store_key
from gateway.api.console.render import when
from gateway.audit.backends import open_store
from gateway.audit.stream import AuditRow
from gateway.state.redisdb import async_client, free_port

TENANT = "bench"
KEY = "bench-console-key-0123456789"
# Types in the proportions a day of sends gives (every message: accepted, compliance, attempt, sent,
# receipt), with a rare one (replies) every 1,000 events.
CYCLE = ["accepted", "compliance", "attempt", "sent", "receipt"]


def seed(url: str, n: int) -> tuple[int, str]:
    """n events into the store; (the time of the middle event in ms, a member with several events)."""
    store = open_store(url)
    start = int(time.time() * 1000) - n  # one event a millisecond, ending now
    batch: list[AuditRow] = []
    for i in range(n):
        kind = "reply" if i % 1000 == 999 else CYCLE[i % 5]
        msg = i // 5
        body = f'{{"at":"2026-12-01T10:00:00.000Z","type":"{kind}"}}'
        batch.append(
            AuditRow(
                TENANT,
                f"{start + i}-{i}.0",
                start + i,
                kind,
                f"ntf_{msg:026d}",
                "sms",
                f"{msg % 50_000:032x}",
                "+86138****5678",
                body,
            )
        )
        if len(batch) == 10_000:
            store.append(batch)
            batch.clear()
    if batch:
        store.append(batch)
    store.close()
    return start + n // 2, f"{7:032x}"


def sign_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    done = client.post("/console/login", data={"csrf": token.group(1), "api_key": KEY, "next": "/console/"})
    assert done.status_code in (200, 303), done.status_code
    return client


def timed(client: httpx.Client, path: str, rounds: int) -> tuple[list[float], int]:
    """Milliseconds of each request, and the table rows the page showed."""
    times = []
    shown = 0
    for _ in range(rounds):
        t = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        shown = answer.text.count("<tr>") - answer.text.count("<thead><tr>")
    return times, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_for_bench() as redis_url:
        audit_url = f"sqlite:///{Path(tmp) / 'audit.sqlite3'}"
        t = time.perf_counter()
        middle, member = seed(audit_url, args.events)
        print(f"seeded {args.events:,} events in {time.perf_counter() - t:.1f} s")

        async def key() -> None:
            client = async_client(redis_url)
            await store_key(client, KEY, TENANT, ["audit:read", "notify"])
            await client.aclose()

        asyncio.run(key())
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"TIDINGS_REDIS_URL": redis_url, "TIDINGS_AUDIT_URL": audit_url}
        with process(python("-m", "gateway.cli", "serve", "--port", str(port)), env, f"{base}/healthz"):
            client = sign_in(base)
            pages = {
                "sign-in page (baseline)": "/console/login",
                "audit, newest page": "/console/audit",
                "audit, half-way down": f"/console/audit?before={args.events // 2}",
                "audit, one member": f"/console/audit?member={member}",
                "audit, a rare type": "/console/audit?type_=reply",
                "audit, a type never seen": "/console/audit?type_=template_changed",
                "audit, 10 minutes mid-log": "/console/audit?"
                + urlencode({"from_": when(middle), "to": when(middle + 600_000)}),
                "notifications, newest": "/console/notifications",
            }
            timed(client, "/console/audit", 3)  # warm the page cache and the templates
            print(f"{'page':30} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            for name, path in pages.items():
                times, shown = timed(client, path, args.rounds)
                ms = sorted(times)
                p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
                print(f"{name:30} {shown:5} {statistics.median(ms):8.1f} {p95:8.1f} {ms[-1]:8.1f}")


if __name__ == "__main__":
    main()
