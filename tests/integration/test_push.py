"""Push through FCM (a stand-in checking the service account's JWT): dead tokens, fallback to SMS."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.redisdb import free_port
from gateway.servers import ServerThread
from tests.conftest import Stack, statuses, wait_for
from tests.integration.test_providers import rsa_pem
from tests.providers import BAD_NUMBER, ProviderServer

pytestmark = pytest.mark.integration


@pytest.fixture
def fcm(tmp_path: Path) -> Iterator[tuple[ProviderServer, str]]:
    """An FCM stand-in and a providers file routing push to it (SMS to the simulator)."""
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
