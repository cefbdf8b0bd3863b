"""Opt-outs never lost on failover: acknowledged only once a replica holds them (WAIT), reconcile's
and the CLI import's writes too; a retry after 503 optout_not_replicated is answered as the first
attempt would have been; without replicas nothing waits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from gateway.audit.backends import open_store
from gateway.optouts.store import OptOuts
from gateway.optouts.unsubscribe import make_token
from gateway.recipients import Members
from gateway.state import keys
from gateway.state.redisdb import free_port, redis_server_binary
from tests.conftest import ROOT, TENANT, Stack, build_stack, points_expiry, wait_for

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

    def start_pair(self) -> None:
        """A master (``ports[0]``) and its replica, without a Sentinel; until the replica is in sync."""
        self.start(self.ports[0])
        self.start(self.ports[1], replica_of=self.ports[0])
        wait_for(self.in_sync, timeout=30, interval=0.1)

    def in_sync(self) -> bool:
        """``ports[0]``'s replica is connected and holds everything the master wrote."""
        try:
            with redis.Redis(port=self.ports[0], decode_responses=True) as m:
                info = m.info("replication")
            return int(info.get("connected_slaves", 0)) == 1 and int(info["slave0"]["offset"]) == int(
                info["master_repl_offset"]
            )
        except (redis.RedisError, KeyError):
            return False

    def pause_replica(self) -> None:
        """Stop the replica (SIGSTOP): its link stays up, but it acknowledges nothing."""
        os.kill(self.procs[self.ports[1]].pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        replica = self.procs.get(self.ports[1])
        if replica is not None and replica.poll() is None:
            os.kill(replica.pid, signal.SIGCONT)

    def stop(self) -> None:
        for p in [*self.procs.values(), *([self.sentinel] if self.sentinel else [])]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs.values(), *([self.sentinel] if self.sentinel else [])]:
            p.wait(10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Nodes]:
    """A master with one replica (no Sentinel): ``ports[0]`` the master."""
    n = Nodes(tmp_path)
    try:
        n.start_pair()
        yield n
    finally:
        n.resume_replica()
        n.stop()


WAIT_MS = 200  # the bound in the tests that stop the replica: each unacknowledged write costs this


