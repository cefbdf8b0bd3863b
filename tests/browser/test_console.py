"""The console in a real browser: an auditor's and an operator's day, the guards, and a screenshot of each page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auditdb import Backend
from tests.conftest import API_KEY, TENANT, Stack, make_key, points_expiry, wait_for

pytestmark = pytest.mark.integration

PHONE = "13812345678"
XSS = "<script>alert(1)</script>"


def sign_in(page: Any, base: str, key: str = API_KEY) -> None:
    page.goto(f"{base}/console/")
    assert "/console/login" in page.url  # no session yet
    page.fill("#api-key", key)
    page.click("#sign-in")
    page.wait_for_url(re.compile(r".*/console/?$"))


def member_optouts(context: Any, base: str) -> Any:
    """A signed-in page on the member's opt-outs, looked up by number."""
    page = context.new_page()
    sign_in(page, base)
    page.goto(f"{base}/console/optouts")
    page.fill("#address", PHONE)
    page.click("#search")
    page.wait_for_url(re.compile(r".*/console/optouts/[0-9a-f]{32}$"))
    return page


def audit_rows(stack: Stack, address: str) -> list[dict[str, Any]]:
    with stack.client() as c:
        answer = c.get("/v1/audit/events", params={"address": address, "limit": 1000})
        return list(answer.json()["events"]) if answer.status_code == 200 else []


def prepare(stack: Stack) -> tuple[str, str]:
    """Two notifications to the member (one with a script in its metadata), delivered and stored in
    the audit log; another member's message beside them."""
    with stack.client() as c:
        plain = c.post(
            "/v1/notify", json=points_expiry(PHONE, metadata={"campaign": "2026-12-expiry"})
        ).json()["id"]
        hostile = c.post("/v1/notify", json=points_expiry(PHONE, metadata={"note": XSS})).json()["id"]
        c.post("/v1/notify", json=points_expiry("13900001111"))

    def delivered() -> bool:
        types = [(e["notification_id"], e["type"]) for e in audit_rows(stack, PHONE)]
        return (plain, "receipt") in types and (hostile, "receipt") in types

    wait_for(delivered, timeout=30, interval=0.3)
    return plain, hostile


def test_an_auditor_finds_a_member_reads_a_timeline_verifies_the_chain_and_sees_a_tampered_row(
    stack_factory: Any, context: Any, shots: Path
) -> None:
    stack = stack_factory(console_simulator=True)
    plain, hostile = prepare(stack)
    base = stack.api_url
    page = context.new_page()
    urls: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    page.goto(f"{base}/console/login")
    page.screenshot(path=str(shots / "login.png"), full_page=True)
    sign_in(page, base)
    assert "概览" in page.inner_text("main")  # Chinese first
    page.screenshot(path=str(shots / "home.png"), full_page=True)

    # A member by the digits as typed...
    page.click("text=通知")
    page.fill("#q", PHONE)
    page.click("#search")
    page.wait_for_url(re.compile(r".*/console/notifications\?member=[0-9a-f]{32}"))
    by_digits = page.url.split("member=")[1]
    listed = page.inner_text("#notifications")
    assert plain in listed and hostile in listed and "+86138****5678" in listed
    assert "13900001111" not in listed and "139****1111" not in listed
    page.screenshot(path=str(shots / "notifications.png"), full_page=True)

    # ...and by the international form with separators: the same member.
    page.goto(f"{base}/console/members")
    page.fill("#address", "+86 138-1234-5678")
    page.click("#search")
    page.wait_for_url(re.compile(r".*/console/members/[0-9a-f]{32}$"))
    assert page.url.rsplit("/", 1)[1] == by_digits
    assert page.inner_text("#masked") == "+86138****5678"
    assert plain in page.inner_text("#notifications") and "2 / 4" in page.inner_text("#cap")
    page.screenshot(path=str(shots / "member.png"), full_page=True)

    # The notification whose metadata holds a script: shown as text, never run.
    page.click(f"text={hostile}")
    page.wait_for_url(re.compile(f".*/console/notifications/{hostile}$"))
    assert page.inner_text("#status") == "已送达"
    timeline = page.inner_text("#events")
    for kind in ("accepted", "compliance", "attempt", "sent", "receipt"):
        assert kind in timeline
    assert XSS in page.inner_text("#metadata")
    assert page.locator("script").count() == 1  # console.js only
    assert page.evaluate("document.querySelectorAll('#metadata script').length") == 0
    page.screenshot(path=str(shots / "notification.png"), full_page=True)

    # The audit log, filtered to the member, and the chain verified.
    page.goto(f"{base}/console/audit")
    page.fill("#address", PHONE)
    page.click("#search")
    page.wait_for_url(re.compile(r".*/console/audit\?member=[0-9a-f]{32}"))
    assert hostile in page.inner_text("#events")
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    page.click("#verify-link")
    page.click("#verify")
    verdict = page.inner_text("#verdict")
    assert "哈希链完整" in verdict
    page.screenshot(path=str(shots / "verify-ok.png"), full_page=True)

    # Someone with write access to the database edits a receipt: the page names that event.
    path = stack.settings.audit_url.removeprefix("sqlite:///")
    backend = Backend("sqlite", stack.settings.audit_url, path=Path(path))
    backend.disable_guards()
    seq = backend.raw(
        "SELECT seq FROM audit_events WHERE tenant = ? AND notification_id = ? AND type = 'receipt'",
        (TENANT, plain),
    )[0][0]
    backend.raw(
        "UPDATE audit_events SET body = replace(body, 'delivered', 'undelivered') WHERE tenant = ? AND seq = ?",
        (TENANT, seq),
    )
    page.click("#verify")
    verdict = page.inner_text("#verdict")
    assert f"第 {seq} 条事件" in verdict and "altered" in verdict
    assert plain in page.inner_text("#broken-event")
    page.screenshot(path=str(shots / "verify-broken.png"), full_page=True)

    # The other pages, for the record (a screenshot each).
    for name, path_ in [
        ("campaign", "/console/campaigns?name=2026-12-expiry"),
        ("series", "/console/series"),
        ("dead-letters", "/console/dead-letters"),
        ("providers", "/console/providers"),
        ("simulator", "/console/simulator"),
    ]:
        answer = page.goto(f"{base}{path_}")
        assert answer is not None and answer.status == 200, name
        if name == "campaign":
            funnel = page.text_content("#funnel") or ""
            assert "已送达" in funnel and "1 (100.0%)" in funnel
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert "+86138****5678" in page.inner_text("#inbox") and PHONE not in page.inner_text("#inbox")

    assert dialogs == []
    assert not [u for u in urls if "1381234" in u or "138-1234" in u or "%2B86" in u], urls


