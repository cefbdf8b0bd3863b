"""Long-lived, non-forking rq workers with one asyncio loop each, plus housekeeping.

The housekeeper (a thread beside the rq loop) moves due scheduled jobs into
their queues (rq's scheduler, under its lock), re-enqueues notifications whose
lease ran out (a crashed worker or API process) and beats the worker heartbeat
that ``/readyz`` looks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty

from channels.config import load_router, simulator_router
from channels.routing import Router
from gateway import metrics
from gateway.audit.backends import open_store
from gateway.audit.consumer import AuditConsumer, AuditThread
from gateway.delivery.batcher import Batcher, Enqueuer, still_waiting, waiting_since
from gateway.delivery.engine import DeliveryEngine, Retry
from gateway.delivery.fallback import accept_fallbacks
from gateway.delivery.health import RedisHealth
from gateway.logs import Throttled
from gateway.models import CHANNELS
from gateway.series.releaser import Releaser, ReleaserThread
from gateway.services import build_services
from gateway.settings import Settings, queue_url
from gateway.state import keys
from gateway.state.redisdb import async_client, sync_client
from gateway.state.scripts import REAP
from gateway.timeutil import system_clock, to_real
from gateway.webhooks.dispatcher import Dispatcher, WebhookThread

log = logging.getLogger("tidings.worker")


def build_router(settings: Settings) -> Router:
    """The providers and routes this deployment sends through (ProvidersError when unusable)."""
    if settings.providers_path:
        router = load_router(settings.providers_path, pool_size=settings.send_concurrency)
    else:
        router = simulator_router(
            settings.simulator_url, settings.simulator_secret, settings.send_timeout_seconds
        )
    metrics.prime({channel: [r.provider for r in routes] for channel, routes in router.routes.items()})
    return router


_THREAD = threading.local()


class Runtime:
    """What a worker keeps between jobs: settings, its event loop, clients, adapters.

    One per worker thread: rq runs a thread's jobs one after another on that thread's loop, and
    several workers in one process (tests, ``tidings dev``) must not share a loop.
    """

    @staticmethod
    def current() -> Runtime | None:
        """This thread's runtime."""
        found: Runtime | None = getattr(_THREAD, "runtime", None)
        return found

    @staticmethod
    def install(runtime: Runtime | None) -> None:
        """Make (or unmake) this thread's runtime."""
        _THREAD.runtime = runtime

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        # rq's Redis (its own where the state is a Cluster): the job loop and the retries' jobs.
        self.sync = sync_client(queue_url(settings, redis_url))
        self.enqueuer = Enqueuer(self.sync, settings.batch_size)
        self.runner = asyncio.Runner()
        self.engine: DeliveryEngine = self.runner.run(self._build())

    async def _build(self) -> DeliveryEngine:
        core = build_services(self.settings, self.redis_url)
        return DeliveryEngine(
            self.settings,
            core.store,
            build_router(self.settings),
            RedisHealth(core.redis),
            core.policy,
            # Fallback channels go through the same accept pipeline as a request from upstream.
            fallback=functools.partial(accept_fallbacks, core.acceptor),
        )

    def deliver(self, tenant: str, channel: str, ids: Sequence[str]) -> dict[str, Any]:
        """Deliver a batch and schedule its retries (the body of the rq job)."""
        retries: list[Retry] = self.runner.run(self.engine.deliver(tenant, channel, ids))
        for r in retries:
            self.enqueuer.enqueue_at(r.when, tenant, channel, r.ids)
        return {"ids": len(ids), "retries": sum(len(r.ids) for r in retries)}

    def close(self) -> None:
        """Close adapters and clients."""
        with contextlib.suppress(Exception):
            self.runner.run(self.engine.router.aclose())
            if self.engine.store.pipe is not None:
                self.runner.run(self.engine.store.pipe.aclose())
            self.runner.run(self.engine.store.redis.aclose())
        self.runner.close()
        self.sync.close()