def _tidings(master: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `tidings` command against the master."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "TIDINGS_REDIS_URL": f"redis://127.0.0.1:{master}",
            "TIDINGS_OPTOUT_WAIT_MS": str(WAIT_MS),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _reconcile(master: int, audit_url: str) -> subprocess.CompletedProcess[str]:
    return _tidings(master, "optouts", "reconcile", "--tenant", "acme", "--json", TIDINGS_AUDIT_URL=audit_url)


def test_an_import_no_replica_acknowledged_is_a_clear_error_and_importing_again_counts_it(
    pair: Nodes, tmp_path: Path
) -> None:
    csv = tmp_path / "optouts.csv"
    csv.write_text("address,brand,channel\n13812340010,,\n13812340011,星耀商城,\n", encoding="utf-8")
    pair.pause_replica()
    try:
        stopped = _tidings(pair.ports[0], "optouts", "import", str(csv), "--tenant", "acme")
    finally:
        pair.resume_replica()
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr, stopped.stderr
    assert "tidings: no replica acknowledged the imported opt-outs within 200 ms" in stopped.stderr
    again = _tidings(pair.ports[0], "optouts", "import", str(csv), "--tenant", "acme")
    assert again.returncode == 0, again.stderr
    assert "rows 2  imported 2  duplicates 0" in again.stdout  # as the first run would have said


def test_reconcile_restores_are_acknowledged_by_a_replica_and_a_timeout_is_a_clear_error(
    pair: Nodes, tmp_path: Path
) -> None:
    master, replica = (redis.Redis(port=p) for p in pair.ports)
    members = Members("test-hmac-key")
    phones = [f"+86138000{i:05d}" for i in range(5)]

    async def opt_out() -> None:
        client = aioredis.Redis(port=pair.ports[0])
        try:
            for phone in phones:  # their opt_out events stay in the audit stream (no consumer)
                assert await OptOuts(client, members, wait_ms=WAIT_MS).add("acme", phone, source="api")
        finally:
            await client.aclose()

    def dropped() -> None:
        """What a restore from an old backup does: the tenant's opt-outs are gone (on both nodes)."""
        assert master.delete(*(keys.optouts("acme", members.of(p)) for p in phones)) == len(phones)
        wait_for(pair.in_sync, timeout=10)

    def on_replica() -> int:
        return sum(int(replica.hexists(keys.optouts("acme", members.of(p)), "*|*")) for p in phones)

    try:
        asyncio.run(opt_out())
        audit_url = f"sqlite:///{tmp_path}/audit.sqlite3"
        open_store(audit_url).close()
        dropped()

        waits, _ = _waits(master)
        out = _reconcile(pair.ports[0], audit_url)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["restored"] == len(phones)
        assert _waits(master)[0] > waits  # the restore waited for the replica
        assert on_replica() == len(phones)  # ...which held it when the command answered

        dropped()
        pair.pause_replica()
        try:
            stopped = _reconcile(pair.ports[0], audit_url)
        finally:
            pair.resume_replica()
        assert stopped.returncode == 2, (stopped.stdout, stopped.stderr)
        assert "Traceback" not in stopped.stderr and stopped.stdout == ""
        assert stopped.stderr.startswith(
            "tidings: no replica acknowledged the restored opt-outs within 200 ms"
        )
        assert "Run it again once a replica is connected" in stopped.stderr

        again = _reconcile(pair.ports[0], audit_url)  # the replica is back: the run completes
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["restored"] + report["already_present"] == len(phones)
        assert on_replica() == len(phones)
    finally:
        master.close()
        replica.close()


BRAND = "星耀商城"


@pytest.fixture
def pair_stack(pair: Nodes, tmp_path: Path, quiet_off_policy: str) -> Iterator[tuple[Nodes, Stack]]:
    """A gateway (API, simulator, one worker) on the master of ``pair``, opt-outs waiting WAIT_MS."""
    stack = build_stack(
        f"redis://127.0.0.1:{pair.ports[0]}", tmp_path, quiet_off_policy, 1, optout_wait_ms=WAIT_MS
    )
    try:
        yield pair, stack
    finally:
        stack.stop()


def _unacknowledged(pair: Nodes, attempt: Callable[[], httpx.Response]) -> None:
    """The attempt with the replica stopped, twice: each answered 503 optout_not_replicated (the first
    one's write is on the master; the second, a retry while no replica is back, is not acknowledged
    either)."""
    pair.pause_replica()
    try:
        answers = [attempt(), attempt()]
    finally:
        pair.resume_replica()
    for r in answers:
        assert r.status_code == 503, r.text
        body = r.json()
        assert body.get("gateway", body)["code"] == "optout_not_replicated", body


def _timeline(stack: Stack, ntf_id: str) -> list[dict[str, object]]:
    with stack.client() as c:
        events: list[dict[str, object]] = c.get(f"/v1/notifications/{ntf_id}").json()["events"]
    return events


def _delivered(stack: Stack, phone: str) -> str:
    """A marketing SMS to the phone, once the simulator has it; its id."""
    with stack.client() as c:
        ntf_id: str = c.post("/v1/notify", json=points_expiry(phone=phone)).json()["id"]
    wait_for(lambda: stack.messages(f"+86{phone}"), timeout=10)
    return ntf_id


def _pending(pair: Nodes) -> list[bytes]:
    """Opt-outs the master still holds as unacknowledged."""
    with redis.Redis(port=pair.ports[0]) as m:
        return list(m.scan_iter(match=keys.optout_pending(TENANT, "*")))


def test_a_td_reply_retried_after_503_is_answered_as_a_new_opt_out_with_one_unsubscribed_event(
    pair_stack: tuple[Nodes, Stack],
) -> None:
    pair, stack = pair_stack
    phone = "13812340001"
    ntf_id = _delivered(stack, phone)

    def td() -> httpx.Response:
        reply = {"from": f"+86{phone}", "text": "TD", "brand": BRAND}
        return httpx.post(f"{stack.sim_url}/replies", json=reply, timeout=10)

    _unacknowledged(pair, td)
    # The first attempt's write is on the master: the opt-out, with the answered message's event.
    assert [e["type"] for e in _timeline(stack, ntf_id)].count("unsubscribed") == 1
    assert _pending(pair)
    retry = td()  # the replica is back
    assert retry.status_code == 200 and retry.json()["gateway"]["action"] == "opted_out", retry.text
    assert [e["type"] for e in _timeline(stack, ntf_id)].count("unsubscribed") == 1  # not a second one
    assert not _pending(pair)  # acknowledged: the same reply again is the same opt-out
    assert td().json()["gateway"]["action"] == "already_opted_out"
    with stack.client() as c:
        suppressed = c.post("/v1/notify", json=points_expiry(phone=phone)).json()
        assert suppressed["status"] == "suppressed" and suppressed["reasons"][0]["code"] == "opted_out"


def test_complaints_api_imports_and_unsubscribe_links_retried_after_503_are_answered_as_new(
    pair_stack: tuple[Nodes, Stack],
) -> None:
    pair, stack = pair_stack
    phone = "13812340002"
    ntf_id = _delivered(stack, phone)
    with stack.client() as c:
        complaint = {"to": {"phone": phone}, "brand": BRAND, "source": "carrier", "notification_id": ntf_id}
        _unacknowledged(pair, lambda: c.post("/v1/complaints", json=complaint))
        r = c.post("/v1/complaints", json=complaint)
        assert r.status_code == 200 and r.json()["opted_out"] is True, r.text
        complaints = [e for e in _timeline(stack, ntf_id) if e["type"] == "complaint"]
        assert [e["opted_out"] for e in complaints] == [True]  # one, and it opted the member out
        assert c.post("/v1/complaints", json=complaint).json()["opted_out"] is False  # now it is a repeat

        put = "/v1/optouts/13812340003"
        _unacknowledged(pair, lambda: c.put(put, json={"reason": "客服来电"}))
        assert c.put(put, json={"reason": "客服来电"}).json()["opted_out"] is True

        csv = b"address,brand,channel\n13812340004,,\n13812340005,,sms\n"
        form = {"content-type": "text/csv"}
        _unacknowledged(pair, lambda: c.post("/v1/optouts/import", content=csv, headers=form))
        imported = c.post("/v1/optouts/import", content=csv, headers=form).json()
        assert (imported["imported"], imported["duplicates"]) == (2, 0), imported

    link = f"{stack.api_url}/v1/unsubscribe/"
    link += make_token(stack.settings.hmac_key, TENANT, "li.nvshi@example.com", BRAND)
    form = {"content-type": "application/x-www-form-urlencoded"}

    def click() -> httpx.Response:
        return httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=form, timeout=10)

    _unacknowledged(pair, click)
    assert click().json()["changed"] is True
    assert click().json()["changed"] is False
    assert not _pending(pair)


