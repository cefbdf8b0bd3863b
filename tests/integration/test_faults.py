"""Faults under load, each ending in a reconciliation: every accepted notification in exactly one final
state, and the provider given each at most once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.state.redisdb import EmbeddedRedis
from tests.conftest import API_KEY, TENANT, Stack, build_stack, points_expiry, send_batch, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_redis_stopped_and_restarted_under_load_answers_503_then_recovers_and_loses_nothing(
    tmp_path: Path, quiet_off_policy: str
) -> None:
    server = EmbeddedRedis(tmp_path / "var")
    url = server.start()
    stack = build_stack(url, tmp_path, quiet_off_policy)
    api_url = stack.api_url
    restarted: EmbeddedRedis | None = None

    answers: list[tuple[int, str | None, str | None]] = []  # (status, id, Retry-After)
    ids_by_key: dict[str, set[str]] = {}  # Idempotency-Key -> the ids its 202 answers named
    stop = threading.Event()

    def load() -> None:
        # A client as the API asks for: a 503 (or a dropped connection) leaves the outcome unknown
        # (Redis may have run the accept before it went away), so the same request is sent again
        # with the same Idempotency-Key until it is answered.
        i = 0
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
            while not stop.is_set():
                key = f"fault-load-{i}"
                try:
                    r = c.post(
                        "/v1/notify", json=points_expiry(f"1370000{i:04d}"), headers={"Idempotency-Key": key}
                    )
                except httpx.HTTPError:
                    answers.append((0, None, None))
                else:
                    body = r.json()
                    answers.append((r.status_code, body.get("id"), r.headers.get("retry-after")))
                    if r.status_code == 202:
                        ids_by_key.setdefault(key, set()).add(body["id"])
                        i += 1
                time.sleep(0.01)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        wait_for(lambda: sum(1 for s, _, _ in answers if s == 202) >= 50, timeout=20)
        server.stop()  # Redis goes away under load (a clean stop: everything acknowledged is on disk)
        down_from = len(answers)
        wait_for(lambda: sum(1 for s, _, _ in answers[down_from:] if s == 503) >= 20, timeout=20)
        restarted = EmbeddedRedis(tmp_path / "var")
        assert restarted.start() == url
        back_from = len(answers)
        # The API recovers by itself: accepts again with no restart of anything.
        wait_for(lambda: sum(1 for s, _, _ in answers[back_from:] if s == 202) >= 50, timeout=30)
        stop.set()
        loader.join(10)

        statuses = Counter(s for s, _, _ in answers)
        assert set(statuses) <= {202, 503}, statuses  # never a 500, never a dropped connection
        assert all(ra is not None and int(ra) >= 1 for s, _, ra in answers if s == 503)
        # Every request ended accepted once: one id per key, no id under two keys.
        assert all(len(ids) == 1 for ids in ids_by_key.values()), ids_by_key
        accepted = [next(iter(ids)) for ids in ids_by_key.values()]
        assert len(accepted) == len(set(accepted)) >= 100

        # Reconciliation: each accepted notification delivered, and the provider saw each once.
        with stack.client() as c:
            last: Counter[str] = Counter()

            def settled() -> bool:
                last.clear()
                last.update(c.get(f"/v1/notifications/{i}").json()["status"] for i in accepted)
                return set(last) == {"delivered"}

            try:
                wait_for(settled, timeout=60, interval=0.5)
            except AssertionError:
                import redis as _r

                rr = _r.Redis.from_url(url)
                debug = {
                    "rq": rr.llen("rq:queue:tidings-sms"),
                    "ready": rr.llen(f"tid:{{{TENANT}}}:ready:sms"),
                    "lease": rr.zcard(f"tid:{{{TENANT}}}:lease"),
                    "workers": [t.is_alive() for t, _ in stack.workers],
                    "threads": sorted(t.name for t in threading.enumerate()),
                    "keys": len(rr.keys("rq:*")),
                }
                raise AssertionError(f"not all delivered: {dict(last)} {debug}") from None
        received = Counter(m["reference"].rsplit(":", 1)[-1] for m in stack.messages())
        assert set(received) == set(accepted)
        assert max(received.values()) == 1
    finally:
        stop.set()
        stack.stop()
        (restarted or server).stop()


def test_provider_timeouts_and_duplicate_out_of_order_receipts_reconcile(
    stack_factory: Callable[..., Stack],
) -> None:
    # Jobs of 5: about 60 provider calls, so time-outs surely happen (0.85^60 that none does), and
    # rarely five in a row (that opens the circuit and slows everything down).
    stack = stack_factory(send_timeout_seconds=0.5, batch_size=5)
    # 15% of the provider calls hang past the time-out (retried); every receipt comes twice,
    # shuffled, some before the worker has written down the send they confirm.
    stack.faults(
        channel="sms", error_rate=0.15, mode="timeout", duplicate_receipts=True, shuffle_receipts=True
    )
    ids = send_batch(stack, 300, prefix="136")
    with stack.client() as c:
        last: Counter[str] = Counter()

        def settled() -> bool:
            last.clear()
            last.update(c.get(f"/v1/notifications/{i}").json()["status"] for i in ids)
            return set(last) == {"delivered"}

        try:
            wait_for(settled, timeout=90, interval=0.5)
        except AssertionError:
            raise AssertionError(f"not all delivered: {dict(last)}") from None
        timelines = [c.get(f"/v1/notifications/{i}").json()["events"] for i in ids]
    # Each notification: one receipt applied, whatever the provider sent twice.
    assert {sum(1 for e in t if e["type"] == "receipt") for t in timelines} == {1}
    attempts = Counter(sum(1 for e in t if e["type"] == "attempt") for t in timelines)
    assert max(attempts) > 1, (attempts, httpx.get(f"{stack.sim_url}/stats").json())  # time-outs were retried
    received = Counter(m["reference"].rsplit(":", 1)[-1] for m in stack.messages())
    assert set(received) == set(ids) and max(received.values()) == 1
