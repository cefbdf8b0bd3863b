"""rq on a Redis of its own (TIDINGS_QUEUE_REDIS_URL): the queues, scheduled retries and rq's worker
registry live there, the state (records, ready lists, leases, heartbeats) stays on TIDINGS_REDIS_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.state.redisdb import EmbeddedRedis
from tests.conftest import ROOT, Stack, send_batch, statuses, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def queue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """rq's own Redis. Ask for it before ``stack_factory``: it must outlive the stack's workers (a
    worker whose queue Redis went away sleeps in rq's reconnect loop and keeps its batcher running)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("rq"))
    url = server.start()
    yield url
    server.stop()


def _rq_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="rq:*", count=1000))


def test_jobs_and_retries_go_through_the_queue_redis(
    queue_redis: str, stack_factory: Callable[..., Stack], rdb: redis.Redis
) -> None:
    stack = stack_factory(queue_redis_url=queue_redis)
    queue = redis.Redis.from_url(queue_redis)
    try:
        # Retries are rq scheduled jobs: they must be taken from the queue Redis too.
        stack.faults(channel="sms", error_rate=0.3, mode="http_500")
        ids = send_batch(stack, 40)
        wait_for(lambda: statuses(stack, ids) == {"delivered": 40}, timeout=60, interval=0.3)
        assert len({m["reference"] for m in stack.messages()}) == 40
        # Every rq key is on the queue Redis, none on the state's; the state's keys stay put.
        assert not _rq_keys(rdb)
        assert queue.exists("rq:workers")
        assert not list(queue.scan_iter(match="tid:*", count=1000))
        assert rdb.zcard("tid:workers") >= 1
        metrics = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
        assert 'tidings_queue_depth{queue="tidings-sms"}' in metrics
    finally:
        queue.close()


def test_dlq_replay_enqueues_on_the_queue_redis(
    queue_redis: str, stack_factory: Callable[..., Stack], rdb: redis.Redis
) -> None:
    stack = stack_factory(queue_redis_url=queue_redis, max_attempts=2)
    stack.faults(channel="sms", error_rate=1.0, mode="http_500")
    ids = send_batch(stack, 5)
    wait_for(lambda: statuses(stack, ids) == {"failed": 5}, timeout=60, interval=0.3)
    stack.clear_faults()
    env = {**os.environ, "TIDINGS_REDIS_URL": stack.redis_url, "TIDINGS_QUEUE_REDIS_URL": queue_redis}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dlq", "replay"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "replayed 5" in done.stdout
    wait_for(lambda: statuses(stack, ids) == {"delivered": 5}, timeout=30, interval=0.3)
    assert not _rq_keys(rdb)


def test_a_cluster_state_needs_its_own_queue_redis(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": "redis+cluster://127.0.0.1:1",
        "XDG_STATE_HOME": str(tmp_path),
    }
    env.pop("TIDINGS_QUEUE_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TIDINGS_QUEUE_REDIS_URL is required" in done.stderr
