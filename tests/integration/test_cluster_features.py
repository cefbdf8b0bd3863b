"""The rest of the gateway on a Redis Cluster (tenant keys in one slot, rq on its own Redis): webhooks
out through the dispatcher, a TD reply's opt-out, a reminder series released and ended, a
verification code approved, a tracked link's click."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.api.servers import ServerThread
from gateway.state.localcluster import LocalCluster
from gateway.state.redisdb import EmbeddedRedis, free_port
from tests.conftest import build_stack, points_expiry, wait_for
from tests.integration.test_links import TARGET, clicks, countdown, tap
from tests.integration.test_series import SH, quick_definition, redeem, start
from tests.integration.test_verifications import received_code
from tests.integration.test_verifications import start as start_verification
from tests.integration.test_webhooks import Receiver, of_type, reply, subscribe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def queue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("rq"))
    url = server.start()
    yield url
    server.stop()


def test_webhooks_replies_and_series_on_a_cluster(
    redis_cluster: LocalCluster, queue_redis: str, tmp_path: Path, quiet_off_policy: str
) -> None:
    app = Receiver()
    hooks = ServerThread(app, "127.0.0.1", free_port()).start_and_wait()
    stack = build_stack(redis_cluster.url, tmp_path, quiet_off_policy, queue_redis_url=queue_redis)
    try:
        subscribe(stack, f"{hooks.url}/hooks", ["*"])
        with stack.client() as c:
            sent = c.post("/v1/notify", json=points_expiry(phone="13812347001"))
            assert sent.status_code == 202, sent.text
            delivered = wait_for(lambda: of_type(app, "notification.delivered"), timeout=20)
            assert delivered[0]["data"]["notification_id"] == sent.json()["id"]
            reply(stack, "+8613812347001", "TD")
            wait_for(lambda: of_type(app, "optout.created"), timeout=10)
            assert (
                c.post("/v1/notify", json=points_expiry(phone="13812347001")).json()["status"] == "suppressed"
            )

            r = c.put("/v1/series-definitions/quick", json=quick_definition("-PT9S", "-PT6S", "-PT3S"))
            assert r.status_code == 201, r.text
            started = start(c, "13812348001", "quick", datetime.now(SH) + timedelta(seconds=10), key="k-1")
            assert started.status_code == 201, started.text
            series = started.json()
            assert len(wait_for(lambda: stack.messages("+8613812348001"), timeout=15)) == 1
            assert redeem(c, "13812348001") == [series["id"]]
            time.sleep(7)  # past the other two steps' times
            assert len(stack.messages("+8613812348001")) == 1
            view = c.get(f"/v1/series/{series['id']}").json()
            assert view["status"] == "exited"
            assert [s["status"] for s in view["steps"]] == ["sent", "cancelled", "cancelled"]
    finally:
        stack.stop()
        hooks.stop()


def test_verifications_and_tracked_links_on_a_cluster(
    redis_cluster: LocalCluster, queue_redis: str, tmp_path: Path, quiet_off_policy: str
) -> None:
    stack = build_stack(redis_cluster.url, tmp_path, quiet_off_policy, queue_redis_url=queue_redis)
    try:
        with stack.client() as c:
            ver = start_verification(c)
            assert ver.status_code == 201, ver.text
            code = received_code(stack, "13812345678")
            check = {"to": {"phone": "13812345678"}, "purpose": "redeem", "code": code}
            assert c.post("/v1/verifications/check", json=check).json()["status"] == "approved"

            sent = c.post("/v1/notify", json=countdown("13812349001"))
            assert sent.status_code == 202, sent.text
        wait_for(lambda: stack.messages("+8613812349001"), timeout=15)
        first = tap(stack, "+8613812349001")
        assert first["status"] == 302 and first["location"] == TARGET
        got = wait_for(lambda: clicks(stack, sent.json()["id"]), timeout=10)
        assert len(got) == 1 and got[0]["first"] is True
    finally:
        stack.stop()
