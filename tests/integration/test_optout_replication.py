"""Opt-outs never lost on failover: acknowledged only once a replica holds them (WAIT), and without
replicas nothing waits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.state.redisdb import free_port, redis_server_binary
from tests.conftest import build_stack, wait_for

pytestmark = pytest.mark.integration

RUNS = 20


def _waits(client: redis.Redis) -> tuple[int, int]:
    """How many WAIT and INFO commands the server has run."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0)), int(
        stats.get("cmdstat_info", {}).get("calls", 0)
    )


def test_without_replicas_an_opt_out_waits_for_nothing(redis_url: str, rdb: redis.Redis) -> None:
    async def run() -> float:
        client = aioredis.Redis.from_url(redis_url)
        optouts = OptOuts(client, Members("test-hmac-key"))
        try:
            start = time.perf_counter()
            for i in range(50):
                assert await optouts.add("acme", f"+86138000{i:05d}", source="api")
            assert await optouts.add_many("acme", [("+8613900000001", None, None)], source="import") == (1, 0)
            return time.perf_counter() - start
        finally:
            await client.aclose()

    waits, infos = _waits(rdb)
    elapsed = asyncio.run(run())
    after_waits, after_infos = _waits(rdb)
    assert after_waits == waits  # no WAIT at all
    assert after_infos - infos <= 2  # one INFO replication per CHECK_SECONDS (plus our own INFO)
    assert elapsed < 1.0, elapsed  # 51 writes; one 500 ms WAIT would show


