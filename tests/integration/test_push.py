"""Push through FCM (a stand-in checking the service account's JWT): dead tokens, fallback to SMS."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from tests.conftest import Stack, statuses, wait_for
from tests.integration.test_providers import rsa_pem
from tests.providers import BAD_NUMBER, ProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture
def fcm(tmp_path: Path) -> Iterator[tuple[ProviderServer, str]]:
    """An FCM stand-in and a providers file routing push to it."""
    server = ProviderServer("fcm", user="tidings@tidings-test.iam.gserviceaccount.com", secret=rsa_pem())
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    account = tmp_path / "firebase.json"
    account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "tidings-test",
                "private_key_id": "k1",
                "private_key": server.secret,
                "client_email": server.user,
                "token_uri": f"http://127.0.0.1:{port}/token",
            }
        )
    )
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[providers.fcm]\nurl = "fcm+http://127.0.0.1:{port}/?service_account={account}"\n'
        '[[routes.push]]\nprovider = "fcm"\n',
        encoding="utf-8",
    )
    yield server, str(providers)
    thread.stop()


def with_simulator_for_sms(stack_factory: Callable[..., Stack], providers: str) -> Stack:
    """A stack whose worker sends push through FCM and SMS through the stack's own simulator."""
    stack = stack_factory(workers=0, providers_path=providers)
    secret = stack.settings.simulator_secret
    with open(providers, "a", encoding="utf-8") as fh:
        fh.write(
            f'[providers.sim]\nurl = "simulator+{stack.sim_url.replace("http://", f"http://:{secret}@")}"\n'
        )
        fh.write('[[routes.sms]]\nprovider = "sim"\n')
    stack.start_worker()
    return stack


def push(token: str) -> dict[str, object]:
    return {
        "to": {"push_token": token, "phone": "13812345678"},
        "channel": "push",
        "category": "transactional",
        "brand": "星耀商城",
        "template": "points_credited",
        "params": {"name": "李女士", "points": 100, "balance": 28700},
    }


def test_an_unregistered_token_fails_once_is_not_retried_and_is_refused_afterwards(
    fcm: tuple[ProviderServer, str], stack_factory: Callable[..., Stack]
) -> None:
    server, providers = fcm
    stack = stack_factory(providers_path=providers)
    with stack.client() as c:
        dead = c.post("/v1/notify", json=push(BAD_NUMBER)).json()["id"]
        live = c.post("/v1/notify", json=push("fcm-token-live-1")).json()["id"]
    wait_for(lambda: statuses(stack, [dead, live]) == {"failed": 1, "sent": 1}, timeout=15, interval=0.2)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{dead}").json()
        assert [a["error_code"] for a in view["attempts"]] == ["UNREGISTERED"]
        assert view["error_code"] == "provider_rejected"
        again = c.post("/v1/notify", json=push(BAD_NUMBER))
        assert again.status_code == 422 and again.json()["code"] == "invalid_recipient"
    # One request for the dead token (no retry), one for the live one, one OAuth token for both.
    assert len(server.received) == 2 and server.token_requests == 1


def test_a_push_that_fails_permanently_falls_back_to_sms_unless_the_member_opted_out_of_sms(
    fcm: tuple[ProviderServer, str], stack_factory: Callable[..., Stack]
) -> None:
    _, providers = fcm
    stack = with_simulator_for_sms(stack_factory, providers)
    with stack.client() as c:
        # Member 1: the push token is dead; the request asks for SMS next.
        first = c.post("/v1/notify", json={**push("dead-token-1"), "fallback": ["sms"]}).json()["id"]
        # Member 2 opted out of SMS (every brand): the fallback must not text them.
        put = c.put("/v1/optouts/13900001111", json={"channel": "sms", "reason": "member asked"})
        assert put.status_code == 200, put.text
        body = {**push("dead-token-2"), "fallback": ["sms"]}
        body["to"] = {"push_token": "dead-token-2", "phone": "13900001111"}
        second = c.post("/v1/notify", json=body).json()["id"]

    def fallback_event(ntf_id: str) -> dict[str, object] | None:
        with stack.client() as c:
            events = c.get(f"/v1/notifications/{ntf_id}").json()["events"]
        return next((e for e in events if e["type"] == "fallback"), None)

    wait_for(lambda: fallback_event(first) and fallback_event(second), timeout=15, interval=0.2)
    went = fallback_event(first)
    assert went is not None and (went["channel"], went["status"]) == ("sms", "queued")
    sms_id = str(went["id"])
    wait_for(lambda: statuses(stack, [sms_id]) == {"delivered": 1}, timeout=15, interval=0.2)
    [texted] = stack.messages("+8613812345678")
    assert texted["channel"] == "sms" and "100积分" in texted["text"] and texted["reference"].endswith(sms_id)
    with stack.client() as c:
        sms = c.get(f"/v1/notifications/{sms_id}").json()
        assert sms["channel"] == "sms" and sms["metadata"]["fallback_of"] == first
        assert c.get(f"/v1/notifications/{first}").json()["status"] == "failed"

    held = fallback_event(second)
    assert held is not None and (held["channel"], held["status"]) == ("sms", "suppressed")
    assert [r["code"] for r in held["reasons"]] == ["opted_out"]  # type: ignore[union-attr]
    assert stack.messages("+8613900001111") == []
