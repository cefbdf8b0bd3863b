"""Delivers the tenants' webhook events: from each outbox to per-endpoint lanes, then to the endpoints.

- Fan-out: an outbox entry becomes one delivery per endpoint that wants its type, pushed on the
  endpoint's lane for the member (a hash of the member picks one of ``lanes``), in the same
  transaction that acknowledges the entry: each delivery is made exactly once.
- A lane is delivered in order, one at a time: the head is retried (with back-off) before anything
  behind it goes, so a member's opt-out and opt-back-in arrive in order. Lanes go in parallel, so
  one slow endpoint or member holds up nobody else.
- At least once: a delivery leaves its lane only after its endpoint answered 2xx (or it failed for
  good); a dispatcher killed mid-call leaves it at the head, and the next one sends it again with
  the same ``webhook-id``.
- One dispatcher leads at a time (a lease in Redis), as the audit consumer does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway import metrics
from gateway.audit.consumer import LEAD_SCRIPT
from gateway.logs import Throttled
from gateway.state import keys
from gateway.state.record import text_of
from gateway.timeutil import pause
from gateway.webhooks import signing
from gateway.webhooks.deliveries import queue_delivery
from gateway.webhooks.endpoints import Endpoint, EndpointError, Endpoints, check_reachable
from gateway.webhooks.payloads import outgoing

log = logging.getLogger("tidings.webhooks")
GROUP = "webhooks"
RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)  # about a day in all
_ERROR_TEXT = 300

# KEYS: lane, due.  ARGV: delivery id (or ''), now.  Drop the delivery at the head (if it is that one)
# and say when the lane is next due: now while it holds more, never (removed) once it is empty.
_ADVANCE = """
if ARGV[1] ~= '' and redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
else
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return 1
"""


class Dispatcher:
    """Fans each tenant's outbox out to its endpoints' lanes and delivers the lanes."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        name: str,
        allow_private: bool = False,
        timeout: float = 5.0,
        lanes: int = 8,
        concurrency: int = 64,
        schedule: tuple[float, ...] = RETRY_SCHEDULE,
        lease_seconds: float = 15.0,
    ) -> None:
        self.redis = redis
        self.name = name
        self.endpoints = Endpoints(redis, allow_private)
        self.allow_private = allow_private
        self.timeout = timeout
        self.lanes = lanes
        self.schedule = schedule
        self.lease_ms = int(lease_seconds * 1000)
        self._lead = redis.register_script(LEAD_SCRIPT)
        self._advance = redis.register_script(_ADVANCE)
        self._slots = asyncio.Semaphore(concurrency)
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: set[str] = set()
        self._leading = False
        self._unfinished: set[str] = set()  # tenants whose pending entries must be read again
        self._reachable: dict[str, float] = {}  # url -> checked until
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Wait for the deliveries in flight, then close the HTTP client."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout + 1)
        await self.http.aclose()

    async def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; Redis trouble is logged and retried."""
        trouble = Throttled(log)
        while not stop.is_set():
            try:
                worked = await self.step()
                trouble.recovered()
            except (RedisError, OSError) as exc:
                self._leading = False  # claim and read what is pending again on the next round
                trouble.warning("webhooks: redis error %s", type(exc).__name__)
                worked = False
                await pause(stop, 1.0)
            else:
                if not self._leading:
                    await pause(stop, 0.5)  # standing by: ask for the lease again shortly
            if not worked:
                await asyncio.sleep(0.05)

    async def step(self) -> bool:
        """One round: keep the lease, fan new events out, start the lanes that are due."""
        leading = bool(await self._lead(keys=[keys.webhook_leader()], args=[self.name, self.lease_ms]))
        if not leading:
            self._leading = False  # standing by (``run`` asks for the lease again shortly)
            return False
        tenants = sorted(
            t.decode() if isinstance(t, bytes) else str(t)
            for t in await self.redis.smembers(keys.webhook_tenants())
        )
        if not self._leading:  # just took over: what the last leader read and never finished is ours
            self._leading = True
            await self._claim(tenants)
            self._unfinished = set(tenants)
        fanned = sum([await self._fan_out(t) for t in tenants])
        started = sum([await self._start_due(t) for t in tenants])
        return bool(fanned or started)

    # -- fan-out --------------------------------------------------------------------------------
    async def _group(self, tenant: str) -> str:
        stream = keys.webhook_outbox(tenant)
        if stream not in self._groups:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(stream)
        return stream

    async def _claim(self, tenants: list[str]) -> None:
        for tenant in tenants:
            stream = await self._group(tenant)
            start = "0-0"
            while True:
                res: Any = await self.redis.xautoclaim(stream, GROUP, self.name, 0, start, count=500)
                start = res[0].decode() if isinstance(res[0], bytes) else res[0]
                if start == "0-0":
                    break

    async def _fan_out(self, tenant: str) -> int:
        stream = await self._group(tenant)
        read: Any = None
        # What this consumer was given and has not finished (only after taking over or an error),
        # then new entries.
        positions = ("0", ">") if tenant in self._unfinished else (">",)
        for position in positions:
            try:
                read = await self.redis.xreadgroup(GROUP, self.name, {stream: position}, count=500)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(stream)
                return 0
            if read and read[0][1]:
                break
            self._unfinished.discard(tenant)
        entries = read[0][1] if read else []
        if not entries:
            return 0
        endpoints = [e for e in await self.endpoints.all(tenant) if e.enabled]
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry_id, fields in entries:
                src = text_of(entry_id)
                raw = text_of(fields.get(b"f", fields.get("f", b"")))
                for event in (
                    outgoing(text_of(fields.get(b"src", fields.get("src", src))), raw) if raw else []
                ):
                    for endpoint in endpoints:
                        if endpoint.wants(event.type):
                            queue_delivery(pipe, tenant, endpoint, event, now, self.lanes)
            ids = [text_of(i) for i, _ in entries]
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()
        return len(entries)

    # -- delivery -------------------------------------------------------------------------------
    async def _start_due(self, tenant: str) -> int:
        due: Any = await self.redis.zrangebyscore(
            keys.webhook_due(tenant), "-inf", time.time(), start=0, num=500
        )
        started = 0
        for raw in due:
            lane = text_of(raw)
            if lane in self._busy:
                continue
            self._busy.add(lane)
            task = asyncio.create_task(self._deliver_lane(tenant, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _deliver_lane(self, tenant: str, lane: str) -> None:
        try:
            async with self._slots:
                await self._deliver_head(tenant, lane)
        except (RedisError, OSError) as exc:
            log.warning("webhooks: lane not delivered (%s); it is tried again", type(exc).__name__)
        finally:
            self._busy.discard(lane)

    async def _deliver_head(self, tenant: str, lane: str) -> None:
        due = keys.webhook_due(tenant)
        head = await self.redis.lindex(lane, 0)
        if head is None:
            await self._advance(keys=[lane, due], args=["", time.time()])
            return
        delivery = text_of(head)
        record_key = keys.webhook_delivery(tenant, delivery)
        record = {text_of(k): text_of(v) for k, v in (await self.redis.hgetall(record_key)).items()}
        endpoint = await self.endpoints.get(tenant, record.get("endpoint", "")) if record else None
        if not record or endpoint is None or not endpoint.enabled:
            reason = "endpoint deleted" if record and endpoint is None else "endpoint disabled"
            if record:
                await self.redis.hset(record_key, mapping={"status": "failed", "last_error": reason})
            metrics.WEBHOOK_DELIVERIES.labels("dropped").inc()
            await self._advance(keys=[lane, due], args=[delivery, time.time()])
            return
        attempts = int(record.get("attempts", "0")) + 1
        status, error, retry_after, latency = await self._post(endpoint, record)
        now = time.time()
        answer: dict[Any, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status": status or "",
            "last_error": error[:_ERROR_TEXT],
            "latency_ms": round(latency * 1000, 1),
        }
        if status is not None and 200 <= status < 300:
            outcome, final = "delivered", True
        elif status == 410:
            outcome, final = "gone", True
            await self.endpoints.disable(tenant, endpoint.id, "the endpoint answered 410 Gone")
        elif status is not None and 400 <= status < 500 and status not in (408, 409, 425, 429):
            outcome, final = "rejected", True
        elif attempts > len(self.schedule):
            outcome, final = "exhausted", True
            await self.endpoints.disable(
                tenant, endpoint.id, f"deliveries failed {attempts} times over a day"
            )
        else:
            outcome, final = "retry", False
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        metrics.WEBHOOK_SECONDS.observe(latency)
        if final:
            answer["status"] = "delivered" if outcome == "delivered" else "failed"
            answer["next_attempt_at"] = ""
            await self.redis.hset(record_key, mapping=answer)
            await self._advance(keys=[lane, due], args=[delivery, now])
            return
        wait = self.schedule[attempts - 1] * random.uniform(0.8, 1.2)
        if retry_after is not None:
            wait = max(wait, retry_after)
        answer["status"], answer["next_attempt_at"] = "retrying", now + wait
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(record_key, mapping=answer)
            pipe.zadd(due, {lane: now + wait}, xx=True)
            await pipe.execute()

    async def _post(
        self, endpoint: Endpoint, record: dict[str, str]
    ) -> tuple[int | None, str, float | None, float]:
        """(status or None, error, Retry-After seconds, latency) of one signed POST."""
        started = time.monotonic()
        try:
            await self._check(endpoint.url)
        except EndpointError as exc:
            return None, exc.detail, None, 0.0
        body = record.get("body", "").encode()
        signed = signing.headers(
            endpoint.signing_secrets(time.time()), record["event_id"], int(time.time()), body
        )
        try:
            answer = await self.http.post(
                endpoint.url, content=body, headers={**signed, "content-type": "application/json"}
            )
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout:g} s", None, time.monotonic() - started
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}", None, time.monotonic() - started
        latency = time.monotonic() - started
        retry_after = None
        if answer.status_code == 429 and answer.headers.get("retry-after", "").isdigit():
            retry_after = float(answer.headers["retry-after"])
        error = "" if answer.is_success else f"HTTP {answer.status_code}: {answer.text[:200]}"
        return answer.status_code, error, retry_after, latency

    async def _check(self, url: str) -> None:
        """The SSRF check before a call, remembered for a minute per URL."""
        if self._reachable.get(url, 0.0) > time.monotonic():
            return
        await check_reachable(url, self.allow_private)
        self._reachable[url] = time.monotonic() + 60.0


class WebhookThread(threading.Thread):
    """The dispatcher beside a worker's rq loop, on its own event loop."""

    def __init__(self, make: Any) -> None:
        super().__init__(name="tidings-webhooks", daemon=True)
        self.make = make
        self.stopping = threading.Event()

    def run(self) -> None:
        """Until ``stopping`` is set."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        dispatcher: Dispatcher = self.make()
        try:
            await dispatcher.run(self.stopping)
        finally:
            await dispatcher.aclose()
            await dispatcher.redis.aclose()
