"""Provider limits checked before the call: Alibaba's 50 a day per signature, template and number."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.config import ProvidersError, load_router
from channels.quotas import SMS_DAILY
from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from gateway.timeutil import set_clock
from tests.conftest import Stack, wait_for
from tests.integration.test_voice import call, local
from tests.providers import ProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture
def alibaba() -> Iterator[tuple[ProviderServer, int]]:
    server = ProviderServer("alibaba")
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    yield server, port
    thread.stop()


def providers_file(tmp_path: Path, port: int, extra: str = "") -> str:
    path = tmp_path / "providers.toml"
    path.write_text(
        "[providers.aliyun]\n"
        f'url = "alibaba+http://test-id:test-secret@127.0.0.1:{port}/?sign_name=星耀商城'
        '&templates=points_credited:SMS_1002,member_day:SMS_1003&template_code=SMS_1000"\n'
        f"{extra}"
        '[[routes.sms]]\nprovider = "aliyun"\n',
        encoding="utf-8",
    )
    return str(path)


def credited(phone: str = "13812345678", template: str = "points_credited") -> dict[str, Any]:
    params: dict[str, Any] = {"name": "李女士", "points": 100, "balance": 28700}
    if template == "member_day":
        params = {"name": "李女士", "perk": "双倍积分", "date": "12月8日"}
    return {
        "to": {"phone": phone},
        "channel": "sms",
        "brand": "星耀商城",
        "template": template,
        "params": params,
    }


def to_numbers(server: ProviderServer) -> list[str]:
    return [str(r.fields.get("PhoneNumbers", "")) for r in server.accepted()]


def post_all(c: httpx.Client, bodies: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in bodies:
        r = c.post("/v1/notify", json=b)
        assert r.status_code == 202, r.text
        out.append(r.json()["id"])
    return out


def test_the_51st_message_in_a_day_waits_and_the_provider_never_sees_it(
    alibaba: tuple[ProviderServer, int], stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    server, port = alibaba
    stack = stack_factory(providers_path=providers_file(tmp_path, port))
    with stack.client() as c:
        ids = post_all(c, [credited() for _ in range(51)])
        wait_for(lambda: len(server.accepted()) >= 50, timeout=30)

        def held() -> list[dict[str, Any]]:
            found = []
            for n in ids:
                body = c.get(f"/v1/notifications/{n}").json()
                if any(e.get("reason") == "provider_limit" for e in body["events"]):
                    found.append(body)
            return found

        late = wait_for(held, timeout=20)
        assert len(late) == 1 and late[0]["status"] == "queued"
        deferred = [e for e in late[0]["events"] if e["type"] == "deferred"]
        assert deferred and "limit for this number" in deferred[0]["detail"]
        assert late[0]["attempts"] == [] or all(a.get("provider") != "aliyun" for a in late[0]["attempts"])
        # Another template and another number still go: the count is per signature, template and number.
        post_all(c, [credited(template="member_day"), credited(phone="13700001111")])
        wait_for(lambda: len(server.accepted()) == 52, timeout=20)
    numbers = to_numbers(server)
    assert numbers.count("13812345678") == 51 and numbers.count("13700001111") == 1
    assert [r.fields.get("TemplateCode") for r in server.accepted()].count("SMS_1002") == 51
    first = [r for r in server.accepted() if r.fields.get("PhoneNumbers") == "13812345678"]
    assert [r.fields.get("TemplateCode") for r in first].count("SMS_1002") == 50


def test_over_quota_fail_ends_it_with_its_reason(
    alibaba: tuple[ProviderServer, int], stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    server, port = alibaba
    quota = (
        'over_quota = "fail"\n'
        'quotas = [{name = "per_number", scope = ["brand", "template", "to"], count = 3, seconds = 86400}]\n'
    )
    stack = stack_factory(providers_path=providers_file(tmp_path, port, quota))
    with stack.client() as c:
        ids = post_all(c, [credited() for _ in range(4)])

        def final() -> list[str]:
            got = [c.get(f"/v1/notifications/{n}").json()["status"] for n in ids]
            return got if all(s in ("sent", "delivered", "failed") for s in got) else []

        got = wait_for(final, timeout=20)
        assert sorted(got).count("failed") == 1
        failed = next(
            c.get(f"/v1/notifications/{n}").json() for n, s in zip(ids, got, strict=True) if s == "failed"
        )
        assert failed["reasons"][0]["code"] == "provider_limit" or any(
            e.get("reason") == "provider_limit" for e in failed["events"]
        )
    assert len(server.accepted()) == 3


def test_quotas_come_from_the_kind_and_a_file_can_turn_them_off_or_refuse_bad_ones(tmp_path: Path) -> None:
    router = load_router(providers_file(tmp_path, 1))
    assert router.providers["aliyun"].quotas[0] is SMS_DAILY
    assert load_router(providers_file(tmp_path, 1, "quotas = []\n")).providers["aliyun"].quotas == ()
    with pytest.raises(ProvidersError, match="scope is a list of"):
        load_router(
            providers_file(
                tmp_path, 1, 'quotas = [{name = "x", scope = ["phone"], count = 1, seconds = 60}]\n'
            )
        )


def test_a_second_call_to_one_number_within_a_minute_waits(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    server = ProviderServer("alibaba-voice")
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    try:
        path = tmp_path / "voice.toml"
        path.write_text(
            "[providers.calls]\n"
            f'url = "alibaba-voice+http://test-id:test-secret@127.0.0.1:{port}/?called_show_number=057100000000'
            '&tts_codes=points_credited:TTS_1002&tts_code=TTS_1000"\n'
            '[[routes.voice]]\nprovider = "calls"\n',
            encoding="utf-8",
        )
        stack = stack_factory(providers_path=str(path))
        set_clock(local(2026, 12, 2, 10, 0))  # outside the calls' quiet hours
        body = call(template="points_credited", params={"name": "李女士", "points": 100, "balance": 28700})
        with stack.client() as c:
            ids = post_all(c, [body, body])
            wait_for(lambda: len(server.accepted()) == 1, timeout=20)

            def limited() -> list[Any]:
                views = [c.get(f"/v1/notifications/{n}").json() for n in ids]
                return [v for v in views if any(e.get("reason") == "provider_limit" for e in v["events"])]

            late = wait_for(limited, timeout=20)
        assert len(late) == 1 and late[0]["status"] == "queued"
        time.sleep(0.5)
        assert len(server.accepted()) == 1  # the provider saw one call
    finally:
        thread.stop()


def test_a_message_whose_room_comes_after_it_expires_is_suppressed_as_expired_at_once(
    alibaba: tuple[ProviderServer, int], stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    server, port = alibaba
    quota = 'quotas = [{name = "daily", scope = ["brand", "template", "to"], count = 1, seconds = 86400}]\n'
    stack = stack_factory(providers_path=providers_file(tmp_path, port, quota))
    soon = datetime.now(UTC) + timedelta(minutes=10)
    with stack.client() as c:
        first, second = post_all(c, [credited(), {**credited(), "expires_at": soon.isoformat()}])

        def status(n: str) -> str:
            return str(c.get(f"/v1/notifications/{n}").json()["status"])

        wait_for(lambda: status(second) == "suppressed", timeout=20)
        body = c.get(f"/v1/notifications/{second}").json()
        assert body["reasons"][0]["code"] == "expired" and "after expires_at" in body["reasons"][0]["detail"]
        assert status(first) in ("sent", "delivered")
    assert len(server.accepted()) == 1
