"""`tidings dev` alone brings the stack up: a points-expiry SMS reaches the simulator and is delivered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.state.redisdb import free_port
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tidings_command() -> list[str]:
    exe = shutil.which("tidings", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


def test_dev_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    proc = subprocess.Popen(
        [
            *tidings_command(),
            "dev",
            "--port",
            str(port),
            "--sim-port",
            str(sim_port),
            "--data-dir",
            str(tmp_path / "var"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    try:
        wait_for(lambda: _ready(api), timeout=30, interval=0.1)
        body = {
            # A member where it is daytime now: marketing is held during the member's quiet hours.
            "to": {"phone": "13812345678", "timezone": daytime_zone()},
            "channel": "sms",
            "brand": "星耀商城",
            "template": "points_expiry",
            "params": {"name": "李女士", "points": 28600, "days": 12},
        }
        started = time.monotonic()
        r = httpx.post(f"{api}/v1/notify", json=body, headers={"Authorization": "Bearer dev-key"})
        assert r.status_code == 202, r.text
        ntf_id = r.json()["id"]
        msgs = wait_for(
            lambda: httpx.get(f"{sim}/messages", params={"to": "+8613812345678"}).json(),
            timeout=2,
            interval=0.02,
        )
        assert time.monotonic() - started < 2
        assert "28600积分将于12天后清零" in msgs[0]["text"]
        wait_for(
            lambda: (
                httpx.get(
                    f"{api}/v1/notifications/{ntf_id}", headers={"Authorization": "Bearer dev-key"}
                ).json()["status"]
                == "delivered"
            ),
            timeout=5,
        )
        assert httpx.get(f"{api}/schema/openapi.json").json()["info"]["title"] == "Tidings"

        # The member replies TD: a message accepted before (held for 3 s) never goes out, the next is suppressed.
        from datetime import UTC, datetime, timedelta

        auth = {"Authorization": "Bearer dev-key"}
        later = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        held = httpx.post(f"{api}/v1/notify", json={**body, "send_at": later}, headers=auth).json()
        assert held["status"] == "scheduled"
        td = httpx.post(f"{sim}/replies", json={"from": "+8613812345678", "text": "TD", "brand": "星耀商城"})
        assert td.json()["gateway"]["action"] == "opted_out"
        nxt = httpx.post(f"{api}/v1/notify", json=body, headers=auth)
        assert nxt.status_code == 200 and nxt.json()["reasons"][0]["code"] == "opted_out"
        wait_for(
            lambda: (
                httpx.get(f"{api}/v1/notifications/{held['id']}", headers=auth).json()["status"]
                == "suppressed"
            ),
            timeout=15,
        )
        assert len(httpx.get(f"{sim}/messages", params={"to": "+8613812345678"}).json()) == 1
        var = tmp_path / "var"
        assert (var / "appendonly.aof").exists() or (var / "appendonlydir").is_dir()  # AOF is on
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out[-3000:]
    assert "Tidings is up" in out and "dev-key" in out
    assert "13812345678" not in out  # numbers never in logs
    assert not (tmp_path / "var" / "redis.sock").exists()  # redis-server stopped with it


def daytime_zone() -> str:
    """An IANA zone where it is about noon right now."""
    from datetime import UTC, datetime

    offset = 12 - datetime.now(UTC).hour  # -11 .. 12
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def _ready(api: str) -> bool:
    try:
        return httpx.get(f"{api}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_ctrl_c_in_a_terminal_stops_dev_quickly_and_quietly(tmp_path: Path) -> None:
    # A terminal's Ctrl-C is SIGINT to the whole foreground process group, the embedded Redis's
    # too: everything must still stop in order, under 3 s, without a flood of warnings.
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    var = tmp_path / "var"
    proc = subprocess.Popen(
        [*tidings_command(), "dev", "--port", str(port), "--sim-port", str(sim_port), "--data-dir", str(var)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(api), timeout=30, interval=0.1)
        auth = {"Authorization": "Bearer dev-key"}
        # The audit store is open in the API and the worker: both must close it.
        assert httpx.get(f"{api}/v1/audit/events", headers=auth).status_code == 200
        wait_for(lambda: (var / "audit.sqlite3-wal").exists(), timeout=10)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert elapsed < 3.0, (elapsed, out[-3000:])
    assert proc.returncode == 0, out[-3000:]
    tail = out[out.index("Ctrl-C stops everything.") :]
    assert "Traceback" not in out
    assert tail.count("WARNING") <= 3, tail[-3000:]
    assert out.rstrip().endswith("Tidings stopped."), out[-500:]
    assert not (var / "audit.sqlite3-wal").exists()  # SQLite closed cleanly
    assert not (var / "redis.sock").exists()


def test_commands_from_another_folder_find_a_running_dev_through_its_state_file(tmp_path: Path) -> None:
    # Started from folder A with --data-dir X; run from folder B with no flag and no TIDINGS_*.
    a, b, data, state_home = tmp_path / "a", tmp_path / "b", tmp_path / "x", tmp_path / "state"
    a.mkdir()
    b.mkdir()
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["XDG_STATE_HOME"] = str(state_home)
    record = state_home / "tidings" / "dev.json"
    proc = subprocess.Popen(
        [
            *tidings_command(),
            "dev",
            "--port",
            str(port),
            "--sim-port",
            str(sim_port),
            "--data-dir",
            str(data),
        ],
        cwd=a,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api = f"http://127.0.0.1:{port}"
    phone = "13800138000"

    def tidings(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*tidings_command(), *args], cwd=b, env=env, capture_output=True, text=True, timeout=60
        )

    def receipt_found() -> subprocess.CompletedProcess[str] | None:
        r = tidings("audit", "search", "--tenant", "default", "--address", phone)
        assert r.returncode == 0, r.stderr
        return r if '"type": "receipt"' in r.stdout else None

    try:
        wait_for(lambda: _ready(api), timeout=30, interval=0.1)
        wait_for(record.exists, timeout=5)  # written once the API and the simulator both answer
        written = json.loads(record.read_text(encoding="utf-8"))
        assert written == {
            "pid": proc.pid,
            "data_dir": str(data),
            "redis_url": f"unix://{data / 'redis.sock'}",
            "audit_url": f"sqlite:///{data / 'audit.sqlite3'}",
            "api_url": api,
        }
        body = {
            "to": {"phone": phone, "timezone": daytime_zone()},
            "channel": "sms",
            "brand": "星耀商城",
            "template": "points_expiry",
            "params": {"name": "李女士", "points": 28600, "days": 12},
        }
        r = httpx.post(f"{api}/v1/notify", json=body, headers={"Authorization": "Bearer dev-key"})
        assert r.status_code == 202, r.text
        # The audit log (the worker's consumer moves the events into it) and Redis, found from B.
        found = wait_for(receipt_found, timeout=20, interval=0.2)
        assert {json.loads(line)["notification_id"] for line in found.stdout.splitlines()} == {r.json()["id"]}
        assert phone not in found.stdout
        exported = tidings("optouts", "export", "--tenant", "default")
        assert exported.returncode == 0 and exported.stdout == "address,brand,channel,since,source\n"
        verified = tidings("audit", "verify")
        assert verified.returncode == 0 and "no Redis anchors" not in verified.stderr, verified.stderr
        assert list(a.iterdir()) == [] and list(b.iterdir()) == []  # everything went to X
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out[-3000:]
    assert f"data dir   {data}   (from --data-dir; other commands find it through {record})" in out
    assert not record.exists()  # removed when the dev stack stopped
    # Stopped: the record is gone and B's own ./var is where the next command looks (and fails).
    after = tidings("audit", "search", "--tenant", "default", "--address", phone)
    assert after.returncode == 2 and f"no audit log at {b / 'var' / 'audit.sqlite3'}" in after.stderr
    assert list(b.iterdir()) == []
