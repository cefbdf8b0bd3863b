"""Moves audit events from the tenants' Redis streams into the audit store.

A consumer group gives at-least-once delivery: an entry is acknowledged (and deleted from the stream,
and handed to the tenant's webhook outbox when it has endpoints, in the same script) only after the
store committed it, and the store skips event ids it already holds, so a consumer
killed at any point loses and duplicates nothing. One consumer at a time is the leader (a lease in
Redis): a tenant's chain is appended in stream order, and a standby takes over when the lease lapses,
first claiming what the old leader had read but not acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from gateway.audit import funnel
from gateway.audit.store import AuditStore
from gateway.audit.stream import AuditRow, decode_events, parse_anchor, rows_of, tenant_of
from gateway.logs import Throttled
from gateway.state import keys, scripts
from gateway.state.clusterpipe import run_many_sync
from gateway.state.redisdb import is_cluster

log = logging.getLogger("tidings.audit")

GROUP = "audit"

# KEYS: leader.  ARGV: name, lease ms.  Take or keep the lease; 1 if this consumer leads.
LEAD_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class AuditConsumer:
    """One consumer of the audit streams; ``step`` moves one batch, ``run`` loops until stopped."""

    def __init__(
        self,
        client: redis.Redis,
        store: AuditStore,
        *,
        name: str,
        batch: int = 1000,
        lease_seconds: float = 15.0,
        block_ms: int = 500,
        retention_days: int | None = None,
        gather_seconds: float = 0.1,
    ) -> None:
        self.client = client
        self.store = store
        self.name = name
        self.batch = batch
        self.lease_ms = int(lease_seconds * 1000)
        self.block_ms = block_ms
        # After a batch smaller than ``batch``, let events gather this long before reading again:
        # under load, fewer and fuller reads and store commits (each commit is an fsync) for at
        # most this much more delay before an event is in the store.
        self.gather_seconds = gather_seconds
        self.retention_days = retention_days
        self._lead = client.register_script(LEAD_SCRIPT)
        self._handoff = client.register_script(scripts.HANDOFF)
        self._cluster = is_cluster(client)
        self._groups: set[str] = set()
        self._leading = False
        self._backlog = True  # entries read before (by us or a dead leader) and not yet acknowledged
        self._pruned_at = 0.0
        self._stop: threading.Event | None = None  # set by ``run``: its waits end when asked to stop

    # -- one round --------------------------------------------------------------------------------
    def step(self, block: bool = True) -> int:
        """Move up to one batch per stream into the store; returns how many entries were handled."""
        if not self._take_lead():
            if block:
                self._idle()
            return 0
        streams = self._streams()
        if not streams:
            self._backlog = False  # no tenant, no stream: nothing read and left unacknowledged
            if block:
                self._idle()
            return 0
        entries: list[tuple[str, str, dict[str, str] | None]] = []
        if self._backlog:
            entries = self._read(streams, "0", None)
            if not entries:
                self._backlog = False
        if not entries:
            entries = self._read(streams, ">", self.block_ms if block else None)
        if not entries:
            return 0
        self._store(entries)
        return len(entries)

    def drain(self, timeout: float = 30.0) -> int:
        """Steps until the streams are empty (tests and ``tidings audit consume --drain``)."""
        deadline = time.monotonic() + timeout
        moved = 0
        while time.monotonic() < deadline:
            n = self.step(block=False)
            moved += n
            if n == 0 and self._leading and not self._backlog and self.backlog() == 0:
                return moved
            if n == 0:
                time.sleep(0.02)
        raise TimeoutError(f"audit streams not drained within {timeout}s ({self.backlog()} entries left)")

    def backlog(self) -> int:
        """Entries in the tenants' audit streams (read or not) that are not in the store yet."""
        with self.client.pipeline(transaction=False) as pipe:
            for stream in self._stream_keys():
                pipe.xlen(stream)
            return sum(int(n) for n in pipe.execute())

    def _idle(self) -> None:
        if self._stop is not None:
            self._stop.wait(self.block_ms / 1000)
        else:
            time.sleep(self.block_ms / 1000)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; Redis or store trouble is logged and retried."""
        self._stop = stop
        with contextlib.suppress(RedisError):
            # Named, so that ``wake`` finds the connection its blocking reads wait on.
            self.client.client_setname(self._client_name)
        trouble = Throttled(log)
        while not stop.is_set():
            try:
                moved = self.step()
                self._maybe_prune()
                if 0 < moved < self.batch:
                    stop.wait(self.gather_seconds)
                trouble.recovered()
            except (RedisError, OSError) as exc:
                self._backlog = True
                trouble.warning("audit consumer: redis error %s", type(exc).__name__)
                stop.wait(1.0)
            except Exception:
                # The store refused (down, disk full): nothing was acknowledged, so nothing is lost.
                self._backlog = True
                log.exception("audit consumer: store error")
                stop.wait(1.0)
        self.release()

    @property
    def _client_name(self) -> str:
        return f"{self.name}-audit"

    def wake(self) -> None:
        """Once ``stop`` is set: end a blocking read now (``CLIENT UNBLOCK ... ERROR``, from another
        thread) rather than when its block runs out. Best effort: a read not begun yet still ends
        within ``block_ms``."""
        with contextlib.suppress(RedisError):
            for client in self.client.client_list():
                if client.get("name") == self._client_name:
                    self.client.client_unblock(int(client["id"]), error=True)

    def release(self) -> None:
        """Give up the lease (a clean stop lets a standby take over at once)."""
        try:
            if self.client.get(keys.audit_leader()) == self.name:
                self.client.delete(keys.audit_leader())
        except RedisError:
            pass
        self._leading = False

    # -- pieces -----------------------------------------------------------------------------------
    def _take_lead(self) -> bool:
        leading = bool(self._lead(keys=[keys.audit_leader()], args=[self.name, self.lease_ms]))
        if leading and not self._leading:
            self._claim_orphans()
            self._backlog = True
        self._leading = leading
        return leading

    def _stream_keys(self) -> list[str]:
        members: Any = self.client.smembers(keys.tenants())
        return sorted(keys.audit(t if isinstance(t, str) else t.decode()) for t in members)

    def _streams(self) -> list[str]:
        streams = self._stream_keys()
        for stream in streams:
            if stream not in self._groups:
                try:
                    self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._groups.add(stream)
        return streams

    def _claim_orphans(self) -> None:
        """Take over entries another consumer read and never acknowledged (it died or lost the lease)."""
        for stream in self._streams():
            start = "0-0"
            while True:
                try:
                    res = self.client.xautoclaim(stream, GROUP, self.name, 0, start, count=1000)
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        self._groups.discard(stream)
                        break
                    raise
                start = res[0]
                if start in ("0-0", b"0-0"):
                    break

    def _read(
        self, streams: Sequence[str], position: str, block: int | None
    ) -> list[tuple[str, str, dict[str, str] | None]]:
        if self._cluster and len(streams) > 1:
            # One XREADGROUP may not name streams of several slots: each on its own, none blocking.
            found = [e for s in streams for e in self._read([s], position, None)]
            if not found and block:
                time.sleep(block / 1000)
            return found
        try:
            res: Any = self.client.xreadgroup(
                GROUP, self.name, {s: position for s in streams}, count=self.batch, block=block
            )
        except ResponseError as exc:
            if self._stop is not None and self._stop.is_set() and str(exc).startswith("UNBLOCKED"):
                return []  # cut short by ``wake``: nothing was read
            if "NOGROUP" not in str(exc):
                raise
            self._groups.clear()  # a stream was deleted (FLUSHDB, a restore): groups are made again
            return []
        out: list[tuple[str, str, dict[str, str] | None]] = []
        for stream, items in res or []:
            for entry_id, fields in items:
                out.append((str(stream), str(entry_id), fields or None))
        return out

    def _store(self, entries: list[tuple[str, str, dict[str, str] | None]]) -> None:
        rows: list[AuditRow] = []
        by_stream: dict[str, list[str]] = {}
        counted: dict[str, list[tuple[dict[str, str], list[tuple[int, dict[str, Any]]]]]] = {}
        for stream, entry_id, fields in entries:
            by_stream.setdefault(stream, []).append(entry_id)
            if fields is not None:  # None: deleted after a commit whose acknowledgement was lost
                events = decode_events(fields)
                rows.extend(rows_of(tenant_of(stream), entry_id, fields, events))
                counted.setdefault(stream, []).append((fields, events))
        appended = self.store.append(rows)
        if appended.duplicates:
            log.info("audit: %d event(s) read again were already stored (skipped)", appended.duplicates)
        handoffs: list[tuple[list[str], list[Any]]] = []  # on a Cluster: scripts in their own pipeline
        with self.client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                # Out of the stream, and into the tenant's webhook outbox if it has endpoints (the
                # script reads the entries it forwards itself: most tenants have none).
                tenant = tenant_of(stream)
                k = [stream, keys.webhook_outbox(tenant), keys.webhooks(tenant)]
                increments: list[str | int] = []
                for campaign, amounts in funnel.count(counted.get(stream, ())).items():
                    k.append(keys.campaign(tenant, campaign))
                    for field, amount in amounts.items():
                        increments += (len(k), field, amount)
                args: list[Any] = [GROUP, len(ids), *ids, len(increments) // 3, *increments]
                if self._cluster:
                    handoffs.append((k, args))
                else:
                    self._handoff(keys=k, args=args, client=pipe)
            if handoffs:
                run_many_sync(self.client, scripts.HANDOFF, handoffs)
            for tenant, (seq, digest) in appended.heads.items():
                pipe.set(keys.audit_head(tenant), f"{seq} {digest}")
            pipe.execute()

    def _maybe_prune(self) -> None:
        if self.retention_days is None or not self._leading:
            return
        now = time.time()
        if now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        removed = self.store.prune(int((now - self.retention_days * 86_400) * 1000), int(now * 1000))
        if removed:
            log.info("audit: pruned %d events older than %d days", removed, self.retention_days)


def anchor(client: redis.Redis, tenant: str) -> tuple[int, str] | None:
    """The (seq, hash) the consumer last stored for a tenant, as kept in Redis."""
    raw: Any = client.get(keys.audit_head(tenant))
    return parse_anchor(raw)


class AuditThread(threading.Thread):
    """The consumer beside a worker's rq loop."""

    def __init__(self, consumer: AuditConsumer) -> None:
        super().__init__(name="tidings-audit", daemon=True)
        self.consumer = consumer
        self.stopping = threading.Event()

    def run(self) -> None:
        self.consumer.run(self.stopping)

    def stop(self) -> None:
        """Ask it to stop (it gives up the lease on its way out); a blocking read ends at once."""
        self.stopping.set()
        self.consumer.wake()
