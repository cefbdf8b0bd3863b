"""Transient provider failures are retried with backoff; exhausted ones go to the dead-letter list."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from gateway import metrics
from tests.conftest import ROOT, Stack, send_batch, statuses, wait_for

pytestmark = pytest.mark.integration


def retry_count() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "tidings_sends_total", {"channel": "sms", "provider": "simulator", "outcome": "retry"}
        )
        or 0.0
    )


def test_thirty_percent_http_500_all_delivered_through_retries(stack: Stack) -> None:
    stack.faults(channel="sms", error_rate=0.3, mode="http_500")
    before = retry_count()
    ids = send_batch(stack, 60)
    wait_for(lambda: statuses(stack, ids) == {"delivered": 60}, timeout=60, interval=0.3)
    assert len(stack.messages()) == 60
    assert len({m["reference"] for m in stack.messages()}) == 60
    assert retry_count() - before > 5  # about 0.3 * 60 first-attempt failures, more on later attempts
    # A delivered notification shows no error of an earlier failed attempt; the attempts keep theirs.
    with stack.client() as c:
        views = [c.get(f"/v1/notifications/{i}").json() for i in ids]
    retried = [v for v in views if len(v["attempts"]) > 1]
    assert retried
    for v in retried:
        assert v["status"] == "delivered" and v["error_code"] is None, v
        assert v["attempts"][0]["outcome"] == "retry" and v["attempts"][0]["error_code"]


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIDINGS_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_total_failure_dead_letters_then_replay_delivers(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(max_attempts=3)
    stack.faults(channel="sms", error_rate=1.0, mode="http_500")
    ids = send_batch(stack, 12)
    wait_for(lambda: statuses(stack, ids) == {"failed": 12}, timeout=30, interval=0.3)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{ids[0]}").json()
    assert view["error_code"] == "retries_exhausted"
    assert [a["outcome"] for a in view["attempts"]] == ["retry", "retry", "retry"]
    assert stack.messages() == []

    listed = run_cli(stack, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == sorted(ids)
    assert "+86138****" in listed.stdout and "13800000000" not in listed.stdout
    assert "12 dead letter(s)" in listed.stderr

    stack.clear_faults()
    replay = run_cli(stack, "dlq", "replay")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 12" in replay.stdout
    wait_for(lambda: statuses(stack, ids) == {"delivered": 12}, timeout=15, interval=0.3)
    assert len(stack.messages()) == 12
    after = run_cli(stack, "dlq", "list")
    assert after.stdout.strip() == "" and "0 dead letter(s)" in after.stderr


def test_permanent_rejection_fails_without_retry(stack: Stack) -> None:
    stack.faults(channel="sms", error_rate=1.0, mode="reject_number")
    ids = send_batch(stack, 3)
    wait_for(lambda: statuses(stack, ids) == {"failed": 3}, timeout=10, interval=0.2)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{ids[0]}").json()
    assert view["error_code"] == "provider_rejected"
    assert len(view["attempts"]) == 1
    assert view["reasons"][0]["provider_code"] == "invalid_number"
    assert run_cli(stack, "dlq", "list").stdout.strip() == ""