class Nodes:
    """Two redis-servers (master and replica, roles swapping at each failover) and one Sentinel."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = redis_server_binary()
        self.dir = tmp_path
        self.ports = [free_port(), free_port()]
        self.sentinel_port = free_port()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinel: subprocess.Popen[bytes] | None = None

    def start(self, port: int, replica_of: int | None = None) -> None:
        args = [self.binary, "--port", str(port), "--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        args += ["--bind", "127.0.0.1", "--protected-mode", "no", "--logfile", str(self.dir / f"{port}.log")]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.procs[port] = subprocess.Popen(args)

    def start_all(self) -> None:
        self.start(self.ports[0])
        self.start(self.ports[1], replica_of=self.ports[0])
        # The Sentinel learns of replicas from the master's INFO, which it reads every 10 s: started once
        # the replica is linked, it knows it from its first look instead of up to 10 s later.
        wait_for(lambda: self._linked(self.ports[0]), timeout=30, interval=0.05)
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor tidings 127.0.0.1 {self.ports[0]} 1\n"
            "sentinel down-after-milliseconds tidings 1000\n"
            # A new failover of the same master may start 2 x failover-timeout after the last one.
            "sentinel failover-timeout tidings 1500\n"
        )
        self.sentinel = subprocess.Popen([self.binary, str(conf), "--sentinel"])

    def _linked(self, port: int) -> bool:
        try:
            with redis.Redis(port=port, decode_responses=True) as m:
                info = m.info("replication")
            return int(info.get("connected_slaves", 0)) == 1 and info["slave0"]["state"] == "online"
        except (redis.RedisError, KeyError):
            return False

    def master(self) -> int:
        ask = redis.Redis(port=self.sentinel_port, decode_responses=True)
        try:
            return int(ask.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "tidings")[1])
        finally:
            ask.close()

    def healthy(self) -> bool:
        """The master has its replica connected and caught up, and the Sentinel could promote it."""
        try:
            master = self.master()
            with redis.Redis(port=master, decode_responses=True) as m:
                # Caught up: the replica acknowledges a write made after everything before it. WAIT
                # asks it at once (REPLCONF GETACK), where comparing the offsets in INFO waits for its
                # once-a-second acknowledgement (and each GETACK would move the master's offset on).
                m.publish("tidings-test:healthy", "probe")
                caught_up = int(m.wait(1, 200)) >= 1
                info = m.info("replication")
            if info.get("role") != "master" or int(info.get("connected_slaves", 0)) != 1:
                return False
            if not caught_up:
                return False
            with redis.Redis(port=self.sentinel_port, decode_responses=True) as ask:
                replicas = ask.execute_command("SENTINEL", "REPLICAS", "tidings")
            return any(r["flags"] == "slave" for r in replicas)  # not s_down, not disconnected
        except (redis.RedisError, KeyError, IndexError):
            return False

    def stop(self) -> None:
        for p in [*self.procs.values(), *([self.sentinel] if self.sentinel else [])]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs.values(), *([self.sentinel] if self.sentinel else [])]:
            p.wait(10)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    n.start_all()
    try:
        wait_for(n.healthy, timeout=30, interval=0.2)
        yield n
    finally:
        n.stop()


def _opt_out(c: httpx.Client, phone: str) -> httpx.Response:
    """PUT the opt-out until it is acknowledged (503s while the gateway finds the new master)."""
    answers: list[int] = []

    def put() -> httpx.Response | None:
        r = c.put(f"/v1/optouts/{phone}", json={"reason": "failover test"})
        answers.append(r.status_code)
        return r if r.status_code == 200 else None

    r = wait_for(put, timeout=30, interval=0.1)
    assert set(answers) <= {200, 503}, answers
    return r  # type: ignore[no-any-return]


@pytest.mark.slow
def test_an_acknowledged_opt_out_survives_the_master_being_killed_20_times_out_of_20(
    nodes: Nodes, tmp_path: Path, quiet_off_policy: str
) -> None:
    stack = build_stack(
        f"redis+sentinel://127.0.0.1:{nodes.sentinel_port}/tidings", tmp_path, quiet_off_policy, 0
    )
    try:
        with stack.client() as c:
            # No replica answering (stopped): the opt-out is not acknowledged, the caller is told to retry.
            replica = next(p for port, p in nodes.procs.items() if port != nodes.master())
            os.kill(replica.pid, signal.SIGSTOP)
            try:
                start = time.monotonic()
                r = c.put("/v1/optouts/+8613700000000", json={})
                took = time.monotonic() - start
            finally:
                os.kill(replica.pid, signal.SIGCONT)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
            assert r.json()["code"] == "optout_not_replicated" and 0.5 <= took < 3, took
            assert _opt_out(c, "+8613700000000").status_code == 200  # the retry, once a replica holds it

            lost: list[str] = []
            firsts: list[int] = []
            for i in range(RUNS):
                wait_for(nodes.healthy, timeout=30, interval=0.1)
                phone = f"+86137000{i:05d}"
                old = nodes.master()
                # The replica stops and loses its link just before the write: acknowledged on the
                # master alone, the opt-out would go with it. Acknowledged only once the replica is
                # back and holds it, it survives.
                replica = next(p for port, p in nodes.procs.items() if port != old)
                os.kill(replica.pid, signal.SIGSTOP)
                try:
                    with redis.Redis(port=old) as m:
                        assert m.client_kill_filter(_type="replica") == 1
                    first = c.put(f"/v1/optouts/{phone}", json={"reason": "failover test"})
                    if first.status_code == 200:
                        nodes.procs[old].kill()  # (only without the wait) the moment the answer is back
                    firsts.append(first.status_code)
                finally:
                    os.kill(replica.pid, signal.SIGCONT)
                if first.status_code != 200:
                    assert _opt_out(c, phone).json()["entries"]
                nodes.procs[old].kill()  # the moment the answer is back
                nodes.procs[old].wait(10)
                wait_for(lambda old=old: nodes.master() != old, timeout=30, interval=0.1)  # type: ignore[misc]
                new = nodes.master()
                nodes.start(old, replica_of=new)  # the dead master comes back empty, as a replica
                with redis.Redis(port=new) as m:
                    wait_for(lambda m=m: m.info("replication")["role"] == "master", timeout=10)  # type: ignore[misc]

                # The API may 503 until it reaches the new master; then the entry must be there.
                deadline = time.monotonic() + 30
                while True:
                    r = c.get(f"/v1/optouts/{phone}")
                    if r.status_code != 503 or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert r.status_code == 200, r.text
                if not r.json()["entries"]:
                    lost.append(phone)
            assert set(firsts) == {503}, firsts  # never acknowledged while no replica held it
            assert not lost, f"{len(lost)} of {RUNS} acknowledged opt-outs lost: {lost}"
    finally:
        stack.stop()
