"""Keys from the CLI, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from gateway.state import keys
from tests.conftest import ROOT, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration


def test_keys_create_prints_a_working_key_once_and_stores_only_its_hash(stack: Stack, rdb: object) -> None:
    env = {**os.environ, "TIDINGS_REDIS_URL": stack.redis_url}
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "create", "--tenant", "acme", "--scopes", "notify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("tid_") and len(key) > 40
    stored = [k.decode() for k in rdb.keys("tid:apikey:*")]  # type: ignore[attr-defined]
    assert all(key not in k for k in stored)
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.post("/v1/notify", json=points_expiry()).status_code == 202
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "keys",
            "create",
            "--tenant",
            "Bad Tenant!",
            "--scopes",
            "notify",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "tenant must match" in bad.stderr


def test_readyz_needs_a_worker(stack_factory: object) -> None:
    stack = stack_factory(workers=0)  # type: ignore[operator]
    assert httpx.get(f"{stack.api_url}/readyz").status_code == 503
    assert httpx.get(f"{stack.api_url}/healthz").status_code == 200
    stack.start_worker()
    wait_for(lambda: httpx.get(f"{stack.api_url}/readyz").status_code == 200, timeout=5)


def test_metrics_after_a_delivery(stack: Stack) -> None:
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]
        wait_for(lambda: c.get(f"/v1/notifications/{ntf_id}").json()["status"] == "delivered", timeout=5)
    text = httpx.get(f"{stack.api_url}/metrics").text
    for needle in (
        'tidings_notifications_total{channel="sms",status="queued"}',
        'tidings_notifications_total{channel="sms",status="delivered"}',
        'tidings_sends_total{channel="sms",outcome="sent",provider="simulator"}',
        'tidings_send_duration_seconds_bucket{channel="sms",le="0.1",provider="simulator"}',
        f'tidings_queue_depth{{queue="{keys.queue_name("sms")}"}}',
    ):
        assert needle in text, needle
    assert "13812345678" not in text and "ntf_" not in text


def test_openapi_documents_the_contract(stack: Stack) -> None:
    doc = httpx.get(f"{stack.api_url}/schema/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/notify",
        "/v1/notify/batch",
        "/v1/notifications/{ntf_id}",
        "/v1/notifications/{ntf_id}/cancel",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert "NotifyRequest" in str(doc["components"]["schemas"])
    notify = paths["/v1/notify"]["post"]["responses"]
    for status in ("202", "200"):
        assert notify[status]["content"]["application/json"]["schema"]["$ref"].endswith("/NotifyResult")
    batch = paths["/v1/notify/batch"]["post"]["responses"]["200"]
    assert batch["content"]["application/json"]["schema"]["$ref"].endswith("/BatchResults")
    assert "index" in doc["components"]["schemas"]["BatchResult"]["properties"]
