"""From the ready lists and held sets into rq jobs: each job carries a batch of notification ids."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from rq import Queue

from gateway.logs import Throttled
from gateway.state import keys, scripts
from gateway.state.clusterpipe import run_many_sync
from gateway.state.redisdb import is_cluster
from gateway.timeutil import system_clock, to_real

log = logging.getLogger("tidings.dispatch")

JOB = "gateway.delivery.jobs.deliver"
JOB_TIMEOUT = 300


def rq_queue(connection: redis.Redis, channel: str) -> Queue:
    """The rq queue of a channel."""
    return Queue(keys.queue_name(channel), connection=connection)


class Enqueuer:
    """Creates rq jobs, each carrying a batch of notification ids of one tenant and channel."""

    def __init__(self, connection: redis.Redis, batch_size: int) -> None:
        self.connection = connection
        self.batch_size = batch_size
        self._queues: dict[str, Queue] = {}

    def queue(self, channel: str) -> Queue:
        """The (cached) rq queue of a channel."""
        q = self._queues.get(channel)
        if q is None:
            q = self._queues[channel] = rq_queue(self.connection, channel)
        return q

    def enqueue(self, tenant: str, channel: str, ids: Sequence[str]) -> int:
        """Enqueue jobs for ids now, ``batch_size`` ids a job; one round trip. Returns jobs made."""
        if not ids:
            return 0
        q = self.queue(channel)
        datas = [
            Queue.prepare_data(
                JOB,
                args=(tenant, channel, list(ids[i : i + self.batch_size])),
                timeout=JOB_TIMEOUT,
                result_ttl=0,
                failure_ttl=86_400,
            )
            for i in range(0, len(ids), self.batch_size)
        ]
        q.enqueue_many(datas)
        return len(datas)

    def enqueue_at(self, when: float, tenant: str, channel: str, ids: Sequence[str]) -> None:
        """Schedule a job for ids at an epoch time (rq's scheduled job registry)."""
        # rq keeps scheduled times in whole seconds, rounded down: round up so the job is not early.
        at = datetime.fromtimestamp(math.ceil(to_real(when)), UTC)
        for i in range(0, len(ids), self.batch_size):
            self.queue(channel).enqueue_at(
                at,
                JOB,
                tenant,
                channel,
                list(ids[i : i + self.batch_size]),
                job_timeout=JOB_TIMEOUT,
                result_ttl=0,
            )


class Batcher(threading.Thread):
    """Moves accepted ids from the ready lists, and held ids whose time has come, into rq jobs of up to
    ``batch_size`` ids.

    The accept script pushes each queued id onto its tenant's ready list in the
    same round trip that stores it, so the API does no queue work at all. Every
    worker runs a batcher; LPOP hands each id to one of them. An id popped by a
    batcher that dies before enqueueing keeps its lease, and the housekeeper
    re-enqueues it when the lease runs out.
    """

    MIN_SLEEP = 0.002
    MAX_SLEEP = 0.05

    def __init__(
        self, redis_url: str, channels: Sequence[str], batch_size: int, queue_url: str | None = None
    ) -> None:
        super().__init__(name="tidings-batcher", daemon=True)
        self.redis_url = redis_url
        self.queue_url = queue_url or redis_url  # rq's Redis (its own where the state is a Cluster)
        self.channels = list(channels)
        self.batch_size = batch_size
        self.stopping = threading.Event()

    def run(self) -> None:
        """Poll the ready lists, faster while there is work."""
        from gateway.state.redisdb import sync_client

        conn = sync_client(self.redis_url)
        queue = conn if self.queue_url == self.redis_url else sync_client(self.queue_url)
        enqueuer = Enqueuer(queue, self.batch_size)
        tenants: list[str] = []
        refreshed = 0.0
        sleep = self.MIN_SLEEP
        trouble = Throttled(log)
        try:
            while not self.stopping.is_set():
                try:
                    if time.monotonic() - refreshed > 1.0:
                        tenants = sorted(
                            t.decode() if isinstance(t, bytes) else str(t)
                            for t in conn.smembers(keys.tenants())
                        )
                        refreshed = time.monotonic()
                    moved, full = self.move(conn, enqueuer, tenants)
                    trouble.recovered()
                except redis.RedisError as exc:
                    trouble.warning("batcher: redis error %s", type(exc).__name__)
                    moved, full = 0, False
                if full:
                    continue
                sleep = self.MIN_SLEEP if moved else min(sleep * 2, self.MAX_SLEEP)
                self.stopping.wait(sleep)
        finally:
            conn.close()
            if queue is not conn:
                queue.close()

    def move(self, conn: redis.Redis, enqueuer: Enqueuer, tenants: Sequence[str]) -> tuple[int, bool]:
        """One round: pop up to a batch per list and enqueue it. Returns (ids moved, any list had a full batch)."""
        pairs = [(t, c) for t in tenants for c in self.channels]
        if not pairs:
            return 0, False
        now = system_clock()
        cluster = is_cluster(conn)
        with conn.pipeline(transaction=False) as pipe:
            for t, c in pairs:
                pipe.lpop(keys.ready(t, c), self.batch_size)
            if not cluster:
                for t, c in pairs:
                    pipe.eval(scripts.POP_DUE, 1, keys.held(t, c), repr(now), self.batch_size)
            results = pipe.execute()
        if cluster:  # scripts in a pipeline of their own, grouped per master
            calls = [([keys.held(t, c)], [repr(now), self.batch_size]) for t, c in pairs]
            results += run_many_sync(conn, scripts.POP_DUE, calls)
        moved, full = 0, False
        for (tenant, channel), raw in zip(pairs + pairs, results, strict=True):
            if raw:
                enqueuer.enqueue(tenant, channel, [i.decode() for i in raw])
                moved += len(raw)
                full = full or len(raw) == self.batch_size
        return moved, full
