"""Exact counter values after a scripted scenario, on the API's /metrics and the worker's own port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.state.redisdb import free_port
from tests.conftest import API_KEY, QUIET_OFF_POLICY, ROOT, TENANT, make_key, points_expiry, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Procs:
    api: str
    worker_metrics: str
    sim: str
    client: httpx.Client


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def procs(redis_url: str, rdb: redis.Redis, tmp_path: Path) -> Iterator[Procs]:
    """API, one worker and the simulator as their own processes: counters start at zero."""
    yield from start_procs(redis_url, tmp_path, "WARNING")


@pytest.fixture
def debug_procs(redis_url: str, rdb: redis.Redis, tmp_path: Path) -> Iterator[Procs]:
    """The same, logging everything (DEBUG): what the secrecy test greps."""
    yield from start_procs(redis_url, tmp_path, "DEBUG")


def start_procs(redis_url: str, tmp_path: Path, level: str) -> Iterator[Procs]:
    """Start the processes; stop them when the generator is closed."""
    policy = tmp_path / "policy.toml"
    policy.write_text(QUIET_OFF_POLICY, encoding="utf-8")
    api_port, sim_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": redis_url,
        "TIDINGS_POLICY_PATH": str(policy),
        "TIDINGS_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
        "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "TIDINGS_AUDIT_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
        "TIDINGS_WORKER_METRICS_PORT": str(metrics_port),
        "TIDINGS_HOUSEKEEPING_INTERVAL_SECONDS": "0.1",
        "TIDINGS_LOG_LEVEL": level,
        "TIDINGS_LOG_FORMAT": "json",
    }
    make_key(redis_url, API_KEY, TENANT, ["notify", "optouts", "templates", "audit:read"])
    cli = [sys.executable, "-m", "gateway.cli"]
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("api", "worker")}  # noqa: SIM115
    started = [
        subprocess.Popen([*cli, "serve", "--port", str(api_port)], cwd=ROOT, env=env, stderr=logs["api"]),
        subprocess.Popen([*cli, "simulator", "--port", str(sim_port)], cwd=ROOT, env=env),
        subprocess.Popen([*cli, "worker"], cwd=ROOT, env=env, stderr=logs["worker"]),
    ]
    p = Procs(
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{metrics_port}",
        f"http://127.0.0.1:{sim_port}",
        httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        ),
    )
    try:
        for url in (f"{p.api}/healthz", f"{p.sim}/healthz", f"{p.worker_metrics}/metrics"):
            wait_for(lambda url=url: _up(url), timeout=30)
        yield p
    finally:
        p.client.close()
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(10)
        for fh in logs.values():
            fh.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def status(p: Procs, ntf_id: str) -> str:
    return str(p.client.get(f"/v1/notifications/{ntf_id}").json()["status"])


def test_a_scripted_scenario_gives_exact_counters_on_both_endpoints(procs: Procs) -> None:
    p = procs
    # Five deliveries.
    delivered = [
        p.client.post("/v1/notify", json=points_expiry(f"1380013{i:04d}")).json()["id"] for i in range(5)
    ]
    wait_for(lambda: all(status(p, i) == "delivered" for i in delivered), timeout=20)
    # Two failures: the provider refuses the numbers.
    httpx.post(
        f"{p.sim}/faults", json={"channel": "sms", "error_rate": 1.0, "mode": "reject_number"}
    ).raise_for_status()
    failed = [
        p.client.post("/v1/notify", json=points_expiry(f"1390013{i:04d}")).json()["id"] for i in range(2)
    ]
    wait_for(lambda: all(status(p, i) == "failed" for i in failed), timeout=20)
    httpx.delete(f"{p.sim}/faults").raise_for_status()
    # A block: banned wording.
    blocked = p.client.post(
        "/v1/notify",
        json={
            "to": {"phone": "13700137000"},
            "channel": "sms",
            "brand": "星耀商城",
            "content": {"text": "【星耀商城】全网最低价 拒收请回复R"},
        },
    )
    assert blocked.status_code == 422
    # An opt-out, then a message to that member: suppressed.
    assert p.client.put("/v1/optouts/13600136000", json={"reason": "客服来电要求"}).status_code == 200
    suppressed = p.client.post("/v1/notify", json=points_expiry("13600136000"))
    assert suppressed.json()["status"] == "suppressed"

    api = samples(f"{p.api}/metrics")
    worker = samples(f"{p.worker_metrics}/metrics")
    sms = {"channel": "sms"}
    # The API: what was accepted and why, receipts, opt-outs, state read from Redis.
    assert (
        value(api, "tidings_notifications_accepted_total", **sms, category="marketing", status="queued") == 7
    )
    assert (
        value(api, "tidings_notifications_accepted_total", **sms, category="marketing", status="suppressed")
        == 1
    )
    assert (
        value(api, "tidings_notifications_accepted_total", **sms, category="marketing", status="rejected")
        == 1
    )
    assert value(api, "tidings_compliance_decisions_total", rule="wording", outcome="reject") == 1
    assert value(api, "tidings_compliance_decisions_total", rule="opt_out", outcome="suppress") == 1
    assert value(api, "tidings_receipts_total", **sms, provider="simulator", status="delivered") == 5
    assert value(api, "tidings_receipts_total", **sms, provider="simulator", status="undelivered") == 0
    assert value(api, "tidings_receipt_latency_seconds_count", **sms, provider="simulator") == 5
    assert value(api, "tidings_notifications_total", **sms, status="delivered") == 5
    assert value(api, "tidings_optouts_total", source="api") == 1
    assert value(api, "tidings_optouts_total", source="sms_reply") == 0
    assert value(api, "tidings_queue_depth", queue="tidings-sms") == 0
    assert value(api, "tidings_queue_oldest_age_seconds", queue="tidings-sms") == 0
    assert value(api, "tidings_dead_letters") == 0
    assert (
        "tidings_sends_total",
        frozenset({**sms, "provider": "simulator", "outcome": "sent"}.items()),
    ) in api
    assert (
        value(api, "tidings_sends_total", **sms, provider="simulator", outcome="sent") == 0
    )  # sends are the worker's
    # The worker: its own sends.
    assert value(worker, "tidings_sends_total", **sms, provider="simulator", outcome="sent") == 5
    assert value(worker, "tidings_sends_total", **sms, provider="simulator", outcome="rejected") == 2
    assert value(worker, "tidings_sends_total", **sms, provider="simulator", outcome="retry") == 0
    assert value(worker, "tidings_retries_total", **sms, provider="simulator") == 0
    assert value(worker, "tidings_send_duration_seconds_count", **sms, provider="simulator") == 7
    assert value(worker, "tidings_notifications_total", **sms, status="sent") == 5
    assert value(worker, "tidings_notifications_total", **sms, status="failed") == 2
    assert value(worker, "tidings_dead_lettered_total", **sms) == 0
    for text in (httpx.get(f"{p.api}/metrics").text, httpx.get(f"{p.worker_metrics}/metrics").text):
        assert "1380013" not in text and "ntf_" not in text and "13600136000" not in text


def test_json_logs_carry_request_and_notification_ids_and_no_plain_number(
    procs: Procs, tmp_path: Path
) -> None:
    """The fixture's processes log JSON to files; a refused callback and a failed send show up."""
    p = procs
    httpx.post(
        f"{p.sim}/faults", json={"channel": "sms", "error_rate": 1.0, "mode": "reject_number"}
    ).raise_for_status()
    failed = p.client.post("/v1/notify", json=points_expiry("13912345678")).json()["id"]
    wait_for(lambda: status(p, failed) == "failed", timeout=20)
    httpx.delete(f"{p.sim}/faults").raise_for_status()
    forged = httpx.post(
        f"{p.api}/v1/inbound/simulator/replies",
        json={"from": "+8613912345678", "text": "TD"},
        headers={"X-Request-Id": "upstream-req-42"},
    )
    assert forged.status_code in (401, 403) and forged.headers["x-request-id"] == "upstream-req-42"
    made_up = p.client.get("/v1/optouts/13912345678")
    assert made_up.headers["x-request-id"]
    lines: list[dict[str, object]] = []
    wait_for(
        lambda: _logs(tmp_path, lines) and any(x.get("notification_id") == failed for x in lines), timeout=10
    )
    assert any(x.get("request_id") == "upstream-req-42" and x["level"] == "warning" for x in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    text = "\n".join(f.read_text(encoding="utf-8") for f in tmp_path.glob("*.log"))
    for form in ("13912345678", "+8613912345678", "139 1234 5678"):
        assert form not in text, form


def _logs(tmp_path: Path, into: list[dict[str, object]]) -> bool:
    into.clear()
    for f in tmp_path.glob("*.log"):
        for line in f.read_text(encoding="utf-8").splitlines():
            into.append(json.loads(line))  # every line is one JSON object
    return bool(into)


SECRETS = {
    "API key": API_KEY,
    "simulator secret": "dev-simulator-secret",
    "HMAC key": "dev-hmac-key-change-me",
    "inbound token": "dev-inbound-token",
    "Twilio auth token": "dev-twilio-auth-token",
}


def test_a_full_scenario_logged_at_debug_holds_no_secret_and_no_plain_number(
    debug_procs: Procs, tmp_path: Path
) -> None:
    p = debug_procs
    phones = ["13812340001", "13812340002", "13812340003", "13812340004"]
    delivered = p.client.post("/v1/notify", json=points_expiry(phones[0])).json()["id"]
    wait_for(lambda: status(p, delivered) == "delivered", timeout=20)
    httpx.post(
        f"{p.sim}/replies", json={"from": f"+86{phones[0]}", "text": "TD", "brand": "星耀商城"}
    ).raise_for_status()
    wait_for(lambda: p.client.get(f"/v1/optouts/{phones[0]}").json()["opted_out"], timeout=10)
    p.client.put(f"/v1/optouts/{phones[1]}", json={"reason": f"会员来电 {phones[1]}"})
    p.client.request(
        "DELETE", f"/v1/optouts/{phones[1]}", json={"consent_evidence": f"回访 {phones[1]} 同意"}
    )
    p.client.post(
        "/v1/optouts/import",
        content=f"address,brand,channel\n{phones[2]},,\n",
        headers={"Content-Type": "text/csv"},
    )
    httpx.post(
        f"{p.sim}/faults", json={"channel": "sms", "error_rate": 1.0, "mode": "reject_number"}
    ).raise_for_status()
    failed = p.client.post("/v1/notify", json=points_expiry(phones[3])).json()["id"]
    wait_for(lambda: status(p, failed) == "failed", timeout=20)
    httpx.delete(f"{p.sim}/faults").raise_for_status()
    p.client.post(
        "/v1/notify", json={**points_expiry(phones[3]), "content": {"text": "全网最低价"}, "template": None}
    )
    p.client.get("/v1/audit/events", params={"address": phones[0]})
    httpx.post(f"{p.api}/v1/inbound/simulator/replies", json={"from": phones[3], "text": "TD"})  # forged
    httpx.get(f"{p.api}/v1/notifications/{delivered}", headers={"Authorization": "Bearer wrong-key-123"})
    text = "\n".join(f.read_text(encoding="utf-8") for f in tmp_path.glob("*.log"))
    assert len(text.splitlines()) > 20  # DEBUG really logged the scenario
    for phone in phones:
        for form in (phone, f"+86{phone}", f"{phone[:3]} {phone[3:7]} {phone[7:]}"):
            assert form not in text, form
    for name, secret in SECRETS.items():
        assert secret not in text, name