class Housekeeper(threading.Thread):
    """Scheduler tick, lease reaper and heartbeat, every ``housekeeping_interval_seconds``."""

    def __init__(self, settings: Settings, redis_url: str, worker_name: str, queues: Sequence[str]) -> None:
        super().__init__(name="tidings-housekeeper", daemon=True)
        self.settings = settings
        self.redis_url = redis_url
        self.queue_url = queue_url(settings, redis_url)
        self.worker_name = worker_name
        self.queues = list(queues)
        self.stopping = threading.Event()

    def run(self) -> None:
        """Loop until stopped; Redis trouble is logged and retried."""
        conn = sync_client(self.redis_url)
        # rq's scheduler and jobs on rq's Redis; leases and the heartbeat on the state's.
        queue = conn if self.queue_url == self.redis_url else sync_client(self.queue_url)
        enqueuer = Enqueuer(queue, self.settings.batch_size)
        scheduler = RQScheduler(self.queues, connection=queue)
        reap = conn.register_script(REAP)
        trouble = Throttled(log)
        try:
            while not self.stopping.is_set():
                try:
                    self.tick(conn, enqueuer, scheduler, reap)
                    trouble.recovered()
                except redis.RedisError as exc:
                    trouble.warning("housekeeping: redis error %s", type(exc).__name__)
                self.stopping.wait(self.settings.housekeeping_interval_seconds)
        finally:
            with contextlib.suppress(redis.RedisError):
                scheduler.release_locks()
                conn.zrem(keys.workers(), self.worker_name)
            conn.close()
            if queue is not conn:
                queue.close()

    def tick(self, conn: redis.Redis, enqueuer: Enqueuer, scheduler: RQScheduler, reap: Any) -> None:
        """One round of housekeeping."""
        now = system_clock()
        conn.zadd(keys.workers(), {self.worker_name: now})
        if not scheduler.acquired_locks:
            scheduler.acquire_locks()
        else:
            scheduler.heartbeat()
        if scheduler.acquired_locks:
            scheduler.enqueue_scheduled_jobs()
        for raw in conn.smembers(keys.tenants()):
            tenant = raw.decode() if isinstance(raw, bytes) else str(raw)
            ids = [
                i.decode()
                for i in reap(
                    keys=[keys.leases(tenant)],
                    args=[repr(now), repr(now + self.settings.lease_seconds), 1000],
                )
            ]
            if not ids:
                continue
            by_channel: dict[str, list[tuple[str, str, float, bool]]] = {}
            with conn.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hmget(
                        keys.notification(tenant, i),
                        "channel",
                        "status",
                        "created_at",
                        "not_before",
                        "requeued_at",
                    )
                rows = pipe.execute()
            for i, (ch, st, created, nb, again) in zip(ids, rows, strict=True):
                if ch is not None:  # it went in at accept, when due, or when last re-enqueued
                    accepted, due, requeued = float(created or 0), float(nb or 0), float(again or 0)
                    entered = to_real(max(accepted, due, requeued))
                    via_ready = due <= accepted and not requeued
                    by_channel.setdefault(ch.decode(), []).append(
                        (i, (st or b"").decode(), entered, via_ready)
                    )
            for channel, found in by_channel.items():
                # The reap pushed every lease on by one lease; one a backlog holds is pushed on by as
                # long as it has waited so far (a long queue is looked at a few times, not every lease).
                turn = waiting_since(
                    conn, enqueuer.queue(channel), tenant, channel, self.settings.lease_seconds
                )
                batch, later = [], {}
                for i, st, entered, via in found:
                    if still_waiting(st, i, entered, via, turn):
                        waited = to_real(now) - entered
                        if waited > self.settings.lease_seconds:
                            later[i] = now + waited
                    else:
                        batch.append(i)
                if later:
                    conn.zadd(keys.leases(tenant), later, xx=True)
                if batch:
                    log.info(
                        "re-enqueuing %d notifications of %s/%s whose lease ran out",
                        len(batch),
                        tenant,
                        channel,
                    )
                    enqueuer.enqueue(tenant, channel, batch)
                    went_in = repr(system_clock())  # no earlier than the job's enqueued_at
                    with conn.pipeline(transaction=False) as pipe:
                        for i in batch:
                            pipe.hset(keys.notification(tenant, i), "requeued_at", went_in)
                        pipe.execute()


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can run outside the main thread (no signal handlers there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            # SIGALRM-based job timeouts only work in the main thread.
            self.death_penalty_class = TimerDeathPenalty
        super().__init__(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """Block at most a second at a time, so a stop request is noticed promptly."""
        if timeout is None:  # burst mode
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            try:
                result = super().dequeue_job_and_maintain_ttl(1, 1)
            except redis.ResponseError as exc:
                if self._stop_requested and str(exc).startswith("UNBLOCKED"):
                    return None  # cut short by ``wake``
                raise
            if result is not None:
                return result
        return None

    def wake(self) -> None:
        """Once a stop is requested: end a blocking dequeue now rather than at the end of its second
        (``CLIENT UNBLOCK ... ERROR`` of the connections rq named after this worker, from another
        thread). Best effort: a dequeue not reached yet still ends within its second."""
        with contextlib.suppress(redis.RedisError):
            for client in self.connection.client_list():
                if client.get("name") == self.name:
                    self.connection.client_unblock(int(client["id"]), error=True)

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGINT/SIGTERM: remembered, as rq leaves its loop by an exception when idle."""
        self._stop_requested = True
        super().request_stop(signum, frame)

    def subscribe(self) -> None:
        """No pubsub thread: rq's remote commands are not used (stop comes by signal or event), and
        redis-py's pubsub thread dies with a TypeError when Redis goes away."""

    def unsubscribe(self) -> None:
        """Nothing was subscribed."""

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()


def worker_name() -> str:
    """Unique per process and thread."""
    return f"tidings-{socket.gethostname()}-{os.getpid()}-{threading.get_ident() % 100_000}"


def run_worker(
    settings: Settings,
    redis_url: str,
    channels: Sequence[str] = CHANNELS,
    *,
    burst: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Run one worker until stopped (SIGINT/SIGTERM in the main thread, or ``stop``)."""
    runtime = Runtime(settings, redis_url)
    Runtime.install(runtime)
    name = worker_name()
    queue_names = [keys.queue_name(c) for c in channels]
    housekeeper = Housekeeper(settings, redis_url, name, queue_names)
    housekeeper.start()
    batcher = Batcher(redis_url, channels, settings.batch_size, queue_url(settings, redis_url))
    batcher.start()
    auditor = start_audit_thread(settings, redis_url, name) if settings.audit_consumer else None
    hooks = start_webhook_thread(settings, redis_url, name) if settings.webhook_dispatcher else None
    releaser = start_series_thread(settings, redis_url) if settings.series_releaser else None
    current: list[ThreadWorker] = []
    if stop is not None:
        threading.Thread(target=_stop_when, args=(stop, current), daemon=True).start()
    try:
        for round_ in itertools.count():
            # rq's loop quits on an error it does not handle, such as Redis going away while a job
            # is being finished; the process does not: it starts the loop again (a new rq name, as
            # the old one may still be registered) until it is asked to stop.
            worker = ThreadWorker(
                queue_names, connection=runtime.sync, name=f"{name}-{round_}", worker_ttl=20
            )
            current[:] = [worker]
            if stop is not None and stop.is_set():
                break
            try:
                worker.work(burst=burst, logging_level=settings.log_level, max_idle_time=None)
            except redis.RedisError as exc:
                log.warning("worker: redis error %s; the job loop starts again", type(exc).__name__)
            if burst or worker._stop_requested or (stop is not None and stop.is_set()):
                break
            time.sleep(1.0)
    finally:
        housekeeper.stopping.set()
        batcher.stopping.set()
        if auditor is not None:
            auditor.stop()
        if hooks is not None:
            hooks.stopping.set()
        if releaser is not None:
            releaser.stopping.set()
        housekeeper.join(5)
        batcher.join(5)
        if hooks is not None:
            hooks.join(settings.webhook_timeout_seconds + 5)
        if releaser is not None:
            releaser.join(10)
        if auditor is not None:
            auditor.join(10)
            auditor.consumer.store.close()
        Runtime.install(None)
        runtime.close()


def start_audit_thread(settings: Settings, redis_url: str, name: str) -> AuditThread:
    """The audit consumer beside the worker (it stands by unless it holds the leader lease)."""
    store = open_store(settings.audit_url)
    consumer = AuditConsumer(
        sync_client(redis_url, decode=True), store, name=name, retention_days=settings.audit_retention_days
    )
    thread = AuditThread(consumer)
    thread.start()
    return thread


def start_webhook_thread(settings: Settings, redis_url: str, name: str) -> WebhookThread:
    """The webhook dispatcher beside the worker (it stands by unless it holds the leader lease)."""

    def make() -> Dispatcher:
        return Dispatcher(
            async_client(redis_url),
            name=name,
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout_seconds,
            lanes=settings.webhook_lanes,
            concurrency=settings.webhook_concurrency,
            schedule=tuple(float(s) for s in settings.webhook_retry_seconds.split(",")),
        )

    thread = WebhookThread(make)
    thread.start()
    return thread


def start_series_thread(settings: Settings, redis_url: str) -> ReleaserThread:
    """The series releaser beside the worker: due steps become notifications, a batch at a time."""

    def make() -> tuple[Releaser, Any]:
        core = build_services(settings, redis_url)
        return Releaser(core.series, core.acceptor, batch=settings.series_batch), core.aclose

    thread = ReleaserThread(make, settings.series_interval_seconds)
    thread.start()
    return thread


def _stop_when(stop: threading.Event, current: list[ThreadWorker]) -> None:
    stop.wait()
    # Checked between jobs and after each (short) blocking dequeue; an idle worker's dequeue is cut
    # short so that it stops at once rather than at the end of its second.
    for worker in current:
        worker._stop_requested = True
        worker.wake()
