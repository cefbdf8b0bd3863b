"""Routing through real provider stand-ins: failover, the circuit breaker, the shared rate limit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from gateway.api.servers import ServerThread
from gateway.state import keys
from gateway.state.redisdb import free_port
from tests.conftest import ROOT, Stack, send_batch, statuses, wait_for
from tests.providers import ProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture
def webhooks() -> Iterator[Callable[[], tuple[ProviderServer, int]]]:
    threads: list[ServerThread] = []

    def start() -> tuple[ProviderServer, int]:
        server = ProviderServer("webhook")
        port = free_port()
        threads.append(ServerThread(server, "127.0.0.1", port).start_and_wait())
        return server, port

    yield start
    for t in threads:
        t.stop()


def providers_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "providers.toml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_primary_down_fails_over_opens_its_circuit_and_closes_it_after_recovery(
    tmp_path: Path,
    stack_factory: Callable[..., Stack],
    webhooks: Callable[[], tuple[ProviderServer, int]],
    rdb: redis.Redis,
) -> None:
    primary, p_port = webhooks()
    secondary, s_port = webhooks()
    tag = uuid.uuid4().hex[:6]
    first, second = f"primary{tag}", f"secondary{tag}"
    path = providers_file(
        tmp_path,
        f"""
[providers.{first}]
url = "webhook+http://:test-secret@127.0.0.1:{p_port}/send"
timeout = 1.0
breaker_failures = 3
breaker_cooldown = 3.0
[providers.{second}]
url = "webhook+http://:test-secret@127.0.0.1:{s_port}/send"
timeout = 1.0
[[routes.sms]]
provider = "{first}"
priority = 0
[[routes.sms]]
provider = "{second}"
priority = 1
""",
    )
    primary.fault_status = 500
    stack = stack_factory(providers_path=path)
    ids = send_batch(stack, 10)
    wait_for(lambda: statuses(stack, ids) == {"sent": 10}, timeout=20, interval=0.3)
    # The first batch met the primary's errors and went out through the secondary; the circuit opened.
    assert len(primary.received) == 10 and primary.accepted() == []
    assert rdb.hget(keys.provider_breaker(first), "state") == b"open"
    # While it is open the primary is not even tried.
    ids += send_batch(stack, 20, prefix="136")
    wait_for(lambda: statuses(stack, ids) == {"sent": 30}, timeout=20, interval=0.3)
    assert len(primary.received) == 10
    refs = sorted(r.fields["reference"].split(":")[1] for r in secondary.accepted())
    assert refs == sorted(ids)  # every message exactly once
    with stack.client() as c:
        attempts = c.get(f"/v1/notifications/{ids[0]}").json()["attempts"]
    assert attempts[-1]["provider"] == second

    # The primary recovers: after the cool-down a probe goes through and the circuit closes.
    primary.fault_status = None
    rounds = iter(range(100))

    def traffic_closes_it() -> bool:
        # Probes ride on traffic: keep sending a little until one has gone through the primary.
        prefix = ("186", "187", "188", "158", "159", "135", "182", "183", "184", "185")[next(rounds) % 10]
        later = send_batch(stack, 2, prefix=prefix)
        wait_for(lambda: statuses(stack, later) == {"sent": 2}, timeout=10, interval=0.2)
        return bool(rdb.hget(keys.provider_breaker(first), "state") == b"closed")

    wait_for(traffic_closes_it, timeout=20, interval=0.5)
    assert primary.accepted()  # the probe
    more = send_batch(stack, 10, prefix="137")
    wait_for(lambda: statuses(stack, more) == {"sent": 10}, timeout=20, interval=0.3)
    back = {r.fields["reference"].split(":")[1] for r in primary.accepted()}
    assert set(more) <= back


@pytest.fixture
def webhook_process() -> Iterator[str]:
    """A webhook stand-in in its own process: its arrival stamps do not share a GIL with the gateway."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.providers", "webhook", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/__received"), timeout=15, interval=0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_a_provider_limited_to_50_per_second_never_gets_more_from_two_workers(
    tmp_path: Path, stack_factory: Callable[..., Stack], webhook_process: str
) -> None:
    name = f"limited{uuid.uuid4().hex[:6]}"
    port = urlsplit(webhook_process).port
    path = providers_file(
        tmp_path,
        f"""
[providers.{name}]
url = "webhook+http://:test-secret@127.0.0.1:{port}/send"
rate_per_second = 50
[[routes.sms]]
provider = "{name}"
""",
    )
    # The production lease (30 s): a batch of 100 waits at most ~4.5 s for its slots, well inside it.
    stack = stack_factory(workers=2, providers_path=path, lease_seconds=30.0)
    ids = send_batch(stack, 1000) + send_batch(stack, 1000, prefix="139")

    def received() -> list[dict[str, Any]]:
        return [r for r in httpx.get(f"{webhook_process}/__received", timeout=5).json() if r["ok"]]

    wait_for(lambda: len(received()) >= 2000, timeout=120, interval=1.0)
    rows = received()
    assert len(rows) == 2000
    assert sorted(r["reference"].split(":")[1] for r in rows) == sorted(ids)  # each exactly once
    times = sorted(r["at"] for r in rows)
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    assert max(per_second.values()) <= 50, per_second
    # Nor in any sliding one-second window, by the receiving server's clock.
    j, busiest = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    assert busiest <= 50
    # The limit was used, not only respected: the two workers together kept close to it.
    assert times[-1] - times[0] < 2000 / 50 * 1.5
