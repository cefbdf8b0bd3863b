"""The console over plain HTTP, as a careless or hostile caller uses it: redirects, tokens, sessions,
headers, bad input, and the actions that change state (each one audited)."""

from __future__ import annotations

import csv
import hashlib
import re
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis

from gateway.api.auth import hash_key
from gateway.state import keys
from tests.conftest import API_KEY, TENANT, Stack, make_key, points_expiry, statuses, wait_for
from tests.integration.test_retries import run_cli

pytestmark = pytest.mark.integration

PHONE = "13812345678"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def signed_in(stack: Stack, key: str = API_KEY) -> httpx.Client:
    client = httpx.Client(base_url=stack.api_url, timeout=10, follow_redirects=False)
    form = client.get("/console/login")
    answer = client.post(
        "/console/login", data={"csrf": _csrf(form.text), "api_key": key, "next": "/console/"}
    )
    assert answer.status_code == 303, answer.text
    return client


def console_events(stack: Stack, kind: str = "console") -> list[dict[str, Any]]:
    with stack.client() as c:
        return list(c.get("/v1/audit/events", params={"type": kind, "limit": 1000}).json()["events"])


def test_the_console_is_not_in_the_api_document_and_every_page_carries_the_security_headers(
    stack: Stack,
) -> None:
    paths = httpx.get(f"{stack.api_url}/schema/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    client = signed_in(stack)
    for path in (
        "/console/login",
        "/console/",
        "/console/notifications",
        "/console/audit",
        "/console/nope/x",
    ):
        answer = client.get(path)
        if answer.status_code == 404 and path.endswith("/x"):
            continue
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
        assert "unsafe-inline" not in csp


def test_sign_in_refuses_a_missing_token_an_unknown_key_and_redirects_only_to_its_own_pages(
    stack: Stack,
) -> None:
    client = httpx.Client(base_url=stack.api_url, timeout=10, follow_redirects=False)
    token = _csrf(client.get("/console/login").text)
    assert client.post("/console/login", data={"api_key": API_KEY}).status_code == 403
    assert client.post("/console/login", data={"csrf": "x" * 30, "api_key": API_KEY}).status_code == 403
    for wrong in ("nope", "k" * 5000):
        answer = client.post("/console/login", data={"csrf": token, "api_key": wrong})
        assert answer.status_code == 401
        token = _csrf(answer.text)  # the failed form comes back with a fresh token
    assert "tidings_console" not in client.cookies
    for evil in ("//evil.example/x", "https://evil.example/", "/console//evil.example", "/\\evil.example"):
        token = _csrf(client.get("/console/login").text)
        answer = client.post("/console/login", data={"csrf": token, "api_key": API_KEY, "next": evil})
        assert answer.status_code == 303 and answer.headers["location"] == "/console", evil
        back = client.get("/console/lang/en", params={"back": evil})
        assert back.headers["location"] == "/console", evil
    # A page without a session sends the browser to sign in, a post too (nothing is done).
    fresh = httpx.Client(base_url=stack.api_url, timeout=10, follow_redirects=False)
    assert (
        fresh.get("/console/audit").headers["location"].startswith("/console/login?next=%2Fconsole%2Faudit")
    )
    assert fresh.post("/console/optouts", data={"address": PHONE}).status_code == 303
    with stack.client() as c:
        assert c.get(f"/v1/optouts/{PHONE}").json()["opted_out"] is False


def test_a_revoked_key_ends_its_sessions_and_scopes_are_read_on_every_request(stack: Stack) -> None:
    make_key(stack.redis_url, "short-lived-key-0123456789", TENANT, ["notify", "audit:read"])
    client = signed_in(stack, "short-lived-key-0123456789")
    assert client.get("/console/audit").status_code == 200
    r = redis.Redis.from_url(stack.redis_url)
    r.hset(keys.api_key(hash_key("short-lived-key-0123456789")), "scopes", "notify")
    assert client.get("/console/audit").status_code == 403  # the change applies at once
    session = keys.console_session(hashlib.sha256(client.cookies["tidings_console"].encode()).hexdigest())
    assert r.exists(session)
    key_id = "key_" + hash_key("short-lived-key-0123456789")[:12]
    assert run_cli(stack, "keys", "revoke", "key_000000000000").returncode == 1
    revoked = run_cli(stack, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked {key_id} (tenant {TENANT})" in revoked.stdout, revoked.stderr
    assert client.get("/console/").status_code == 303
    assert not r.exists(session)  # the session went with its key
    assert client.get("/console/notifications").headers["location"].startswith("/console/login")
    events = wait_for(
        lambda: [e for e in console_events(stack, "api_key_revoked")] or None, timeout=20, interval=0.3
    )
    assert events[0]["data"]["key_id"] == key_id


def test_bad_input_gets_a_page_with_a_status_not_a_crash(stack: Stack) -> None:
    client = signed_in(stack)
    csrf = _csrf(client.get("/console/").text)
    assert client.get("/console/members/not-a-hash").status_code == 404
    assert client.get("/console/members/" + "A" * 32).status_code == 404
    assert client.get("/console/notifications/ntf_nope").status_code == 404
    assert client.get("/console/notifications", params={"from_": "yesterday"}).status_code == 422
    assert client.get("/console/audit", params={"to": "2026-13-45"}).status_code == 422
    assert client.get("/console/audit", params={"before": "x"}).status_code in (400, 422)
    assert client.get("/console/series/" + "ü" * 10).status_code == 404
    bad = client.post("/console/members", data={"csrf": csrf, "address": "12345"})
    assert bad.status_code == 422 and 'id="code">invalid_recipient<' in bad.text
    assert client.post("/console/notifications", data={"csrf": csrf, "q": "ntf_<script>"}).status_code == 404
    huge = client.post("/console/members", data={"csrf": csrf, "address": "1" * 100_000})
    assert huge.status_code in (413, 422)
    # Whatever was typed comes back escaped.
    typed = client.post("/console/members", data={"csrf": csrf, "address": "<b>x</b>@example.com"})
    assert "<b>x</b>" not in typed.text


def test_a_dead_letter_replayed_from_the_console_is_delivered_and_the_replay_audited(
    stack_factory: Any,
) -> None:
    stack = stack_factory(max_attempts=2)
    stack.faults(channel="sms", error_rate=1.0, mode="http_500")
    with stack.client() as c:
        ids = [c.post("/v1/notify", json=points_expiry(f"1380000000{i}")).json()["id"] for i in range(3)]
    wait_for(lambda: statuses(stack, ids) == {"failed": 3}, timeout=30, interval=0.3)
    stack.clear_faults()
    client = signed_in(stack)
    page = client.get("/console/dead-letters")
    assert all(i in page.text for i in ids) and "13800000000" not in page.text
    one = client.post("/console/dead-letters/replay", data={"csrf": _csrf(page.text), "id": ids[0]})
    assert one.status_code == 303
    wait_for(lambda: statuses(stack, [ids[0]]) == {"delivered": 1}, timeout=20, interval=0.3)
    rest = client.post("/console/dead-letters/replay", data={"csrf": _csrf(page.text)})
    assert rest.status_code == 303
    wait_for(lambda: statuses(stack, ids) == {"delivered": 3}, timeout=20, interval=0.3)
    with stack.client() as c:
        timeline = c.get(f"/v1/notifications/{ids[1]}").json()["events"]
    assert any(e["type"] == "replayed" and e["source"] == "console" for e in timeline)
    actions = wait_for(
        lambda: (
            [e["data"]["target"] for e in console_events(stack) if e["data"]["action"] == "dlq_replay"]
            or None
        ),
        timeout=20,
    )
    assert actions == [ids[0], "all"]
    # Without its token the replay is refused.
    assert client.post("/console/dead-letters/replay", data={"id": ids[0]}).status_code == 403


def test_the_console_export_is_csv_with_the_filters_applied_and_audited(stack: Stack) -> None:
    with stack.client() as c:
        ntf = c.post("/v1/notify", json=points_expiry(PHONE)).json()["id"]
        c.post("/v1/notify", json=points_expiry("13900001111"))
    wait_for(lambda: statuses(stack, [ntf]) == {"delivered": 1}, timeout=20, interval=0.3)
    client = signed_in(stack)
    found = client.post(
        "/console/audit", data={"csrf": _csrf(client.get("/console/").text), "address": PHONE}
    )
    member = found.headers["location"].split("member=")[1].split("&")[0]
    wait_for(lambda: ntf in client.get(f"/console/audit?member={member}").text, timeout=20, interval=0.3)
    export = client.get("/console/audit/export", params={"member": member})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    lines = export.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("seq,id,at,type")
    assert lines[1:] and all(ntf in line or "console" in line for line in lines[1:])
    assert PHONE not in export.text
    # Opened in a spreadsheet, no cell starts a formula (the masked number starts with +).
    assert all(not c.startswith(("=", "+", "-", "@")) for row in csv.reader(lines) for c in row)
    assert "'+86138****5678" in export.text
    kinds = wait_for(
        lambda: (
            {e["data"]["action"] for e in console_events(stack)}
            >= {"sign_in", "member_lookup", "audit_export"}
        ),
        timeout=20,
    )
    assert kinds


def test_a_templates_only_key_signs_in_but_sees_no_member_data(stack: Stack) -> None:
    make_key(stack.redis_url, "templates-key-0123456789", TENANT, ["templates"])
    client = signed_in(stack, "templates-key-0123456789")
    home = client.get("/console/")
    assert home.status_code == 200 and "/console/notifications" not in home.text
    for path in ("/console/notifications", "/console/members", "/console/series", "/console/campaigns"):
        assert client.get(path).status_code == 403, path
    refused = client.post("/console/members", data={"csrf": _csrf(home.text), "address": PHONE})
    assert refused.status_code == 403 and 'id="code">insufficient_scope<' in refused.text


def _walk(client: httpx.Client, path: str) -> list[int]:
    """Every seq shown, following the 'older' links to the end."""
    seen: list[int] = []
    while path:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text[:300]
        seen += [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", answer.text)]
        older = re.search(r'<a id="older" href="([^"]+)"', answer.text)
        path = older.group(1).replace("&amp;", "&") if older else ""
    return seen


def test_audit_pages_walk_the_whole_log_newest_first_without_gaps_or_repeats(stack: Stack) -> None:
    from gateway.audit.backends import open_store
    from gateway.audit.stream import AuditRow

    store = open_store(stack.settings.audit_url)
    base_ms = 1_796_000_000_000
    # 260 events, many sharing a millisecond (a wave), a few out of time order (a late consumer).
    rows = [
        AuditRow(
            TENANT,
            f"e{i}",
            base_ms + (i // 7) * 1000 - (5000 if i % 50 == 0 else 0),
            "sent",
            f"ntf_{i:026d}",
            "sms",
            f"{i % 3:032x}",
            "+86138****5678",
            '{"type":"sent"}',
        )
        for i in range(260)
    ]
    store.append(rows)
    store.close()
    client = signed_in(stack)
    everything = _walk(client, "/console/audit?type_=sent")
    assert everything == sorted(everything, reverse=True) and len(everything) == len(set(everything)) == 260
    # A time window pages by time, then position: every event inside it exactly once.
    from gateway.api.console.render import when

    since, until = base_ms + 3_000, base_ms + 30_000
    window = _walk(
        client, "/console/audit?" + urlencode({"from_": when(since), "to": when(until), "type_": "sent"})
    )
    inside = [
        i + 1 for i, r in enumerate(rows) if since // 1000 * 1000 <= r.at_ms <= until // 1000 * 1000 + 999
    ]
    assert sorted(window) == sorted(inside) and len(window) == len(set(window))
    # One member's events.
    member = f"{1:032x}"
    assert sorted(_walk(client, f"/console/audit?member={member}&type_=sent")) == [
        i + 1 for i in range(260) if i % 3 == 1
    ]


def test_notifications_are_found_by_campaign_and_status_over_pages(stack: Stack) -> None:
    with stack.client() as c:
        spring = [
            c.post(
                "/v1/notify", json=points_expiry(f"1380000{i:04d}", metadata={"campaign": "spring"})
            ).json()["id"]
            for i in range(60)
        ]
        other = [c.post("/v1/notify", json=points_expiry(f"1370000{i:04d}")).json()["id"] for i in range(5)]
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86_400))
        cancelled = c.post("/v1/notify", json=points_expiry("13700000000", send_at=later)).json()["id"]
        assert c.post(f"/v1/notifications/{cancelled}/cancel").status_code == 200
    wait_for(lambda: statuses(stack, spring + other) == {"delivered": 65}, timeout=30, interval=0.3)
    client = signed_in(stack)

    def listed(path: str) -> list[str]:
        ids: list[str] = []
        while path:
            answer = client.get(path)
            assert answer.status_code == 200
            ids += re.findall(r'<a href="/console/notifications/(ntf_\w+)">', answer.text)
            older = re.search(r'<a id="older" href="([^"]+)"', answer.text)
            path = older.group(1).replace("&amp;", "&") if older else ""
        return ids

    wait_for(lambda: len(listed("/console/notifications")) == 66, timeout=20, interval=0.5)
    assert sorted(listed("/console/notifications?campaign=spring")) == sorted(spring)
    assert listed("/console/notifications?status=cancelled") == [cancelled]
    form = client.post(
        "/console/notifications",
        data={"csrf": _csrf(client.get("/console/").text), "campaign": "spring", "status": "delivered"},
    )
    assert form.status_code == 303 and "campaign=spring" in form.headers["location"]
    assert sorted(listed(form.headers["location"])) == sorted(spring)


def test_every_kind_of_notification_page_renders_with_numbers_in_free_text_masked(stack: Stack) -> None:
    email = {**points_expiry(), "channel": "email", "to": {"email": "li.nvshi@example.com"}}
    push = {
        "to": {"push_token": "fcm-token-0123456789abcdef"},
        "channel": "push",
        "category": "transactional",
        "brand": "星耀商城",
        "template": "points_credited",
        "params": {"name": "李女士", "points": 100, "balance": 28700},
    }
    with stack.client() as c:
        assert c.put(f"/v1/optouts/{PHONE}", json={}).status_code in (200, 201)
        ids = [
            c.post("/v1/notify", json=email).json()["id"],
            c.post("/v1/notify", json=push).json()["id"],
            c.post("/v1/notify", json=points_expiry(PHONE)).json()["id"],  # suppressed: opted out
            c.post(
                "/v1/notify", json=points_expiry("13800000001", metadata={"note": "客户来电 13912345678"})
            ).json()["id"],
        ]
    client = signed_in(stack)
    for ntf in ids:
        answer = client.get(f"/console/notifications/{ntf}")
        assert answer.status_code == 200, (ntf, answer.text[-500:])
    suppressed = client.get(f"/console/notifications/{ids[2]}").text
    assert "已拦截" in suppressed and "opted_out" in suppressed
    noted = client.get(f"/console/notifications/{ids[3]}").text
    assert "13912345678" not in noted and "139****5678" in noted
    assert "li.nvshi@example.com" not in client.get(f"/console/notifications/{ids[0]}").text


def test_changes_redirect_after_posting_and_bad_values_are_refused_not_widened(stack: Stack) -> None:
    client = signed_in(stack)
    csrf = _csrf(client.get("/console/").text)
    member = client.post("/console/optouts", data={"csrf": csrf, "address": PHONE}).headers["location"]
    out = client.post(
        f"{member}/out", data={"csrf": csrf, "channel": "sms", "reason": "来电要求 13912345678"}
    )
    assert out.status_code == 303 and out.headers["location"] == f"{member}?m=done"
    again = client.post(f"{member}/out", data={"csrf": csrf, "channel": "sms"})
    assert again.headers["location"] == f"{member}?m=nothing_changed"
    shown = client.get(f"{member}?m=done").text
    assert "已完成" in shown and "13912345678" not in shown
    wide = client.post(f"{member}/out", data={"csrf": csrf, "channel": "fax"})
    assert wide.status_code == 422
    with stack.client() as c:
        entries = c.get(f"/v1/optouts/{PHONE}").json()["entries"]
    assert [(e["brand"], e["channel"]) for e in entries] == [(None, "sms")]  # not every channel
    assert client.post(f"{member}/out", data={"csrf": csrf, "brand": "品" * 65}).status_code == 422
    verify = client.post("/console/audit/verify", data={"csrf": csrf})
    assert verify.status_code == 303 and "哈希链完整" in client.get("/console/audit/verify").text
    for path in (
        "/console/notifications?before=99999999999999999999999",
        "/console/audit?before_at=99999999999999999999&before=1&from_=2026-12-01",
        "/console/series?after=nan",
        "/console/dead-letters?before=inf",
        "/console/audit?before=abc",
    ):
        answer = client.get(path)
        assert answer.status_code in (400, 422) and answer.headers["content-type"].startswith("text/html"), (
            path
        )
    lost = client.get("/console/no/such/page")
    assert lost.status_code == 404 and lost.headers["content-type"].startswith("text/html")
    assert client.get("/console/static/../../gateway/settings.py").status_code == 404
    slash_time = client.get("/console/notifications", params={"from_": "2026/12/01"})
    assert slash_time.status_code == 200
    junk = client.post("/console/members", data={"csrf": csrf, "address": "NTF_01M8SJE4X0S0MK4ST7KCE3WP3H"})
    assert junk.status_code == 422 and 'id="sign-out"' in junk.text  # the menu stays


def test_two_sign_in_tabs_both_work_and_wrong_keys_are_throttled(stack: Stack) -> None:
    client = httpx.Client(base_url=stack.api_url, timeout=10, follow_redirects=False)
    first, second = _csrf(client.get("/console/login").text), _csrf(client.get("/console/login").text)
    assert first == second
    assert client.post("/console/login", data={"csrf": first, "api_key": API_KEY}).status_code == 303
    # The language switch and a sign-in after expiry keep the page's query.
    back = client.get("/console/lang/en", params={"back": "/console/audit?type_=accepted"})
    assert back.headers["location"] == "/console/audit?type_=accepted"
    stranger = httpx.Client(base_url=stack.api_url, timeout=10, follow_redirects=False)
    assert stranger.get("/console/audit?type_=accepted").headers["location"] == (
        "/console/login?" + urlencode({"next": "/console/audit?type_=accepted"})
    )
    token = _csrf(stranger.get("/console/login").text)
    codes = [
        stranger.post("/console/login", data={"csrf": token, "api_key": f"wrong-{i}"}).status_code
        for i in range(12)
    ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    # Even the right key waits out the minute from that address.
    assert stranger.post("/console/login", data={"csrf": token, "api_key": API_KEY}).status_code == 429
