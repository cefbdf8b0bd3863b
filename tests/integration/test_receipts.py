"""Receipts from Alibaba, Tencent and Twilio in their own formats: delivered, undelivered, early,
duplicate, forged."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from channels.twilio import twilio_signature
from gateway.api.inbound import inbound_token
from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from tests.conftest import Stack, points_expiry, statuses, wait_for
from tests.integration.test_providers import URLS
from tests.providers import ProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture(params=["alibaba", "tencent", "twilio"])
def routed(
    request: pytest.FixtureRequest, tmp_path: Path, stack_factory: Callable[..., Stack]
) -> Iterator[tuple[str, ProviderServer, Stack]]:
    """A stack whose SMS go out through one provider's stand-in; no worker yet."""
    kind = request.param
    server = ProviderServer(kind)
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    url = URLS[kind].format(user=server.user, secret=server.secret, port=port, account="")
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[providers.{kind}]\nurl = "{url}"\n[[routes.sms]]\nprovider = "{kind}"\n', encoding="utf-8"
    )
    yield kind, server, stack_factory(workers=0, providers_path=str(providers))
    thread.stop()


def post_receipt(
    stack: Stack, kind: str, ntf_id: str, pmid: str, delivered: bool, token: str | None = None
) -> httpx.Response:
    """The provider's own receipt call for one message."""
    base = f"{stack.api_url}/v1/inbound/{kind}/receipts"
    if kind in ("alibaba", "tencent"):
        query = {
            "tenant": "acme",
            "token": token or inbound_token(stack.settings.inbound_token, kind, "acme"),
        }
        if kind == "alibaba":
            body = [
                {
                    "phone_number": "13812345678",
                    "success": delivered,
                    "biz_id": pmid,
                    "out_id": f"acme:{ntf_id}",
                    "err_code": "DELIVERED" if delivered else "MK:0001",
                    "err_msg": "用户接收成功",
                    "report_time": "2026-11-25 10:00:05",
                }
            ]
        else:
            body = [
                {
                    "report_status": "SUCCESS" if delivered else "FAIL",
                    "sid": pmid,
                    "mobile": "13812345678",
                    "errmsg": "DELIVRD" if delivered else "MK:0001",
                    "user_receive_time": "2026-11-25 10:00:05",
                }
            ]
        return httpx.post(f"{base}?{urlencode(query)}", content=json.dumps(body).encode(), timeout=5)
    url = f"{base}?{urlencode({'ref': f'acme:{ntf_id}'})}"
    form = {
        "MessageSid": pmid,
        "MessageStatus": "delivered" if delivered else "undelivered",
        "To": "+8613812345678",
    }
    if not delivered:
        form["ErrorCode"] = "30003"
    sig = twilio_signature(token or stack.settings.twilio_auth_token, url, form)
    return httpx.post(url, data=form, headers={"x-twilio-signature": sig}, timeout=5)


def test_receipts_settle_sent_messages_once_and_ignore_ones_never_sent(
    routed: tuple[str, ProviderServer, Stack],
) -> None:
    kind, server, stack = routed
    with stack.client() as c:
        ids = [
            c.post("/v1/notify", json=points_expiry(phone=f"1381234{i:04d}")).json()["id"] for i in range(2)
        ]
    delivered, failed = ids
    # Nothing was sent yet: a receipt naming it is not believed.
    if kind != "tencent":  # Tencent's receipt names only its own message id, known once sent
        assert post_receipt(stack, kind, delivered, "pm-never", True).status_code == 200
        assert statuses(stack, ids) == {"queued": 2}
    stack.start_worker()
    wait_for(lambda: statuses(stack, ids) == {"sent": 2}, timeout=15, interval=0.2)
    with stack.client() as c:
        pmids = {i: c.get(f"/v1/notifications/{i}").json()["provider_message_id"] for i in ids}
    assert post_receipt(stack, kind, delivered, pmids[delivered], True).status_code == 200
    # The carrier could not deliver the other, with its code; the same receipt twice counts once.
    for _ in range(2):
        assert post_receipt(stack, kind, failed, pmids[failed], False).status_code == 200
    wait_for(lambda: statuses(stack, ids) == {"delivered": 1, "undelivered": 1}, timeout=10, interval=0.2)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{failed}").json()
    receipts = [e for e in view["events"] if e["type"] == "receipt"]
    assert len(receipts) == 1 and receipts[0]["provider_code"] in ("MK:0001", "30003")
    # A late "delivered" after "undelivered" does not flip it.
    post_receipt(stack, kind, failed, pmids[failed], True)
    assert statuses(stack, [failed]) == {"undelivered": 1}
    assert len(server.received) == 2  # one send each, nothing sent again


def test_a_receipt_for_a_send_that_timed_out_settles_it_and_the_retry_sends_nothing(
    tmp_path: Path, stack_factory: Callable[..., Stack]
) -> None:
    server = ProviderServer("alibaba", delay=1.5)  # slower than the 1 s time-out, but it does send
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    try:
        url = URLS["alibaba"].format(user=server.user, secret=server.secret, port=port, account="")
        providers = tmp_path / "providers.toml"
        providers.write_text(
            f'[providers.alibaba]\nurl = "{url}"\ntimeout = 1.0\n[[routes.sms]]\nprovider = "alibaba"\n',
            encoding="utf-8",
        )
        stack = stack_factory(providers_path=str(providers), retry_base_seconds=6.0, retry_max_seconds=6.0)
        with stack.client() as c:
            ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]
        wait_for(lambda: len(server.accepted()) == 1, timeout=10, interval=0.1)
        wait_for(lambda: statuses(stack, [ntf_id]) == {"queued": 1}, timeout=5, interval=0.1)  # retry pending
        assert post_receipt(stack, "alibaba", ntf_id, "biz-1", True).status_code == 200
        assert statuses(stack, [ntf_id]) == {"delivered": 1}
        import time

        time.sleep(7)  # past the retry's time: it finds the notification settled
        assert len(server.received) == 1 and statuses(stack, [ntf_id]) == {"delivered": 1}
    finally:
        thread.stop()


def test_a_forged_receipt_is_refused(routed: tuple[str, ProviderServer, Stack]) -> None:
    kind, _, stack = routed
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]
    r = post_receipt(stack, kind, ntf_id, "pm-x", True, token="forged-token-0000")
    assert r.status_code == 403
    assert statuses(stack, [ntf_id]) == {"queued": 1}
