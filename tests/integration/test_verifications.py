"""Verification codes end to end: sent through the simulator, checked once, limited, and kept nowhere."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import QUIET_OFF_POLICY, Stack, wait_for

pytestmark = pytest.mark.integration

CODE = re.compile(r"验证码为(\d{6})")


def policy(tmp_path: Path, verification: str) -> str:
    path = tmp_path / "policy-verification.toml"
    path.write_text(QUIET_OFF_POLICY + "\n[verification]\n" + verification, encoding="utf-8")
    return str(path)


def start(c: httpx.Client, phone: str = "13812345678", **extra: Any) -> httpx.Response:
    body = {"to": {"phone": phone}, "channel": "sms", "brand": "星耀商城", "purpose": "redeem", **extra}
    return c.post("/v1/verifications", json=body)


def received_code(stack: Stack, phone: str, n: int = 1) -> str:
    """The code of the n-th message the member's phone got (the simulator is the member's phone)."""
    got = wait_for(lambda: [m for m in stack.messages(phone) if "验证码" in (m.get("text") or "")][n - 1 :])
    match = CODE.search(got[0]["text"])
    assert match, got[0]["text"]
    return match.group(1)


def test_a_code_is_approved_once_for_the_right_digits_and_never_for_wrong_ones(stack: Stack) -> None:
    with stack.client() as c:
        r = start(c)
        assert r.status_code == 201, r.text
        ver = r.json()
        assert ver["status"] == "pending" and ver["id"].startswith("ver_") and ver["to"] == "+86138****5678"
        code = received_code(stack, "13812345678")
        text = stack.messages("13812345678")[-1]["text"]
        assert text.startswith("【星耀商城】") and "拒收" not in text  # signed, no unsubscribe footer
        wrong = "000000" if code != "000000" else "111111"
        check = {"to": {"phone": "+86 138-1234-5678"}, "purpose": "redeem"}
        r = c.post("/v1/verifications/check", json={**check, "code": wrong})
        assert r.status_code == 200 and r.json() == {"id": ver["id"], "status": "pending", "attempts_left": 4}
        r = c.post("/v1/verifications/check", json={**check, "code": code})
        assert r.json() == {"id": ver["id"], "status": "approved"}
        again = c.post("/v1/verifications/check", json={"id": ver["id"], "code": code})
        assert again.status_code == 404 and again.json()["code"] == "verification_not_found"
        by_phone = c.post("/v1/verifications/check", json={**check, "code": code})
        assert by_phone.status_code == 404
        assert c.get(f"/v1/verifications/{ver['id']}").json()["status"] == "approved"
        # Another purpose has no verification.
        other = c.post("/v1/verifications/check", json={**check, "purpose": "login", "code": code})
        assert other.status_code == 404


def test_five_wrong_tries_end_a_code_even_for_the_right_one_after(stack: Stack) -> None:
    with stack.client() as c:
        ver = start(c).json()
        code = received_code(stack, "13812345678")
        wrong = "000000" if code != "000000" else "111111"
        said = [
            c.post("/v1/verifications/check", json={"id": ver["id"], "code": wrong}).json() for _ in range(5)
        ]
        assert [s["status"] for s in said] == ["pending"] * 4 + ["max_attempts"]
        assert [s.get("attempts_left") for s in said[:4]] == [4, 3, 2, 1]
        right = c.post("/v1/verifications/check", json={"id": ver["id"], "code": code}).json()
        assert right["status"] == "max_attempts"


def test_a_new_code_replaces_the_one_before(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory(policy_path=policy(tmp_path, "per_number = [{count = 5, seconds = 3600}]\n"))
    with stack.client() as c:
        first = start(c).json()
        old = received_code(stack, "13812345678", 1)
        second = start(c).json()
        new = received_code(stack, "13812345678", 2)
        r = c.post("/v1/verifications/check", json={"id": first["id"], "code": old})
        assert r.json()["status"] == "expired"
        assert c.get(f"/v1/verifications/{first['id']}").json()["status"] == "expired"
        r = c.post("/v1/verifications/check", json={"id": second["id"], "code": new})
        assert r.json()["status"] == "approved"


def test_a_second_code_within_a_minute_is_429_with_retry_after(stack: Stack) -> None:
    with stack.client() as c:
        assert start(c).status_code == 201
        r = start(c, phone="+8613812345678")
        assert r.status_code == 429
        assert r.json()["code"] == "verification_rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # The limit is per number and brand: another brand may send one.
        assert start(c, brand="月光百货").status_code == 201
        # Refused codes are not sent: the number got two messages.
        wait_for(lambda: len(stack.messages("13812345678")) == 2)


def test_the_sixth_code_in_an_hour_is_refused(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory(
        policy_path=policy(
            tmp_path, "per_number = [{count = 5, seconds = 3600}, {count = 10, seconds = 86400}]\n"
        )
    )
    with stack.client() as c:
        assert [start(c).status_code for _ in range(5)] == [201] * 5
        r = start(c)
        assert r.status_code == 429 and r.json()["code"] == "verification_rate_limited"
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        assert "5 code(s) in an hour" in r.json()["detail"]


def test_a_burst_across_one_number_block_is_refused(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory(policy_path=policy(tmp_path, "per_block = [{count = 3, seconds = 600}]\n"))
    with stack.client() as c:
        # A pumping bot walks one range: 1381234xxxx.
        got = [start(c, phone=f"1381234{n:04d}").status_code for n in (11, 12, 13, 14, 15)]
        assert got[:3] == [201] * 3
        r = start(c, phone="13812340016")
        assert r.status_code == 429 and r.json()["code"] == "verification_block_limited"
        assert got[3:] == [429, 429]
        # A member in another block is not held up by the burst.
        assert start(c, phone="13700001111").status_code == 201


def test_the_tenant_limit(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory(policy_path=policy(tmp_path, "per_tenant = [{count = 2, seconds = 60}]\n"))
    with stack.client() as c:
        assert start(c, phone="13812345678").status_code == 201
        assert start(c, phone="13700001111").status_code == 201
        r = start(c, phone="13600002222")
        assert r.status_code == 429 and r.json()["code"] == "verification_tenant_limited"


def test_a_verification_template_cannot_be_sent_through_notify(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post(
            "/v1/notify",
            json={
                "to": {"phone": "13812345678"},
                "channel": "sms",
                "brand": "星耀商城",
                "template": "verification_code",
                "params": {"code": "123456", "minutes": 5},
            },
        )
        assert r.status_code == 422 and r.json()["code"] == "category_mismatch"


def test_bad_requests_get_codes_and_nothing_is_counted(stack: Stack) -> None:
    with stack.client() as c:
        assert start(c, phone="12345").json()["code"] == "invalid_recipient"
        assert start(c, phone="02161234567").json()["code"] == "invalid_recipient"  # SMS needs a mobile
        assert start(c, brand="无名商店").json()["code"] == "unknown_brand"
        assert start(c, channel="fax").status_code in (400, 422)
        assert start(c, purpose="Has Space").status_code in (400, 422)
        r = c.post("/v1/verifications/check", json={"code": "123456"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id"
        r = c.post("/v1/verifications/check", json={"id": "ver_NOPE", "code": "123456"})
        assert r.status_code == 404 and r.json()["code"] == "verification_not_found"
        # None of that counted against the number: a real request goes.
        assert start(c).status_code == 201


def test_an_opted_out_member_gets_no_code_and_it_does_not_count(stack: Stack) -> None:
    with stack.client() as c:
        r = c.put("/v1/optouts/13812345678", json={"brand": "星耀商城", "reason": "replied TD"})
        assert r.status_code in (200, 201), r.text
        r = start(c)
        assert r.status_code == 422 and r.json()["code"] == "opted_out"
        r = start(c)  # withdrawn, so not a rate-limit answer
        assert r.json()["code"] == "opted_out"
    assert stack.messages("13812345678") == []


def _redis_values(rdb: redis.Redis) -> bytes:
    """Every value in Redis, as bytes (strings, hashes, lists, sets, sorted sets, streams)."""
    out = []
    for key in rdb.scan_iter(count=1000):
        kind = rdb.type(key)
        out.append(key)
        if kind == b"string":
            out.append(rdb.get(key) or b"")
        elif kind == b"hash":
            for k, v in rdb.hgetall(key).items():
                out += [k, v]
        elif kind == b"list":
            out += rdb.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(rdb.smembers(key))
        elif kind == b"zset":
            out += [m for m, _ in rdb.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _, fields in rdb.xrange(key):
                for k, v in fields.items():
                    out += [k, v]
    return b"\n".join(out)


def test_the_codes_are_found_nowhere(
    stack: Stack, rdb: redis.Redis, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with stack.client() as c:
        for phone in ("13812345678", "13700001111", "13600002222"):
            r = start(c, phone=phone)
            assert r.status_code == 201
            seen.append(r.text)
        codes = [received_code(stack, p) for p in ("13812345678", "13700001111", "13600002222")]
        for phone, code in zip(("13812345678", "13700001111", "13600002222"), codes, strict=True):
            r = c.post(
                "/v1/verifications/check", json={"to": {"phone": phone}, "purpose": "redeem", "code": code}
            )
            assert r.json()["status"] == "approved"
            seen.append(r.text)
        ntf_ids = [m.get("reference", "").split(":")[-1] for m in stack.messages()]
        assert all(n.startswith("ntf_") for n in ntf_ids)

        def delivered() -> bool:
            return all(c.get(f"/v1/notifications/{n}").json()["status"] == "delivered" for n in ntf_ids)

        wait_for(delivered)
        for n in ntf_ids:
            r = c.get(f"/v1/notifications/{n}")
            seen.append(r.text)
            assert "●●●●●●" in r.text  # the stored message holds the placeholder
        seen.append(c.get("/v1/audit/events", params={"limit": 200}).text)
    # The sealed codes went with their sends.
    hashes = [k for k in rdb.scan_iter(match="tid:*:ntf:*") if rdb.type(k) == b"hash"]
    assert len(hashes) == 3 and not any(rdb.hexists(k, "sealed") for k in hashes)
    audit_db = stack.settings.audit_url.removeprefix("sqlite:///")

    def stored() -> int:
        with sqlite3.connect(audit_db) as db:
            return int(
                db.execute("select count(*) from audit_events where type = 'verification'").fetchone()[0]
            )

    wait_for(lambda: stored() >= 6)  # three created, three approved
    with open(audit_db, "rb") as fh:
        audit_bytes = fh.read()
    everything = {
        "redis": _redis_values(rdb),
        "audit store": audit_bytes,
        "responses": "\n".join(seen).encode(),
        "logs": caplog.text.encode(),
    }
    for code in codes:
        # Standing alone (not inside a longer run of digits or letters: a timestamp, a hash).
        alone = re.compile(rb"(?<![0-9A-Za-z])" + code.encode() + rb"(?![0-9A-Za-z])")
        for where, blob in everything.items():
            assert alone.search(blob) is None, f"code found in {where}"


def test_a_code_by_voice_is_a_call_that_speaks_it_at_any_hour(stack: Stack) -> None:
    with stack.client() as c:
        r = start(c, channel="voice")
        assert r.status_code == 201, r.text
        calls = wait_for(lambda: [m for m in stack.messages("13812345678") if m.get("channel") == "voice"])
        # Digit by digit, so text-to-speech does not read a number (四十八万...).
        spoken = re.search(r"验证码是，((?:\d ){5}\d)。重复一遍，\1。", calls[0]["text"])
        assert spoken, calls[0]["text"]
        check = {"id": r.json()["id"], "code": spoken.group(1).replace(" ", "")}
        assert c.post("/v1/verifications/check", json=check).json()["status"] == "approved"
        # Voice quiet hours (12:00-14:00, 21:00-08:00) do not hold a code the member is waiting for.
        ntf = c.get(f"/v1/notifications/{r.json()['notification_id']}").json()
        assert ntf["channel"] == "voice" and not any(e["type"] == "scheduled" for e in ntf["events"])


def test_a_code_whose_message_cannot_go_leaves_the_one_before_valid(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory(policy_path=policy(tmp_path, "per_number = [{count = 5, seconds = 3600}]\n"))
    with stack.client() as c:
        first = start(c).json()
        code = received_code(stack, "13812345678")
        # The member refuses calls; a code by voice cannot go.
        r = c.put("/v1/optouts/13812345678", json={"brand": None, "channel": "voice", "reason": "no calls"})
        assert r.status_code in (200, 201), r.text
        refused = start(c, channel="voice")
        assert refused.status_code == 422 and refused.json()["code"] == "opted_out"
        assert c.get(f"/v1/verifications/{first['id']}").json()["status"] == "pending"
        by_phone = {"to": {"phone": "13812345678"}, "purpose": "redeem", "code": code}
        assert c.post("/v1/verifications/check", json=by_phone).json() == {
            "id": first["id"],
            "status": "approved",
        }
        assert c.get(f"/v1/verifications/{first['id']}").json()["notification_id"].startswith("ntf_")


def test_careless_codes_are_read_kindly_and_malformed_ones_cost_no_try(stack: Stack) -> None:
    with stack.client() as c:
        ver = start(c).json()
        code = received_code(stack, "13812345678")
        for bad in ("12345", "abcdef", "1234567", "12 34 5x"):
            r = c.post("/v1/verifications/check", json={"id": ver["id"], "code": bad})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "code", bad
        both = {"id": ver["id"], "to": {"phone": "13812345678"}, "code": code}
        r = c.post("/v1/verifications/check", json=both)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
        assert c.get(f"/v1/verifications/{ver['id']}").json()["attempts"] == 0  # none of that was a try
        full_width = "".join(chr(ord(d) + 0xFEE0) for d in code)  # what a Chinese input method may type
        r = c.post(
            "/v1/verifications/check", json={"id": ver["id"], "code": f" {full_width[:3]} {full_width[3:]} "}
        )
        assert r.json()["status"] == "approved"
        assert c.get("/v1/verifications/" + "x" * 500).json()["detail"].count("x") < 10  # not echoed


def test_retry_after_is_the_longest_wait_of_the_full_windows(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    rules = "per_number = [{count = 1, seconds = 2}, {count = 2, seconds = 3600}]\n"
    stack = stack_factory(policy_path=policy(tmp_path, rules))
    with stack.client() as c:
        assert start(c).status_code == 201
        time.sleep(2.1)
        assert start(c).status_code == 201
        r = start(c)  # both windows are full: the hour's is the one to wait for
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 3500, r.headers


def test_the_verification_template_cannot_be_shadowed_and_keeps_no_attribution_key(
    stack: Stack, rdb: redis.Redis
) -> None:
    with stack.client() as c:
        doc = {"category": "transactional", "sms": {"text": "验证码 {{ code }}"}, "params": {"code": {}}}
        r = c.put("/v1/templates/verification_code", json=doc)
        assert r.status_code == 422, r.text
        assert start(c).status_code == 201
        received_code(stack, "13812345678")
    assert list(rdb.scan_iter(match="*xcode*")) == []


def test_an_opted_out_members_refused_message_keeps_no_seal(stack: Stack, rdb: redis.Redis) -> None:
    with stack.client() as c:
        c.put("/v1/optouts/13812345678", json={"brand": "星耀商城", "reason": "replied TD"})
        assert start(c).status_code == 422
    hashes = [k for k in rdb.scan_iter(match="tid:*:ntf:*") if rdb.type(k) == b"hash"]
    assert hashes and not any(rdb.hexists(k, "sealed") for k in hashes)


def test_codes_go_only_to_the_allowed_countries(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory(policy_path=policy(tmp_path, 'countries = ["CN"]\n'))
    with stack.client() as c:
        r = start(c, phone="+85291234567")  # Hong Kong
        assert r.status_code == 422 and r.json()["code"] == "country_not_allowed"
        assert start(c).status_code == 201
