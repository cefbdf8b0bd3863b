"""The audit log end to end: a member's scripted day as an auditor sees it, on both backends."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.audit.backends import open_store
from gateway.audit.stream import parse_anchor
from gateway.state import keys
from tests.auditdb import Backend, make_backend
from tests.conftest import API_KEY, ROOT, TENANT, Stack, make_key, points_expiry, send_batch, wait_for

pytestmark = pytest.mark.integration

PHONE = "13912340001"
E164 = "+8613912340001"
MASKED = "+86139****0001"
BRAND = "星耀商城"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


def status_of(c: httpx.Client, ntf_id: str) -> str:
    return str(c.get(f"/v1/notifications/{ntf_id}").json()["status"])


def notify(c: httpx.Client, **extra: Any) -> httpx.Response:
    return c.post("/v1/notify", json=points_expiry(PHONE, **extra))


def delivered(c: httpx.Client, ntf_id: str) -> None:
    wait_for(lambda: status_of(c, ntf_id) == "delivered", timeout=15)


def search(c: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page of a search, following next_cursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = c.get("/v1/audit/events", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def scripted_day(stack: Stack) -> dict[str, str]:
    """Sends, a block, a deferral, a retry, receipts, a TD reply, an opt-back-in; the ids by name."""
    ids: dict[str, str] = {}
    with stack.client() as c:
        r = notify(c)
        assert r.status_code == 202, r.text
        ids["first"] = r.json()["id"]
        delivered(c, ids["first"])

        blocked = c.post(
            "/v1/notify",
            json={
                "to": {"phone": PHONE},
                "channel": "sms",
                "brand": BRAND,
                "content": {"text": "【星耀商城】全网最低价,积分当钱花!拒收请回复R"},
            },
        )
        assert blocked.status_code == 422 and blocked.json()["code"] == "banned_wording", blocked.text

        send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
        r = notify(c, send_at=send_at)
        assert r.json()["status"] == "scheduled", r.text
        ids["deferred"] = r.json()["id"]
        delivered(c, ids["deferred"])

        stack.faults(channel="sms", error_rate=1.0, mode="http_500")
        r = notify(c)
        ids["retried"] = r.json()["id"]
        wait_for(
            lambda: any(
                a["outcome"] == "retry"
                for a in c.get(f"/v1/notifications/{ids['retried']}").json()["attempts"]
            )
        )
        stack.clear_faults()
        delivered(c, ids["retried"])

        reply = httpx.post(
            f"{stack.sim_url}/replies", json={"from": E164, "text": "TD", "brand": BRAND}, timeout=10
        )
        assert reply.status_code < 300, reply.text
        wait_for(lambda: c.get(f"/v1/optouts/{PHONE}").json()["opted_out"])

        r = notify(c)
        assert r.status_code == 200 and r.json()["status"] == "suppressed", r.text
        ids["suppressed"] = r.json()["id"]

        entry = c.get(f"/v1/optouts/{PHONE}").json()["entries"][0]
        back = c.request(
            "DELETE",
            f"/v1/optouts/{PHONE}",
            params={k: v for k, v in (("brand", entry["brand"]), ("channel", entry["channel"])) if v},
            json={"consent_evidence": f"会员在门店签字同意重新接收, 登记电话 {PHONE}"},
        )
        assert back.status_code == 200, back.text

        r = notify(c)
        assert r.status_code == 202, r.text
        ids["last"] = r.json()["id"]
        delivered(c, ids["last"])
    return ids


def test_an_auditor_sees_a_members_whole_day_in_order_and_no_plain_number_is_stored(
    stack_factory: Callable[..., Stack], backend: Backend
) -> None:
    stack = stack_factory(audit_url=backend.url)
    ids = scripted_day(stack)
    with stack.client() as c:
        # The consumer in the worker moves events in the background; the day ends with the receipt.
        def day() -> list[dict[str, Any]]:
            return search(c, address=PHONE, limit=7)

        events = wait_for(
            lambda: (
                (found := day())
                and any(e["type"] == "receipt" and e["notification_id"] == ids["last"] for e in found)
                and found
            ),
            timeout=15,
        )
        # Any written form of the number finds the same events.
        assert search(c, address="+86 139-1234-0001") == events
        verify = c.get("/v1/audit/verify").json()
        export = c.get("/v1/audit/export")

    assert all(e["address"] == MASKED for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    def types(name: str) -> list[str]:
        return [e["type"] for e in events if e["notification_id"] == ids[name]]

    assert types("first") == ["accepted", "compliance", "attempt", "sent", "receipt"]
    assert types("deferred") == ["accepted", "compliance", "scheduled", "attempt", "sent", "receipt"]
    retried = [e for e in events if e["notification_id"] == ids["retried"]]
    assert [e["type"] for e in retried][:2] == ["accepted", "compliance"]
    # The TD reply answered this message (the simulator ties a reply to the last one delivered):
    # its timeline ends with the member unsubscribing, after the tenant's opt-out event.
    assert [e["type"] for e in retried][-4:] == ["attempt", "sent", "receipt", "unsubscribed"]
    assert retried[-1]["seq"] > next(e["seq"] for e in events if e["type"] == "opt_out")
    outcomes = [e["data"]["outcome"] for e in retried if e["type"] == "attempt"]
    assert outcomes[-1] == "sent" and set(outcomes[:-1]) == {"retry"} and len(outcomes) >= 2
    assert all(
        e["data"]["error_code"] for e in retried if e["type"] == "attempt" and e["data"]["outcome"] == "retry"
    )
    assert types("suppressed") == ["accepted", "compliance", "compliance", "suppressed"]
    suppressed = [e for e in events if e["notification_id"] == ids["suppressed"]]
    assert suppressed[2]["data"] == {
        "stage": "accept",
        "rule": "opt_out",
        "outcome": "suppress",
        "reason": "opted_out",
    }
    assert suppressed[3]["data"]["reason"] == "opted_out"
    assert types("last") == ["accepted", "compliance", "attempt", "sent", "receipt"]
    receipts = [e for e in events if e["type"] == "receipt"]
    assert len(receipts) == 4 and {e["data"]["status"] for e in receipts} == {"delivered"}

    # The day's story in order: send, block, deferral, retry, TD, suppressed, back in, send.
    def first_index(pred: Callable[[dict[str, Any]], bool]) -> int:
        return next(i for i, e in enumerate(events) if pred(e))

    order = [
        first_index(lambda e: e["notification_id"] == ids["first"]),
        first_index(lambda e: e["type"] == "rejected"),
        first_index(lambda e: e["notification_id"] == ids["deferred"]),
        first_index(lambda e: e["notification_id"] == ids["retried"]),
        first_index(lambda e: e["type"] == "opt_out"),
        first_index(lambda e: e["notification_id"] == ids["suppressed"]),
        first_index(lambda e: e["type"] == "opt_in"),
        first_index(lambda e: e["notification_id"] == ids["last"]),
    ]
    assert order == sorted(order)
    rejected = next(e for e in events if e["type"] == "rejected")
    assert rejected["notification_id"] is None
    assert rejected["data"]["reasons"][0]["code"] == "banned_wording"
    assert {t["term"] for t in rejected["data"]["reasons"][0]["terms"]} == {"全网最低", "最低价"}
    opt_out = next(e for e in events if e["type"] == "opt_out")
    assert opt_out["data"]["source"] == "sms_reply" and opt_out["data"]["reason"] == "TD"
    opt_in = next(e for e in events if e["type"] == "opt_in")
    # Free text keeps its meaning, the number in it is masked.
    assert opt_in["data"]["consent_evidence"] == "会员在门店签字同意重新接收, 登记电话 139****0001"

    assert verify["ok"] is True and verify["checked"] >= len(events)
    assert (
        export.status_code == 200 and export.headers["content-type"] == "text/csv; charset=utf-8"
    )  # one charset
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [int(r["seq"]) for r in rows if r["address"] == MASKED] == seqs

    # Nothing in the audit store's files or tables holds the plain number, in any form.
    dump = backend.dump()
    assert len(dump) > 1000
    for form in (PHONE, E164, "139-1234-0001", "139 1234 0001"):
        assert form.encode() not in dump, form
    # And the stream it came through is empty once stored.
    r = redis.Redis.from_url(stack.redis_url)
    assert r.xlen(keys.audit(TENANT)) == 0


def test_audit_api_needs_the_scope_and_answers_bad_input_with_codes(stack: Stack) -> None:
    make_key(stack.redis_url, "notify-only-key-123456", TENANT, ["notify"])
    with stack.client("notify-only-key-123456") as c:
        assert c.get("/v1/audit/events").status_code == 403
        assert c.get("/v1/audit/verify").status_code == 403
        assert c.get("/v1/audit/export").status_code == 403
    assert httpx.get(f"{stack.api_url}/v1/audit/events").status_code == 401
    with stack.client(API_KEY) as c:
        cases = {
            "from=yesterday": "validation_error",
            "from=2026-11-25T10:00:00": "validation_error",
            "type=sent,teleported": "validation_error",
            "cursor=bm9wZQ": "invalid_cursor",
            "cursor=!!!": "invalid_cursor",
            "limit=0": "validation_error",
            "limit=1001": "validation_error",
            "address=12345": "invalid_recipient",
            "address=not-an-email@": "invalid_recipient",
        }
        for query, code in cases.items():
            r = c.get(f"/v1/audit/events?{query}")
            assert r.status_code == 422 and r.json()["code"] == code, (query, r.text)
        assert c.get("/v1/audit/verify?to=soon").json()["code"] == "validation_error"
        ok = c.get("/v1/audit/events", params={"from": "2026-01-01T00:00:00+08:00", "type": "sent"})
        assert ok.status_code == 200 and ok.json() == {"events": [], "next_cursor": None}


def consume(stack: Stack, backend: Backend, name: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": stack.redis_url,
        "TIDINGS_AUDIT_URL": backend.url,
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "audit",
        "consume",
        "--name",
        name,
        "--batch",
        "300",
        "--lease",
        "1",
    ]
    return subprocess.Popen([*cmd, *extra], cwd=ROOT, env=env)


@pytest.mark.slow
def test_killing_the_consumer_mid_batch_loses_and_duplicates_nothing(
    stack_factory: Callable[..., Stack], backend: Backend
) -> None:
    stack = stack_factory(workers=0, audit_url=backend.url)  # no worker: no consumer but ours
    ids: list[str] = []
    for prefix in ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152"):
        ids += send_batch(stack, 1000, prefix=prefix)
    r = redis.Redis.from_url(stack.redis_url)
    # Every event in the stream: accepted + compliance per notification, and the test key's creation.
    entries = r.xrange(keys.audit(TENANT))
    expected = sum(len(fields[b"e"].split(b"\n")) for _, fields in entries)
    assert expected == 2 * len(ids) + 1
    store = open_store(backend.url)
    kills = 0
    try:
        for round_ in range(8):
            before = store.count()
            if before >= expected:
                break
            # The same name picks up its own unacknowledged entries; a new one claims them as orphans.
            proc = consume(stack, backend, f"auditor-{round_ % 3}")
            wait_for(
                lambda before=before, proc=proc: store.count() > before or proc.poll() is not None,
                timeout=30,
                interval=0.005,
            )
            time.sleep(random.uniform(0.0, 0.05))
            assert proc.poll() is None, "the consumer stopped by itself"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
        assert kills >= 3, "the consumer finished before it could be killed often enough"
        assert store.count() < expected
        last = consume(stack, backend, "auditor-final", "--drain")
        assert last.wait(120) == 0
        assert store.count() == expected
        per_ntf = backend.raw(
            "SELECT notification_id, COUNT(*), MIN(type), MAX(type) FROM audit_events"
            " WHERE notification_id <> '' GROUP BY notification_id"
        )
        assert len(per_ntf) == len(ids)
        assert {(n, t1, t2) for _, n, t1, t2 in per_ntf} == {(2, "accepted", "compliance")}
        assert {row[0] for row in per_ntf} == set(ids)
        assert len(backend.raw("SELECT DISTINCT event_id FROM audit_events")) == expected
        anchor = parse_anchor(r.get(keys.audit_head(TENANT)))
        assert store.verify(TENANT, anchor=anchor) == {"ok": True, "checked": expected}
        assert r.xlen(keys.audit(TENANT)) == 0
        assert r.xpending(keys.audit(TENANT), "audit")["pending"] == 0
    finally:
        store.close()


def test_the_cli_searches_exports_and_verifies_and_exits_1_on_a_broken_chain(
    stack: Stack, tmp_path: Path
) -> None:
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry(PHONE))
        ntf_id = r.json()["id"]
        delivered(c, ntf_id)
        wait_for(lambda: any(e["type"] == "receipt" for e in search(c, address=PHONE)), timeout=15)
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": stack.redis_url,
        "TIDINGS_AUDIT_URL": stack.settings.audit_url,
        "TIDINGS_HMAC_KEY": stack.settings.hmac_key,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "audit", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    found = cli("search", "--tenant", TENANT, "--address", "+86 139 1234 0001")
    assert found.returncode == 0, found.stderr
    lines = [json.loads(x) for x in found.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["accepted", "compliance", "attempt", "sent", "receipt"]
    assert {e["address"] for e in lines} == {MASKED} and PHONE not in found.stdout
    out = tmp_path / "audit.csv"
    exported = cli("export", "--tenant", TENANT, "--output", str(out))
    assert exported.returncode == 0 and "event(s) exported" in exported.stderr
    assert out.read_text(encoding="utf-8").count(ntf_id) == 5
    ok = cli("verify")
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[0])["ok"] is True
    bad_time = cli("search", "--tenant", TENANT, "--from", "yesterday")
    assert bad_time.returncode == 2 and "validation_error" in bad_time.stderr

    path = stack.settings.audit_url.removeprefix("sqlite:///")
    backend = Backend("sqlite", stack.settings.audit_url, path=Path(path))
    backend.disable_guards()
    backend.raw(
        "UPDATE audit_events SET body = replace(body, 'delivered', 'undelivered') WHERE type = 'receipt'"
    )
    broken = cli("verify", "--tenant", TENANT)
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False and report["broken"]["reason"] == "altered"
    receipt = next(e for e in lines if e["type"] == "receipt")
    assert report["broken"]["seq"] == receipt["seq"]


def test_consume_drain_on_a_redis_without_tenants_ends_at_once(tmp_path: Path) -> None:
    """A fresh install has no tenant and so no audit stream: ``--drain`` has nothing to wait for."""
    from gateway.state.redisdb import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        env = {**os.environ, "TIDINGS_REDIS_URL": url, "TIDINGS_AUDIT_URL": f"sqlite:///{tmp_path}/audit.db"}
        done = subprocess.run(  # before the fix it waited out its hour: TimeoutExpired here
            [sys.executable, "-m", "gateway.cli", "audit", "consume", "--drain"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "0 entries moved" in done.stderr
