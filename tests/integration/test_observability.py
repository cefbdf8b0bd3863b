"""The ops files checked with real tools: promtool, a real Prometheus, the dashboard against live metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.state.redisdb import free_port
from tests.conftest import QUIET_OFF_POLICY, ROOT, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration

OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "tidings.rules.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "tidings.json"
METRIC = re.compile(r"tidings[_:][A-Za-z0-9_:]*")


def tool(name: str) -> str:
    """A Prometheus tool from Debian's package; .ci/run installs it and sets OPS_TOOLS_REQUIRED."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("OPS_TOOLS_REQUIRED"):
            raise AssertionError(f"{name} is not installed (apt-get install prometheus)")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=60, cwd=OPS)


def test_promtool_accepts_the_config_and_rules_and_every_alert_has_a_firing_and_a_quiet_test() -> None:
    promtool = tool("promtool")
    for args in (
        ("check", "config", "prometheus/prometheus.yml"),
        ("check", "rules", "prometheus/tidings.rules.yml"),
        ("test", "rules", "prometheus/tidings.rules.test.yml"),
    ):
        done = run(promtool, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    alerts = {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    assert alerts == {
        "TidingsDeliveryRateLow",
        "TidingsOptOutRateHigh",
        "TidingsComplaintRateHigh",
        "TidingsQueueStale",
        "TidingsDeadLettersGrowing",
        "TidingsProviderCircuitOpen",
    }
    cases = yaml.safe_load((OPS / "prometheus" / "tidings.rules.test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == alerts and quiet == alerts
    runbook = (OPS / "README.md").read_text()
    for alert in alerts:
        assert f"### {alert}" in runbook, alert


def exposed(stack: Stack) -> set[str]:
    """Metric names on a live /metrics after a delivery (API and worker share the process here)."""
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]
        wait_for(lambda: c.get(f"/v1/notifications/{ntf_id}").json()["status"] == "delivered", timeout=10)
        c.put("/v1/optouts/13812340000", json={})
        # A series started and cancelled: the three series counters get their first samples.
        anchor = (datetime.now(UTC) + timedelta(days=40)).isoformat()
        started = c.post(
            "/v1/series",
            json={
                "definition": "points_expiry",
                "to": {"phone": "13812340001"},
                "brand": "星耀商城",
                "anchor_at": anchor,
                "params": {"name": "李女士", "points": 1200},
            },
        )
        assert started.status_code == 201, started.text
        assert c.post(f"/v1/series/{started.json()['id']}/cancel").status_code == 200
    text = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    promtool = tool("promtool")
    exposed(stack)
    text = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    done = run(promtool, "check", "metrics", stdin=text)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tidings_sends_total" in text and "tidings_queue_oldest_age_seconds" in text


def test_dashboard_panels_query_metrics_the_code_exposes_and_the_runbook_names_real_panels(
    stack: Stack,
) -> None:
    names = exposed(stack)
    recorded = {
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r
    }
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert len(titles) == len(dashboard["panels"]) >= 10
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]  # a row heads the panels below it
    assert {r["title"] for r in rows} == {"Series", "Engagement"} and all(not r.get("targets") for r in rows)
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(METRIC.findall(target["expr"]))
            assert used, (panel["title"], target["expr"])
            unknown = used - names - recorded
            assert not unknown, (panel["title"], unknown)
    # Rules use exposed metrics too.
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            unknown = set(METRIC.findall(rule["expr"])) - names - recorded
            assert not unknown, (rule.get("record") or rule.get("alert"), unknown)
    # Every panel the runbook sends an SRE to exists.
    named = set(re.findall(r"\*\*([^*]+)\*\*", (OPS / "README.md").read_text())) - {dashboard["title"]}
    assert named and named <= titles, named - titles
    assert "Delivery rate by channel and provider" in named


def test_the_compose_stack_and_image_are_complete() -> None:
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "api", "worker", "prometheus", "grafana"} <= set(services)
    assert "--appendonly" in services["redis"]["command"] and "everysec" in services["redis"]["command"]
    assert services["api"]["command"][0] == "serve" and services["worker"]["command"][0] == "worker"
    assert services["worker"]["environment"]["TIDINGS_WORKER_METRICS_PORT"] == "9101"
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            host = volume.split(":")[0]
            assert (OPS / host).exists(), volume
    prometheus = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in prometheus["scrape_configs"]}
    assert jobs == {"tidings-api", "tidings-worker"}
    datasource = yaml.safe_load((OPS / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER tidings$", dockerfile, re.M) and "HEALTHCHECK" in dockerfile
    assert 'CMD ["serve"' in dockerfile


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`tidings dev` on free ports: (API URL, simulator URL)."""
    api_port, sim_port = free_port(), free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(QUIET_OFF_POLICY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(TIDINGS_POLICY_PATH=str(policy), TIDINGS_LOG_LEVEL="WARNING")
    cmd = [sys.executable, "-m", "gateway.cli", "dev", "--port", str(api_port), "--sim-port", str(sim_port)]
    proc = subprocess.Popen([*cmd, "--data-dir", str(tmp_path / "var")], cwd=ROOT, env=env)
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    try:
        wait_for(lambda: _ok(f"{api}/readyz") and _ok(f"{sim}/healthz"), timeout=30)
        yield api, sim
    finally:
        proc.terminate()
        proc.wait(15)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_a_real_prometheus_records_the_delivery_rate_the_scenario_produced(
    dev: tuple[str, str], tmp_path: Path
) -> None:
    prometheus = tool("prometheus")
    api, sim = dev
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "tidings-dev",
                        "static_configs": [{"targets": [api.removeprefix("http://")]}],
                    }
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = f"http://127.0.0.1:{port}/api/v1/query"
    try:

        def value(expr: str) -> float | None:
            try:
                result = httpx.get(query, params={"query": expr}, timeout=2).json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                return None
            return float(result[0]["value"][1]) if result else None

        # Two scrapes of the zeroed series before anything is sent.
        wait_for(
            lambda: (
                (value('count_over_time(tidings_sends_total{channel="sms",outcome="sent"}[1m])') or 0) >= 2
            ),
            timeout=30,
        )
        # Ten SMS: eight to working phones, two to numbers the simulator reports switched off.
        headers = {"Authorization": "Bearer dev-key"}
        phones = [f"1380000{i:04d}" for i in range(8)] + ["13900000001", "13900000002"]
        ids = []
        for phone in phones:
            # The countdown copy carries a tracked link (engagement rates below).
            body = points_expiry(
                phone, template="points_expiry_countdown", params={"name": "李女士", "points": 800, "days": 3}
            )
            r = httpx.post(f"{api}/v1/notify", json=body, headers=headers, timeout=10)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

        def final() -> bool:
            found = [httpx.get(f"{api}/v1/notifications/{i}", headers=headers).json()["status"] for i in ids]
            return sorted(found) == ["delivered"] * 8 + ["undelivered"] * 2

        wait_for(final, timeout=30)
        rate = 'tidings:delivery_rate:ratio_rate15m{channel="sms",provider="simulator"}'
        # Once Prometheus has scraped the final counters and evaluated the rule: 8 delivered of 10 sent.
        wait_for(lambda: (v := value(rate)) is not None and abs(v - 0.8) < 1e-9, timeout=30)
        assert value('tidings:sends_sent:rate15m{channel="sms",provider="simulator"}') > 0  # type: ignore[operator]
        # Of the 8 delivered: 4 members tap the link (one twice: a repeat), a robot previews one,
        # 2 redeem, 1 complains. The rates per delivered message are what happened.
        for phone in phones[:4]:
            assert httpx.post(f"{sim}/taps", json={"to": phone}, timeout=10).json()["status"] == 302
        httpx.post(f"{sim}/taps", json={"to": phones[0]}, timeout=10)
        httpx.post(f"{sim}/taps", json={"to": phones[5], "user_agent": "facebookexternalhit/1.1"}, timeout=10)
        for ntf_id in ids[:2]:
            conv = httpx.post(
                f"{api}/v1/conversions", json={"notification_id": ntf_id}, headers=headers, timeout=10
            )
            assert conv.status_code == 200, conv.text
        complaint = {
            "to": {"phone": phones[7]},
            "brand": "星耀商城",
            "source": "carrier",
            "notification_id": ids[7],
        }
        assert (
            httpx.post(f"{api}/v1/complaints", json=complaint, headers=headers, timeout=10).status_code == 200
        )
        for rule, expected in (
            ("tidings:click_rate:ratio_rate1h", 4 / 8),
            ("tidings:conversion_rate:ratio_rate1h", 2 / 8),
            ("tidings:complaint_rate:ratio_rate1h", 1 / 8),
        ):
            wait_for(lambda r=rule, e=expected: (v := value(r)) is not None and abs(v - e) < 1e-9, timeout=30)
    finally:
        proc.terminate()
        proc.wait(15)
