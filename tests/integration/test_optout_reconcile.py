"""`tidings optouts reconcile`: opt-outs Redis lost come back from the audit log, once, with a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.audit.backends import open_store
from gateway.audit.stream import rows_of
from gateway.recipients import Members, address_key
from gateway.state import keys
from tests.conftest import ROOT, TENANT, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration
BRAND = "星耀商城"
VIA_API, VIA_ALL, VIA_REPLY, VIA_IMPORT, OPTED_IN = (f"1381234000{i}" for i in range(1, 6))
OPTED_OUT = (VIA_API, VIA_ALL, VIA_REPLY, VIA_IMPORT)


def tidings(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command on the stack's Redis and audit log."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "TIDINGS_REDIS_URL": stack.redis_url,
            "TIDINGS_AUDIT_URL": stack.settings.audit_url,
            "TIDINGS_HMAC_KEY": stack.settings.hmac_key,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def reconcile(stack: Stack, *extra: str) -> dict[str, Any]:
    out = tidings(stack, "optouts", "reconcile", "--tenant", TENANT, "--json", *extra)
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def stored(stack: Stack, kind: str) -> int:
    """How many events of a type the audit consumer has stored for the tenant."""
    store = open_store(stack.settings.audit_url)
    try:
        return len(store.search(TENANT, types=[kind], limit=1000))
    finally:
        store.close()


def drop_optouts(rdb: redis.Redis) -> int:
    """What a restore from an old backup does to the tenant's opt-outs: they are gone."""
    found = list(rdb.scan_iter(match=keys.optouts(TENANT, "*"), count=1000))
    return int(rdb.delete(*found)) if found else 0


def test_reconcile_restores_every_opt_out_the_log_holds_once(stack: Stack, rdb: redis.Redis) -> None:
    with stack.client() as c:
        assert (
            c.put(f"/v1/optouts/{VIA_API}", json={"channel": "sms", "reason": "客服来电"}).status_code == 200
        )
        assert c.put(f"/v1/optouts/{VIA_ALL}", json={}).status_code == 200
        csv = f"address,brand,channel\n{VIA_IMPORT},{BRAND},\n".encode()
        assert (
            c.post("/v1/optouts/import", content=csv, headers={"content-type": "text/csv"}).json()["imported"]
            == 1
        )
        assert c.put(f"/v1/optouts/{OPTED_IN}", json={"brand": BRAND}).status_code == 200
        back = c.request(
            "DELETE",
            f"/v1/optouts/{OPTED_IN}",
            params={"brand": BRAND},
            json={"consent_evidence": "会员APP勾选同意"},
        )
        assert back.status_code == 200 and back.json()["opted_out"] is False
    # A TD reply to a message the member was sent (the simulator answers it as that tenant's).
    with stack.client() as c:
        assert c.post("/v1/notify", json=points_expiry(phone=VIA_REPLY)).json()["status"] == "queued"
    wait_for(lambda: stack.messages(f"+86{VIA_REPLY}"), timeout=10)
    answer = httpx.post(
        f"{stack.sim_url}/replies", json={"from": f"+86{VIA_REPLY}", "text": "TD", "brand": BRAND}, timeout=10
    )
    assert answer.json()["gateway"]["action"] == "opted_out"
    with stack.client() as c:
        before = {a: c.get(f"/v1/optouts/{a}").json()["entries"] for a in OPTED_OUT}
    wait_for(lambda: stored(stack, "opt_out") == 5 and stored(stack, "opt_in") == 1, timeout=15)

    assert drop_optouts(rdb) == 4
    # An entry the log knows nothing of (written behind the gateway's back): counted, left alone.
    rdb.hset(keys.optouts(TENANT, "f" * 32), "*|*", b'{"source": "api"}')
    with stack.client() as c:
        assert not any(c.get(f"/v1/optouts/{a}").json()["opted_out"] for a in OPTED_OUT)

    dry = reconcile(stack, "--dry-run")
    assert (dry["dry_run"], dry["restored"], dry["events_read"], dry["members"]) == (True, 4, 6, 5)
    assert (dry["already_present"], dry["only_in_redis"], dry["conflicts"]) == (0, 1, 0)
    with stack.client() as c:
        assert not any(c.get(f"/v1/optouts/{a}").json()["opted_out"] for a in OPTED_OUT)

    first = reconcile(stack)
    assert (first["restored"], first["already_present"], first["only_in_redis"], first["conflicts"]) == (
        4,
        0,
        1,
        0,
    )
    with stack.client() as c:
        for address in OPTED_OUT:
            answer = c.post("/v1/notify", json=points_expiry(phone=address)).json()
            assert answer["status"] == "suppressed" and answer["reasons"][0]["code"] == "opted_out", address
        assert c.post("/v1/notify", json=points_expiry(phone=OPTED_IN)).json()["status"] == "queued"
        after = {a: c.get(f"/v1/optouts/{a}").json()["entries"] for a in OPTED_OUT}
    # The same entries as before, their time the opt-out's own (the API view shows these fields).
    assert after == before
    raw = json.loads(rdb.hget(keys.optouts(TENANT, stack_member(stack, VIA_REPLY)), f"{BRAND}|*") or b"{}")
    assert raw["source"] == "sms_reply" and raw["restored_by"] == "reconcile" and raw["address"] == ""

    second = reconcile(stack)
    assert (second["restored"], second["already_present"], second["conflicts"]) == (0, 4, 0)

    # A backup's stale copy of an opt-out the member took back: reported, never removed.
    with stack.client() as c:
        assert c.put(f"/v1/optouts/{OPTED_IN}", json={"brand": BRAND}).status_code == 200
        stale = c.get(f"/v1/optouts/{OPTED_IN}").json()["entries"]
        c.request(
            "DELETE",
            f"/v1/optouts/{OPTED_IN}",
            params={"brand": BRAND},
            json={"consent_evidence": "再次同意"},
        )
    member = stack_member(stack, OPTED_IN)
    rdb.hset(keys.optouts(TENANT, member), f"{BRAND}|*", json.dumps({**stale[0], "address": ""}))
    text = tidings(stack, "optouts", "reconcile", "--tenant", TENANT)
    assert text.returncode == 0, text.stderr
    assert "restored         0" in text.stdout and "conflicts        1" in text.stdout
    assert f"member {member} scope {BRAND}|*" in text.stdout
    assert rdb.hexists(keys.optouts(TENANT, member), f"{BRAND}|*")

    # No second opt_out event for a restored opt-out; one optouts_reconciled event per run (not the dry one).
    wait_for(lambda: stored(stack, "optouts_reconciled") == 3, timeout=15)
    assert stored(stack, "opt_out") == 6  # the five above and the second PUT of OPTED_IN
    store = open_store(stack.settings.audit_url)
    try:
        runs = [json.loads(e.body) for e in store.search(TENANT, types=["optouts_reconciled"])]
    finally:
        store.close()
    assert [(r["restored"], r["already_present"], r["conflicts"]) for r in runs] == [
        (4, 0, 0),
        (0, 4, 0),
        (0, 4, 1),
    ]
    assert runs[0]["by"] == "cli" and runs[0]["events_read"] == 6


