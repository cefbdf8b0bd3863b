"""A backlog longer than a lease (a campaign bigger than a lease's worth of sends) is not re-enqueued.

The housekeeper re-enqueues notifications whose lease ran out. Before their first attempt that must
mean their job was lost (a batcher that died holding them), not that the queue ahead of them is
long: re-enqueuing a backlog makes duplicate jobs that each claim (and skip) what another job
already holds, which at campaign scale doubled the work per message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest
import redis

from gateway.state import keys
from tests.conftest import TENANT, Stack, send_batch, wait_for

pytestmark = pytest.mark.integration


def test_a_backlog_waits_its_turn_and_only_a_lost_job_is_re_enqueued(
    stack_factory: Callable[..., Stack], rdb: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stack = stack_factory(workers=0, lease_seconds=1.0, housekeeping_interval_seconds=0.2, batch_size=10)
    lost = send_batch(stack, 3, prefix="139")
    # A batcher that took them off the ready list and died before making their job.
    assert rdb.lpop(keys.ready(TENANT, "sms"), 3) is not None
    send_batch(stack, 150)
    # Each provider call takes 150 ms: the 15 jobs of the backlog take ~2.5 s, past the 1 s leases.
    stack.faults(channel="sms", error_rate=0.0, latency_ms=150)
    with caplog.at_level(logging.INFO, logger="tidings.worker"):
        stack.start_worker()
        wait_for(lambda: len(stack.messages()) == 153, timeout=30, interval=0.2)
    stats = httpx.get(f"{stack.sim_url}/stats", timeout=5).json()
    assert stats["messages"] == 153 and stats["duplicates"] == 0
    assert {m["reference"][-30:] for m in stack.messages()} >= {i[-30:] for i in lost}
    requeued = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.match(r"re-enqueuing (\d+) notifications", r.getMessage()))
    ]
    # The three whose job was lost, once; none of the 150 the backlog held.
    assert sum(requeued) == 3, requeued