def test_opting_back_in_needs_evidence_and_every_change_is_audited(
    stack_factory: Any, context: Any, shots: Path
) -> None:
    stack = stack_factory()
    page = member_optouts(context, stack.api_url)
    assert page.inner_text("#optout-state") == "未退订"
    page.click("#opt-out button")
    assert page.inner_text("#optout-state") == "已退订"
    with stack.client() as c:
        assert c.get(f"/v1/optouts/{PHONE}").json()["opted_out"] is True

    # Without evidence: refused, and the member stays opted out.
    page.click("form.opt-in button")
    assert "同意凭证" in page.inner_text("#message")
    assert page.inner_text("#optout-state") == "已退订"
    with stack.client() as c:
        assert c.get(f"/v1/optouts/{PHONE}").json()["opted_out"] is True
    page.screenshot(path=str(shots / "optouts.png"), full_page=True)

    page.fill("form.opt-in input[name=evidence]", "2026-12-01 会员在 App 中重新勾选同意接收营销短信")
    page.click("form.opt-in button")
    assert page.inner_text("#optout-state") == "未退订"
    with stack.client() as c:
        assert c.get(f"/v1/optouts/{PHONE}").json()["opted_out"] is False

    def kinds() -> list[tuple[str, str | None, str | None]]:
        return [(e["type"], e["data"].get("action"), e["data"].get("by")) for e in audit_rows(stack, PHONE)]

    key_id = wait_for(lambda: next((b for t, _, b in kinds() if t == "opt_in"), None), timeout=20)
    assert key_id.startswith("key_")
    wait_for(lambda: ("console", "opt_in", key_id) in kinds(), timeout=20)
    assert ("console", "member_lookup", key_id) in kinds() and ("console", "opt_out", key_id) in kinds()
    opt_in = next(e for e in audit_rows(stack, PHONE) if e["type"] == "opt_in")
    assert "重新勾选同意" in opt_in["data"]["consent_evidence"]


def test_a_key_without_audit_read_sees_no_audit_pages(stack_factory: Any, context: Any) -> None:
    stack = stack_factory()
    make_key(stack.redis_url, "viewer-key-0123456789", TENANT, ["notify"])
    base = stack.api_url
    page = context.new_page()
    sign_in(page, base, "viewer-key-0123456789")
    menu = page.inner_text("header nav")
    assert "通知" in menu and "审计日志" not in menu and "退订" not in menu and "死信" not in menu
    for path in (
        "/console/audit",
        "/console/audit/verify",
        "/console/audit/export",
        "/console/optouts",
        "/console/dead-letters",
        "/console/providers",
    ):
        answer = page.goto(f"{base}{path}")
        assert answer is not None and answer.status == 403, path
        assert "没有权限" in page.inner_text("main") or "需要权限" in page.inner_text("main")


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    stack_factory: Any, context: Any
) -> None:
    stack = stack_factory()
    page = member_optouts(context, stack.api_url)
    member_url = page.url
    # The same form, its token taken out (as a page on another site would have to post it).
    page.evaluate("document.querySelector('#opt-out input[name=csrf]').remove()")
    with page.expect_navigation():
        page.click("#opt-out button")
    assert "表单已过期" in page.inner_text("#message")
    # A post with a wrong token, sent with the session cookie.
    answer = context.request.post(f"{member_url}/out", form={"csrf": "forged", "brand": ""})
    assert answer.status == 403
    with stack.client() as c:
        assert c.get(f"/v1/optouts/{PHONE}").json()["opted_out"] is False


def test_sign_in_failure_sign_out_and_the_language_switch(stack_factory: Any, context: Any) -> None:
    stack = stack_factory()
    base = stack.api_url
    page = context.new_page()
    page.goto(f"{base}/console/login")
    page.fill("#api-key", "not-a-key")
    page.click("#sign-in")
    assert "无效" in page.inner_text("#message")

    sign_in(page, base)
    page.click("#lang")
    assert "Overview" in page.inner_text("main") and "Sign out" in page.inner_text("header")
    page.click("#lang")
    assert "概览" in page.inner_text("main")
    cookie = next(c for c in context.cookies() if c["name"] == "tidings_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto(f"{base}/console/")
    assert "/console/login" in page.url
    # The old cookie is worth nothing: the session ended on the server.
    answer = httpx.get(
        f"{base}/console/", cookies={"tidings_console": cookie["value"]}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
