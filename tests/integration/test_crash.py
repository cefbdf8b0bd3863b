"""A worker SIGKILLed in the middle of a batch: every accepted notification is delivered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from gateway.state import keys
from tests.conftest import ROOT, TENANT, Stack, send_batch, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def start_worker(stack: Stack) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": stack.redis_url,
        "TIDINGS_SIMULATOR_URL": stack.sim_url,
        # The stack's policy (no quiet hours): the test must not depend on the time of day it runs at.
        "TIDINGS_POLICY_PATH": str(stack.settings.policy_path),
        "TIDINGS_LEASE_SECONDS": "2",
        "TIDINGS_HOUSEKEEPING_INTERVAL_SECONDS": "0.2",
        "TIDINGS_BATCH_SIZE": "50",
        "TIDINGS_SEND_CONCURRENCY": "8",
        "TIDINGS_LOG_LEVEL": "WARNING",
        "TIDINGS_AUDIT_URL": stack.settings.audit_url,
    }
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], cwd=ROOT, env=env)


def test_sigkill_mid_batch_delivers_everything_exactly_once(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(workers=0)
    # Each provider call takes 300 ms, so a batch is almost always in flight when the kill lands.
    stack.faults(channel="sms", error_rate=0.0, latency_ms=300)
    n = 400
    ids = send_batch(stack, n, prefix="137")

    r = redis.Redis.from_url(stack.redis_url)

    def in_flight() -> list[str]:
        with r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(keys.notification(TENANT, i), "status")
            return [i for i, st in zip(ids, pipe.execute(), strict=True) if st == b"sending"]

    for _ in range(5):
        first = start_worker(stack)
        try:
            # Kill once some messages went out and a batch is on its way to the provider.
            wait_for(lambda: len(stack.messages()) >= 60 and in_flight(), timeout=30, interval=0.01)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # The batch seen in flight may have finished in the moment before the kill landed: then
        # this kill was not mid-batch, and the next worker is killed instead.
        if in_flight():
            break
    delivered_before = len(stack.messages())
    assert delivered_before < n, "the worker finished before it could be killed mid-batch"
    assert in_flight(), "nothing was in flight when the worker died"

    second = start_worker(stack)
    try:
        wait_for(lambda: len(stack.messages()) >= n, timeout=60, interval=0.2)

        def statuses() -> Counter[bytes | None]:
            return Counter(r.hget(keys.notification(TENANT, i), "status") for i in ids)

        expected = Counter({b"delivered": n})
        try:
            wait_for(lambda: statuses() == expected, timeout=30, interval=0.3)
        finally:
            assert statuses() == expected
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)

    messages = stack.messages()
    per_reference = Counter(m["reference"] for m in messages)
    assert len(messages) == n
    assert set(per_reference.values()) == {1}
    assert {m["reference"].split(":")[1] for m in messages} == set(ids)
    assert Counter(m["to"] for m in messages).most_common(1)[0][1] == 1
