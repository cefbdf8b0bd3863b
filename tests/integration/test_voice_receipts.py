"""Calls through the Alibaba and Tencent voice stand-ins, settled by the providers' own receipt pushes
on ``/v1/inbound/{provider}/receipts`` (real API, worker and Redis; the stand-ins check signatures)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.api.inbound import inbound_token
from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from gateway.timeutil import set_clock
from tests.conftest import Stack, statuses, wait_for
from tests.integration.test_providers import URLS
from tests.providers import ProviderServer

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(params=["alibaba-voice", "tencent-voice"])
def routed(
    request: pytest.FixtureRequest, tmp_path: Path, stack_factory: Callable[..., Stack]
) -> Iterator[tuple[str, ProviderServer, Stack]]:
    """A stack whose calls go out through one voice provider's stand-in."""
    kind = request.param
    server = ProviderServer(kind)
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    url = URLS[kind].format(user=server.user, secret=server.secret, port=port, account="")
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[providers."{kind}"]\nurl = "{url}"\n[[routes.voice]]\nprovider = "{kind}"\n', encoding="utf-8"
    )
    yield kind, server, stack_factory(providers_path=str(providers))
    thread.stop()


def report(kind: str, call_id: str, answered: bool) -> Any:
    """The provider's receipt for one call, shaped like its documented example."""
    if kind == "alibaba-voice":
        return [
            {
                "status_code": "200000" if answered else "200003",
                "callee": "138****5678",
                "duration": "12" if answered else "0",
                "voice_type": "voice",
                "originate_time": "2026-12-02 10:00:01",
                "end_time": "2026-12-02 10:00:20",
                "call_id": call_id,
                "caller": "057100000000",
                "status_msg": "执行完成",
                "out_id": "",
            }
        ]
    return {
        "voiceprompt_callback": {
            "result": "0" if answered else "1",
            "accept_time": "1796176801",
            "call_from": "",
            "callid": call_id,
            "end_calltime": "1796176820",
            "fee": "1",
            "mobile": "13812345678",
            "nationcode": "86",
            "start_calltime": "1796176790",
        }
    }


def post_report(stack: Stack, kind: str, body: Any, token: str | None = None) -> httpx.Response:
    query = {"tenant": "acme", "token": token or inbound_token(stack.settings.inbound_token, kind, "acme")}
    url = f"{stack.api_url}/v1/inbound/{kind}/receipts?{urlencode(query)}"
    return httpx.post(url, content=json.dumps(body, ensure_ascii=False).encode(), timeout=5)


def test_calls_go_through_the_provider_and_its_receipts_settle_them(
    routed: tuple[str, ProviderServer, Stack],
) -> None:
    kind, server, stack = routed
    set_clock(datetime(2026, 12, 2, 10, 0, tzinfo=SH).timestamp())
    body = {
        "channel": "voice",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "李女士", "points": 28600, "days": 12},
    }
    with stack.client() as c:
        ids = [
            c.post("/v1/notify", json={**body, "to": {"phone": f"1381234{i:04d}"}}).json()["id"]
            for i in range(2)
        ]
    wait_for(lambda: statuses(stack, ids) == {"sent": 2}, timeout=15, interval=0.2)
    sent = server.accepted()
    assert len(sent) == 2
    if kind == "alibaba-voice":
        assert {r.fields["CalledNumber"] for r in sent} == {"13812340000", "13812340001"}
        assert {r.fields["TtsCode"] for r in sent} == {"TTS_1001"}
    else:
        assert {r.fields["CalledNumber"] for r in sent} == {"+8613812340000", "+8613812340001"}
        assert {r.fields["SessionContext"] for r in sent} == {f"acme:{i}" for i in ids}
    with stack.client() as c:
        call_ids = {i: c.get(f"/v1/notifications/{i}").json()["provider_message_id"] for i in ids}
    answered, missed = ids
    ok = post_report(stack, kind, report(kind, call_ids[answered], True))
    assert ok.status_code == 200, ok.text
    assert ok.json() == (
        {"code": 0, "msg": "接收成功"} if kind == "alibaba-voice" else {"result": 0, "errmsg": "OK"}
    )
    assert post_report(stack, kind, report(kind, call_ids[missed], False)).status_code == 200
    wait_for(lambda: statuses(stack, ids) == {"delivered": 1, "undelivered": 1}, timeout=10, interval=0.2)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{missed}").json()
    [receipt] = [e for e in view["events"] if e["type"] == "receipt"]
    assert receipt["provider_code"] == ("200003" if kind == "alibaba-voice" else "result=1")
    # A forged push (wrong URL token) changes nothing.
    forged = post_report(stack, kind, report(kind, call_ids[missed], True), token="forged-token-0000")
    assert forged.status_code in (401, 403)
    assert statuses(stack, ids) == {"delivered": 1, "undelivered": 1}
