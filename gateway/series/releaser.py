"""The releaser: due series steps become notifications, a batch at a time, through the accept pipeline.

Steps wait in one sorted set per tenant, not as rq jobs: a million active series are a million
members of a sorted set. Each round takes up to ``batch`` due steps atomically into the releaser's
hands (a crashed releaser's steps are taken over once their lease lapses), accepts them with one
pipelined round trip (every accept check applies then: opt-out, cap, quiet hours, wording, expiry
against the anchor), and records what each became on its series. Each step's notification carries
an idempotency key of its own, so a step taken over after a crash is never accepted twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError

from compliance.reasons import Reason
from gateway import events, metrics
from gateway.accept.pipeline import Acceptor
from gateway.errors import Rejected
from gateway.models import NotifyRequest, Recipient, Status
from gateway.series.definitions import step_experiment
from gateway.series.planning import days_left, expires_on
from gateway.series.service import SeriesService
from gateway.state import keys, scripts
from gateway.state.record import text_of
from gateway.timeutil import pause, system_clock
from templates.series import SeriesDefinition

log = logging.getLogger("tidings.series")
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()
_recipient = msgspec.json.Decoder(Recipient)
TRANSIENT = (409, 429, 503)  # the step is tried again a little later
RETRY_SECONDS = 30.0
# What the releaser reads of a series to turn one of its steps into a notification (then the step's status).
_FIELDS = ("status", "defv", "to", "params", "metadata", "brand", "anchor", "zone", "member")


class Releaser:
    """Releases due steps of every tenant's series."""

    def __init__(
        self, series: SeriesService, acceptor: Acceptor, *, batch: int = 500, lease: float = 120.0
    ) -> None:
        self.series = series
        self.acceptor = acceptor
        self.redis = series.redis
        self.store = series.store
        self.batch = batch
        self.lease = lease

    async def step(self) -> int:
        """One round over the tenants; how many steps it released."""
        total = 0
        for raw in await self.redis.smembers(keys.series_tenants()):
            total += await self.release(text_of(raw))
        return total

    async def release(self, tenant: str) -> int:
        """Release one batch of a tenant's due steps."""
        now = system_clock()
        taken = [
            text_of(m)
            for m in (
                await self.store.run_many(
                    scripts.SERIES_POP,
                    [
                        (
                            [keys.series_due(tenant), keys.series_releasing(tenant)],
                            [repr(now), self.batch, repr(now + self.lease)],
                        )
                    ],
                )
            )[0]
        ]
        if not taken:
            return 0
        entries: list[tuple[str, str, int]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in taken:
                sid, _, number = entry.partition("|")
                i = int(number)
                entries.append((entry, sid, i))
                pipe.hmget(keys.series(tenant, sid), *_FIELDS, f"s{i}")
            found = await pipe.execute()
        reqs: list[NotifyRequest | Rejected] = []
        links: list[dict[str, str] | None] = []
        work: list[tuple[str, str, int, SeriesDefinition, dict[str, str]]] = []
        dropped: list[str] = []
        for (entry, sid, i), raw in zip(entries, found, strict=True):
            f = dict(zip((*_FIELDS, "step"), map(text_of, raw), strict=True))
            definition = await self.series.definitions.version(tenant, f["defv"]) if f["defv"] else None
            if (
                f["status"] != "active"
                or f["step"] != "pending"
                or definition is None
                or i > len(definition.steps)
            ):
                dropped.append(entry)
                continue
            step = definition.steps[i - 1]
            anchor = float(f["anchor"])
            reqs.append(
                NotifyRequest(
                    to=_recipient.decode(f["to"]),
                    channel=step.channel,
                    fallback=list(step.fallback),
                    category=definition.category,  # type: ignore[arg-type]  # validated: marketing | transactional
                    brand=f["brand"] or None,
                    template=step.template or None,
                    experiment=step_experiment(step),
                    params={
                        **_decode.decode(f["params"]),
                        "expires_on": expires_on(anchor, f["zone"]),
                        "days_left": days_left(anchor, now),
                    },
                    expires_at=datetime.fromtimestamp(anchor, UTC),
                    idempotency_key=f"series:{sid}:{step.name}",
                    metadata={**_decode.decode(f["metadata"]), "series_id": sid, "series_step": step.name},
                )
            )
            links.append({"series": sid, "series_step": str(i)})
            work.append((entry, sid, i, definition, f))
        if dropped:
            await self.redis.zrem(keys.series_releasing(tenant), *dropped)
        if not reqs:
            return 0
        answers = await self.acceptor.notify_many(tenant, reqs, links)
        calls: list[tuple[list[str], list[Any]]] = []
        later: list[tuple[str, str | None]] = []
        retry: dict[str, float] = {}
        at = events.at(now)
        for (entry, sid, i, definition, f), answer in zip(work, answers, strict=True):
            body = answer.body if isinstance(answer.body, dict) else msgspec.to_builtins(answer.body)
            if answer.status in TRANSIENT:
                retry[entry] = now + RETRY_SECONDS
                continue
            ntf_id = body.get("id") or ""
            if answer.status >= 400:
                status, reasons = (
                    "suppressed",
                    body.get("reasons") or [{"code": body.get("code"), "detail": body.get("detail")}],
                )
            elif body.get("status") == Status.SUPPRESSED:
                status, reasons = "suppressed", body.get("reasons") or []
            else:
                status, reasons = "sent", []
            ended_too = (
                await self._covered(tenant, definition, i, f)
                if status == "suppressed" and reasons and reasons[0].get("code") == "opted_out"
                else []
            )
            step = definition.steps[i - 1]
            ev = events.encode(
                events.SeriesChanged(
                    at=at,
                    series_id=sid,
                    change="step",
                    step=step.name,
                    status=status,
                    notification_id=ntf_id or None,
                    reasons=reasons or None,
                )
            )
            done = events.encode(
                events.SeriesChanged(at=at, series_id=sid, change="completed", status="completed")
            )
            calls.append(
                (
                    [
                        keys.series(tenant, sid),
                        keys.series_releasing(tenant),
                        keys.member_series(tenant, f["member"]),
                        keys.audit(tenant),
                    ],
                    [
                        i,
                        status,
                        ntf_id,
                        _encode.encode(reasons).decode(),
                        repr(now),
                        ev,
                        done,
                        entry,
                        *ended_too,
                    ],
                )
            )
            later.append((status, ntf_id if status == "sent" else None))
            if ended_too:  # the later steps the same opt-out ends
                metrics.SERIES_STEPS.labels(status).inc(len(ended_too))
        if retry:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(keys.series_due(tenant), retry)
                pipe.zrem(keys.series_releasing(tenant), *retry)
                await pipe.execute()
        results = [text_of(r) for r in await self.store.run_many(scripts.SERIES_STEP, calls)] if calls else []
        for res, (status, ntf_id) in zip(results, later, strict=True):
            if res in ("ok", "completed"):
                metrics.SERIES_STEPS.labels(status).inc()
                if res == "completed":
                    metrics.SERIES_ENDED.labels("completed").inc()
                continue
            # The series ended while this step was being released: its notification goes no further.
            metrics.SERIES_STEPS.labels("cancelled").inc()
            if ntf_id:
                why = Reason.SERIES_CANCELLED if res == "cancelled" else Reason.EXITED
                await self.store.cancel(
                    tenant, ntf_id, events.encode(events.Cancelled(at=events.at(), by="series", reason=why))
                )
        return len(calls)

    async def _covered(
        self, tenant: str, definition: SeriesDefinition, i: int, f: dict[str, str]
    ) -> list[int]:
        """The later steps an opt-out covers, when it covers every one of them (else none)."""
        rest = list(range(i + 1, len(definition.steps) + 1))
        if not rest:
            return []
        opted = {text_of(k) for k in await self.redis.hkeys(keys.optouts(tenant, f["member"]))}
        scopes = self.acceptor.state_rules.opt_out.scopes
        for j in rest:
            if not any(s in opted for s in scopes(f["brand"], definition.steps[j - 1].channel)):
                return []
        return rest


class ReleaserThread(threading.Thread):
    """The releaser beside a worker's rq loop, on its own event loop."""

    def __init__(self, make: Any, interval: float = 0.5) -> None:
        super().__init__(name="tidings-series", daemon=True)
        self.make = make
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        """Until ``stopping`` is set."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        releaser, close = self.make()
        try:
            while not self.stopping.is_set():
                try:
                    released = await releaser.step()
                except (RedisError, OSError) as exc:
                    log.warning("series: steps not released (%s); tried again", type(exc).__name__)
                    released = 0
                if released < releaser.batch:
                    await pause(self.stopping, self.interval)
        finally:
            await close()