def test_a_duplicate_of_an_opt_out_still_waiting_is_not_a_second_new_one(pair: Nodes) -> None:
    """Two writes of one opt-out at once: the second finds the first waiting and is its duplicate;
    after the first's 503 its retry is the new opt-out, once."""

    async def run() -> list[object]:
        client = aioredis.Redis(port=pair.ports[0])
        optouts = OptOuts(client, Members("test-hmac-key"), wait_ms=WAIT_MS)
        try:
            assert await optouts.writes.waits()
            pair.pause_replica()
            try:
                first = asyncio.create_task(optouts.add("acme", "+8613812340006", source="api"))
                await asyncio.sleep(WAIT_MS / 4000)  # the first is written and waiting
                both = await asyncio.gather(
                    first, optouts.add("acme", "+8613812340006", source="api"), return_exceptions=True
                )
            finally:
                pair.resume_replica()
            retries = [await optouts.add("acme", "+8613812340006", source="api") for _ in range(2)]
            return [*(type(r).__name__ if isinstance(r, Exception) else r for r in both), *retries]
        finally:
            await client.aclose()

    # The duplicate is not acknowledged either while no replica holds the opt-out it found.
    assert asyncio.run(run()) == ["OptOutNotReplicated", "OptOutNotReplicated", True, False]


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
