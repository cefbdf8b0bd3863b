"""WeChat delivery receipts end to end: a subscribe message sent through the WeChat stand-in, then
WeChat's signed ``subscribe_msg_sent_event`` push settles it (delivered, undelivered with
ErrorStatus), a forged push changes nothing, and the URL check answers its echostr."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from channels.wechat import push_signature
from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from tests.conftest import Stack, statuses, wait_for
from tests.integration.test_providers import URLS
from tests.integration.test_wechat import OPENID, TEMPLATE, grant, notify, timeline
from tests.providers import ProviderServer

pytestmark = pytest.mark.integration

PUSH_TOKEN = "wx-push-token-0123"


@pytest.fixture
def routed(tmp_path: Path, stack_factory: Callable[..., Stack]) -> Iterator[tuple[ProviderServer, Stack]]:
    """A stack whose WeChat messages go to the WeChat stand-in, with a push Token configured."""
    server = ProviderServer("wechat", user="wx8f3c2a1b9d0e7f65", secret="app-secret-0123456789abcdef")
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    url = URLS["wechat"].format(user=server.user, secret=server.secret, port=port)
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[providers.wechat]\nurl = "{url}"\n[[routes.wechat]]\nprovider = "wechat"\n', encoding="utf-8"
    )
    yield server, stack_factory(providers_path=str(providers), wechat_push_token=PUSH_TOKEN)
    thread.stop()


def subscribe_message() -> dict[str, Any]:
    return {
        "to": {"wechat_openid": OPENID, "user_id": "m-1001"},
        "channel": "wechat",
        "brand": "星耀商城",
        "content": {
            "template_id": TEMPLATE,
            "page": "pages/points/index",
            "data": {"thing1": {"value": "积分到账提醒"}, "number2": {"value": "200"}},
        },
        "category": "transactional",
    }


def signed_query(token: str = PUSH_TOKEN, **extra: str) -> str:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    return urlencode(
        {
            "signature": push_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            **extra,
        }
    )


def push(stack: Stack, msgid: str, code: int, status: str, token: str = PUSH_TOKEN) -> httpx.Response:
    """WeChat's JSON push of one send's outcome (List as one object, as WeChat may send it)."""
    body = {
        "ToUserName": "gh_123456789abc",
        "FromUserName": OPENID,
        "CreateTime": "1764036005",
        "MsgType": "event",
        "Event": "subscribe_msg_sent_event",
        "SubscribeMsgSentEvent": {
            "List": {"TemplateId": TEMPLATE, "MsgID": msgid, "ErrorCode": code, "ErrorStatus": status}
        },
    }
    url = f"{stack.api_url}/v1/inbound/wechat/receipts?{signed_query(token)}"
    return httpx.post(url, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def push_xml(stack: Stack, msgid: str) -> httpx.Response:
    body = (
        "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName><CreateTime>1764036005</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>"
        f"<SubscribeMsgSentEvent><List><TemplateId><![CDATA[{TEMPLATE}]]></TemplateId>"
        f"<MsgID>{msgid}</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus>"
        "</List></SubscribeMsgSentEvent></xml>"
    )
    url = f"{stack.api_url}/v1/inbound/wechat/receipts?{signed_query()}"
    return httpx.post(url, content=body.encode(), headers={"content-type": "text/xml"})


def test_pushes_settle_wechat_sends_and_a_forged_one_changes_nothing(
    routed: tuple[ProviderServer, Stack],
) -> None:
    server, stack = routed
    grant(stack, OPENID, 3)
    ids = [notify(stack, subscribe_message()) for _ in range(3)]
    wait_for(lambda: statuses(stack, ids) == {"sent": 3}, timeout=15, interval=0.2)
    assert len(server.accepted()) == 3  # through the stand-in, not the simulator
    pmids = {i: str(timeline(stack, i)["provider_message_id"]) for i in ids}
    delivered, blocked, by_xml = ids
    assert all(p.isdigit() for p in pmids.values())  # WeChat's msgid

    # A push with a wrong signature (another Token) or none at all: 403, nothing changes.
    forged = push(stack, pmids[delivered], 0, "success", token="not-the-token")
    assert forged.status_code == 403 and forged.json()["code"] == "bad_signature"
    unsigned = httpx.post(f"{stack.api_url}/v1/inbound/wechat/receipts", content=b"{}")
    assert unsigned.status_code == 403
    assert statuses(stack, ids) == {"sent": 3}

    ok = push(stack, pmids[delivered], 0, "success")
    assert (ok.status_code, ok.text, ok.headers["content-type"].split(";")[0]) == (
        200,
        "success",
        "text/plain",
    )
    assert push(stack, pmids[blocked], 10005, "failed:user block").text == "success"
    assert push_xml(stack, pmids[by_xml]).text == "success"
    wait_for(lambda: statuses(stack, ids) == {"delivered": 2, "undelivered": 1}, timeout=10, interval=0.2)
    assert statuses(stack, [blocked]) == {"undelivered": 1}
    [receipt] = [e for e in timeline(stack, blocked)["events"] if e["type"] == "receipt"]
    assert (receipt["provider_code"], receipt["provider"]) == ("failed:user block", "wechat")
    assert receipt["provider_message_id"] == pmids[blocked]
    # A late "success" for the blocked one does not flip it.
    push(stack, pmids[blocked], 0, "success")
    assert statuses(stack, [blocked]) == {"undelivered": 1}


def test_the_push_url_check_answers_its_echostr_only_when_signed(
    routed: tuple[ProviderServer, Stack],
) -> None:
    _, stack = routed
    base = f"{stack.api_url}/v1/inbound/wechat/receipts"
    r = httpx.get(f"{base}?{signed_query(echostr='4375120948345356249')}")
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (
        200,
        "4375120948345356249",
        "text/plain",
    )
    assert httpx.get(f"{base}?{signed_query('wrong', echostr='43751')}").status_code == 403
    assert httpx.get(f"{stack.api_url}/v1/inbound/alibaba/receipts").status_code == 404  # no URL check
