"""A million-event CSV export streams through the API with flat memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.audit.backends import open_store
from gateway.audit.stream import AuditRow
from gateway.state.redisdb import free_port
from tests.auditdb import Backend, make_backend
from tests.conftest import API_KEY, ROOT, TENANT, make_key, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 1_000_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fill(url: str, n: int) -> None:
    store = open_store(url)
    start = int(time.time() * 1000) - n
    try:
        for base in range(0, n, 10_000):
            store.append(
                [
                    AuditRow(
                        TENANT,
                        f"{start + i}-0.0",
                        start + i,
                        "attempt",
                        f"ntf_{i:026d}",
                        "sms",
                        f"m{i % 5000}",
                        "+86138****5678",
                        f'{{"attempt":1,"outcome":"sent","provider":"simulator","provider_message_id":"sim-{i}"}}',
                    )
                    for i in range(base, min(base + 10_000, n))
                ]
            )
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


def test_a_million_event_export_streams_with_flat_memory(
    redis_url: str, rdb: redis.Redis, backend: Backend
) -> None:
    audit_url = backend.url
    fill(audit_url, N)
    make_key(redis_url, API_KEY, TENANT, ["audit:read"])
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": redis_url,
        "TIDINGS_AUDIT_URL": audit_url,
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)], cwd=ROOT, env=env
    )
    samples: list[tuple[int, int]] = []  # (rows received so far, server RSS KiB)
    rows = 0
    try:
        wait_for(lambda: _up(port), timeout=20)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((rows, rss_kib(proc.pid)))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/v1/audit/export", headers=headers, timeout=60
        ) as r:
            assert r.status_code == 200
            first = True
            for line in r.iter_lines():
                if first:
                    assert line.startswith("seq,id,at,type")
                    first = False
                    continue
                rows += 1
        stop.set()
        sampler.join(5)
    finally:
        proc.terminate()
        proc.wait(10)
    assert rows == N
    # Memory after the first tenth of the export against the most it ever used: a server that held
    # the export would grow by hundreds of MB (a million rows of CSV is ~250 MB).
    warm = max(kib for done, kib in samples if done <= N // 10)
    peak = max(kib for _, kib in samples)
    print(f"server RSS: {warm / 1024:.1f} MiB after 10% of the rows, peak {peak / 1024:.1f} MiB")
    assert peak - warm < 24 * 1024, (warm, peak)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
