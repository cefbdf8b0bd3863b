"""From the ready lists and held sets into rq jobs: each job carries a batch of notification ids."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.exceptions import DeserializationError
from rq.job import Job

from gateway.ids import id_time
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
    # Ids a channel's rq queue may hold before the batcher stops adding jobs to it (in jobs: this
    # over the batch size, at least 4): the rest of a backlog waits on the tenants' ready lists,
    # which the batcher takes from in turn, so a tenant's message is not queued behind another
    # tenant's whole campaign (the rq queue is one per channel), and the rq queue stays about a
    # second of work deep.
    QUEUE_HIGH_WATER_IDS = 2000

    def __init__(
        self, redis_url: str, channels: Sequence[str], batch_size: int, queue_url: str | None = None
    ) -> None:
        super().__init__(name="tidings-batcher", daemon=True)
        self.redis_url = redis_url
        self.queue_url = queue_url or redis_url  # rq's Redis (its own where the state is a Cluster)
        self.channels = list(channels)
        self.batch_size = batch_size
        self.high_water = max(4, math.ceil(self.QUEUE_HIGH_WATER_IDS / batch_size))  # jobs
        self.stopping = threading.Event()
        self._pop_due: str | None = None  # the sha of POP_DUE, loaded on first use

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
        """One round: pop up to a batch per list of a channel whose queue has room, and enqueue it.
        Returns (ids moved, any list had a full batch)."""
        with enqueuer.connection.pipeline(transaction=False) as pipe:  # rq's own Redis
            for c in self.channels:
                pipe.llen(enqueuer.queue(c).key)
            depths = pipe.execute()
        open_channels = [c for c, d in zip(self.channels, depths, strict=True) if d < self.high_water]
        pairs = [(t, c) for t in tenants for c in open_channels]
        if not pairs:
            return 0, False
        cluster = is_cluster(conn)
        if self._pop_due is None and not cluster:
            self._pop_due = str(conn.script_load(scripts.POP_DUE))
        now = system_clock()
        with conn.pipeline(transaction=False) as pipe:
            for t, c in pairs:
                pipe.lpop(keys.ready(t, c), self.batch_size)
            if self._pop_due is not None:  # not on a Cluster
                for t, c in pairs:
                    pipe.evalsha(self._pop_due, 1, keys.held(t, c), repr(now), self.batch_size)
            results = pipe.execute(raise_on_error=False)
        if cluster:  # scripts in a pipeline of their own, grouped per master
            calls = [([keys.held(t, c)], [repr(now), self.batch_size]) for t, c in pairs]
            results += run_many_sync(conn, scripts.POP_DUE, calls)
        refused = [r for r in results if isinstance(r, redis.ResponseError)]
        if refused:
            # NOSCRIPT (Redis restarted or flushed): the pops ran; the held sets are taken next round.
            self._pop_due = None
            if not str(refused[0]).startswith("NOSCRIPT"):
                log.warning("batcher: redis refused a command: %s", refused[0])
        moved, full = 0, False
        for (tenant, channel), raw in zip(pairs + pairs, results, strict=True):
            if raw and not isinstance(raw, Exception):
                enqueuer.enqueue(tenant, channel, [i.decode() for i in raw])
                moved += len(raw)
                full = full or len(raw) == self.batch_size
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, redis.ResponseError):
                raise r
        return moved, full


@dataclass(frozen=True)
class Turn:
    """Where a channel's queue of one tenant has got to, in real epoch seconds (``inf``: empty)."""

    ready_first: float  # when the ready list's first id was accepted
    job_first: float  # when the earliest id of the rq queue's first job was accepted
    job_enqueued: float  # when that job was enqueued
    taken: frozenset[str] = frozenset()  # ids in jobs a worker has taken


def waiting_since(conn: redis.Redis, queue: Queue, tenant: str, channel: str, taken_within: float) -> Turn:
    """How far a tenant's ready list and a channel's rq queue have got (both first in, first out).

    The housekeeper asks before it re-enqueues notifications whose lease ran out: before their
    first attempt, that should mean their job was lost (a batcher that died holding them), not
    that the queue ahead of them is long (a campaign bigger than a lease's worth of sends), whose
    re-enqueuing would make duplicate jobs that claim and skip what another job holds.
    """
    first_id = conn.lindex(keys.ready(tenant, channel), 0)
    rq_conn = queue.connection  # rq's own Redis (TIDINGS_QUEUE_REDIS_URL), maybe not the state's
    first_job = rq_conn.lindex(queue.key, 0)
    ready = id_time(_text(first_id)) if first_id else math.inf
    job_first = job_enqueued = math.inf
    taken: set[str] = set()
    # The queue's first job, and the jobs workers have taken (their ids may not be claimed yet).
    started = queue.started_job_registry.get_job_ids(0, 49, cleanup=False)
    looked_at = [_text(first_job)] if first_job else []
    for k, job in enumerate(Job.fetch_many(looked_at + started, connection=rq_conn)):
        if job is None:
            continue  # finished meanwhile
        try:
            ids = [str(i) for i in job.args[2]] if len(job.args) > 2 else []
        except (DeserializationError, ValueError, TypeError):
            continue
        if k >= len(looked_at):
            # Taken a moment ago, not claimed yet. A job started longer ago than a lease is not
            # waiting to claim: its worker claimed and finished, or lost Redis on the way and left
            # the registry entry behind (a Redis restart mid-job), and its ids must be recovered.
            started_at = job.started_at
            if started_at is not None and _epoch(started_at) >= time.time() - taken_within:
                taken.update(ids)
            continue
        job_first = min((id_time(i) for i in ids), default=math.inf)
        if job.enqueued_at is not None:
            job_enqueued = _epoch(job.enqueued_at)
    return Turn(ready, job_first, job_enqueued, frozenset(taken))


def still_waiting(status: str, ntf_id: str, entered: float, via_ready: bool, turn: Turn) -> bool:
    """Whether a notification whose lease ran out is surely still waiting its turn: on the ready
    list or in a job not taken yet. ``via_ready``: accepted due at once, so it went onto the ready
    list in accept order and from there into a job; otherwise (held until a time, or re-enqueued)
    it went straight into a job at ``entered`` (real epoch seconds)."""
    if status not in ("queued", "scheduled"):
        return False  # a send whose lease ran out: it is stuck (a worker died), not waiting
    if ntf_id in turn.taken:
        return True  # in a job a worker took a moment ago and has not claimed yet
    if via_ready:
        accepted = id_time(ntf_id)
        return accepted >= turn.ready_first or accepted >= turn.job_first
    return entered >= turn.job_enqueued


def _epoch(at: datetime) -> float:
    """An rq timestamp (naive UTC) as epoch seconds."""
    return at.replace(tzinfo=at.tzinfo or UTC).timestamp()


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