def stack_member(stack: Stack, address: str) -> str:
    """The keyed hash Redis and the audit log name an address by."""
    return Members(stack.settings.hmac_key).of(address_key(address))


def test_reconcile_fails_clearly_without_events_or_stores(stack: Stack, tmp_path: Path) -> None:
    nobody = tidings(stack, "optouts", "reconcile", "--tenant", "nobody")
    assert nobody.returncode == 2 and "no audit events" in nobody.stderr and "Traceback" not in nobody.stderr
    down = tidings(stack, "optouts", "reconcile", "--tenant", TENANT, TIDINGS_REDIS_URL="redis://127.0.0.1:1")
    assert down.returncode == 2 and "Redis does not answer" in down.stderr
    missing = tidings(
        stack, "optouts", "reconcile", "--tenant", TENANT, TIDINGS_AUDIT_URL="sqlite:////nonexistent/a.db"
    )
    assert missing.returncode == 2 and "no audit log" in missing.stderr
    (tmp_path / "not-a-db.sqlite3").write_text("not a database " * 20)
    broken = tidings(
        stack,
        "optouts",
        "reconcile",
        "--tenant",
        TENANT,
        TIDINGS_AUDIT_URL=f"sqlite:///{tmp_path}/not-a-db.sqlite3",
    )
    assert broken.returncode == 2 and "the audit log does not answer" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_reconcile_reads_events_the_audit_consumer_has_not_stored_yet(
    stack_factory: Any, rdb: redis.Redis
) -> None:
    stack = stack_factory(workers=0)  # no worker, so no audit consumer: the events stay in the stream
    open_store(stack.settings.audit_url).close()  # an audit log that has none of them yet
    with stack.client() as c:
        assert c.put(f"/v1/optouts/{VIA_API}", json={"channel": "sms"}).status_code == 200
        assert c.put(f"/v1/optouts/{OPTED_IN}", json={}).status_code == 200
        c.request("DELETE", f"/v1/optouts/{OPTED_IN}", json={"consent_evidence": "会员APP勾选同意"})
    assert stored(stack, "opt_out") == 0 and rdb.xlen(keys.audit(TENANT)) >= 3  # and the key made
    assert drop_optouts(rdb) == 1
    # The consumer stored the first entry and stopped before deleting it: it is in both, read once.
    entry_id, fields = next(e for e in rdb.xrange(keys.audit(TENANT)) if b'"opt_out"' in e[1][b"e"])
    text = {k.decode(): v.decode() for k, v in fields.items()}
    store = open_store(stack.settings.audit_url)
    try:
        assert store.append(list(rows_of(TENANT, entry_id.decode(), text))).stored == 1
    finally:
        store.close()
    assert stored(stack, "opt_out") == 1
    report = reconcile(stack)
    assert (report["events_read"], report["from_stream"], report["members"]) == (3, 3, 2)
    assert (report["restored"], report["conflicts"], report["only_in_redis"]) == (1, 0, 0)
    with stack.client() as c:
        assert c.post("/v1/notify", json=points_expiry(phone=VIA_API)).json()["status"] == "suppressed"
        assert c.get(f"/v1/optouts/{OPTED_IN}").json()["opted_out"] is False
