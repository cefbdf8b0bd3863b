"""From accepted notification to provider: rq jobs carrying batches of ids, claims, sends, retries."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from channels import Message, Outcome, SendResult
from channels.base import BatchAdapter
from channels.routing import Health, Provider, Router
from compliance.policy import Policy
from compliance.reasons import Reason, reason
from compliance.state import Moment, state_rules
from gateway import events, metrics
from gateway.accept.request import DEFAULT_TIMEZONE
from gateway.delivery.fallback import fallback_event, fallback_request
from gateway.delivery.messages import message_of
from gateway.delivery.outcomes import (
    RATE_LIMITED,
    Outcomes,
    failure,
    opted_out_since_accept,
    series_step_cancelled,
    series_step_event,
)
from gateway.delivery.quotas import Quotas
from gateway.delivery.wechat import note_refusals, spend_grants
from gateway.models import Status
from gateway.settings import Settings
from gateway.state.grants import GrantLedger
from gateway.state.store import Claimed, Store
from gateway.state.store import Outcome as Written
from gateway.timeutil import rfc3339, system_clock
from gateway.verify.codes import Codes

log = logging.getLogger("tidings.dispatch")


@dataclass(frozen=True)
class Retry:
    """Ids to try again at a time."""

    when: float
    ids: list[str]


# Accepts fallback notifications (the Acceptor, in the worker): (HTTP status, answer body) per request.
FallbackAccept = Callable[[str, list[dict[str, Any]]], Awaitable[list[tuple[int, dict[str, Any]]]]]

# Push providers' codes for a device token that will never work again (FCM, APNs).
DEAD_TOKEN_CODES = frozenset({"UNREGISTERED", "BadDeviceToken", "Unregistered"})


@dataclass
class _Tried:
    """What the providers of one route said so far, by message index."""

    done: dict[int, tuple[SendResult, float]] = field(default_factory=dict)  # sent or refused for good
    last: dict[int, tuple[SendResult, float]] = field(default_factory=dict)  # the last transient failure
    deferred: dict[int, float] = field(default_factory=dict)  # held by a rate limit: wait seconds
    over: dict[int, tuple[float, str]] = field(default_factory=dict)  # over a quota: (wait, over_quota)
    soonest: float | None = None  # when the first open circuit lets a probe through


class DeliveryEngine:
    """Sends one batch: claim, send concurrently (bounded), write outcomes, plan retries."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        router: Router,
        health: Health,
        policy: Policy,
        fallback: FallbackAccept | None = None,
    ) -> None:
        self.fallback = fallback
        self.settings = settings
        self.policy = policy
        self.rules = state_rules()
        self.outcomes = Outcomes(settings)
        self.store = store
        self.router = router
        self.health = health
        self.codes = Codes(settings.hmac_key)
        self.quotas = Quotas(store.redis, settings.hmac_key)
        self._sem = asyncio.Semaphore(settings.send_concurrency)
        self.grants = GrantLedger(store.redis)

    async def deliver(self, tenant: str, channel: str, ids: Sequence[str]) -> list[Retry]:
        """Deliver what is due among ids; returns the retries to schedule."""
        now = system_clock()
        # Sends of this batch may wait for rate-limit slots until half the lease is gone: the rest
        # of the lease covers the send itself and recording it, before another worker may take over.
        wait_until = time.monotonic() + self.settings.lease_seconds / 2
        at = rfc3339(now) or ""
        claim = await self.store.claim(
            tenant,
            ids,
            now,
            now + self.settings.lease_seconds,
            scopes=self.rules.opt_out.scopes,
            suppression=opted_out_since_accept(at),
            series_ended=series_step_cancelled(at),
            series_step=functools.partial(series_step_event, at),
        )
        claimed = claim.claimed
        early: dict[float, list[str]] = defaultdict(list)
        for ntf_id, when in claim.not_due.items():
            early[when].append(ntf_id)
        for _ in claim.series_ended:
            metrics.NOTIFICATIONS_BY.inc(channel, Status.CANCELLED)
        if claim.series_ended:
            metrics.SERIES_STEPS.labels("cancelled").inc(len(claim.series_ended))
        if claim.opted_out:
            metrics.DECISIONS_BY.inc("opt_out", "suppress")
            for _ in claim.opted_out:
                metrics.NOTIFICATIONS_BY.inc(channel, Status.SUPPRESSED)
        if not claimed:
            return [Retry(when, batch) for when, batch in sorted(early.items())]
        results: list[tuple[Written, SendResult | None]] = []
        to_send: list[tuple[Claimed, Message]] = []
        routed = bool(self.router.routes.get(channel))
        for c in claimed:
            checked = self._check(c, routed, now)
            if checked is not None:
                results.append((checked, None))
            else:
                to_send.append((c, message_of(self.settings, self.codes, tenant, channel, c)))
        if channel == "wechat" and to_send:  # a grant spent for each, or no_wechat_grant
            held, stopped = await spend_grants(
                self.grants, self.outcomes, tenant, [c for c, _ in to_send], now
            )
            results += stopped
            kept = {c.id for c in held}
            to_send = [(c, m) for c, m in to_send if c.id in kept]
        if to_send:
            routed_results = await self._route(channel, to_send, wait_until)
            results += routed_results
            if channel == "wechat":
                await note_refusals(self.grants, tenant, [c for c, _ in to_send], routed_results)
        outcomes = [o for o, _ in results]
        cap_keys = {c.id: c.record.cap_key for c in claimed if c.record.cap_key}
        written = await self.store.record_outcomes(tenant, outcomes, system_clock(), cap_keys)
        return await self._settle(tenant, channel, claimed, results, written, early)

    async def _settle(
        self,
        tenant: str,
        channel: str,
        claimed: list[Claimed],
        results: list[tuple[Written, SendResult | None]],
        written: list[str],
        early: dict[float, list[str]],
    ) -> list[Retry]:
        """After the outcomes are written: metrics, provider ids, dead tokens, fallbacks, the retry plan."""
        retries: dict[float, list[str]] = early
        sent_pairs: list[tuple[str, str, str]] = []
        dead_tokens: list[str] = []
        by_id = {c.id: c for c in claimed}
        addresses = {c.id: c.record.address for c in claimed}
        failed_with_fallback: list[Claimed] = []
        for (o, result), verdict in zip(results, written, strict=True):
            if verdict == "stale":
                continue
            if result is not None and result.outcome is Outcome.REJECTED and result.code in DEAD_TOKEN_CODES:
                dead_tokens.append(addresses.get(o.id, ""))
            if o.kind in ("failed", "dead") and result is not None and by_id[o.id].record.fallback:
                failed_with_fallback.append(by_id[o.id])
            if o.kind in ("retry", "defer"):
                retries[float(o.fields["not_before"])].append(o.id)
            if result is not None and result.provider_message_id and o.kind == "sent":
                sent_pairs.append((result.provider, result.provider_message_id, o.id))
            status = {"retry": None, "defer": None, "dead": Status.FAILED}.get(o.kind, o.kind)
            if verdict in (Status.DELIVERED, Status.UNDELIVERED):
                status = verdict  # a receipt had arrived before the send was recorded
                metrics.NOTIFICATIONS_BY.inc(channel, Status.SENT)
            if status is not None:
                metrics.NOTIFICATIONS_BY.inc(channel, status)
            if o.kind == "dead":
                metrics.DEAD_LETTERED.labels(channel).inc()
        if sent_pairs:
            await self.store.map_provider_ids(tenant, sent_pairs)
        if dead_tokens:
            await self.store.mark_dead_tokens(tenant, [t for t in dead_tokens if t])
        if failed_with_fallback:
            await self._fall_back(tenant, failed_with_fallback)
        return [Retry(when, batch) for when, batch in sorted(retries.items())]

    async def _fall_back(self, tenant: str, failed: list[Claimed]) -> None:
        """A channel could not deliver: the next channel of the request's ``fallback`` list is tried as a
        new notification, through the whole accept pipeline (its own opt-out scope, cap and content)."""
        if self.fallback is None:
            return
        requests = [fallback_request(c) for c in failed]
        answers = await self.fallback(tenant, requests)
        for c, request, (status, body) in zip(failed, requests, answers, strict=True):
            await self.store.append_event(tenant, c.id, fallback_event(request, status, body))

    def _check(self, c: Claimed, routed: bool, now: float) -> Written | None:
        """Dispatch-time checks (the opt-out test ran in the claim): an outcome without a provider, or None.

        The same state rules as at accept: expiry, then quiet hours (which may have begun meanwhile).
        """
        r = c.record
        if r.category == "verification" and self.codes.unseal(r.tenant, r.sealed) is None:
            # Its code is sealed only until the first send is over: a replay or a copy cannot send it.
            why = reason(Reason.EXPIRED, "the verification code is no longer held (codes are not kept)")
            return self.outcomes.final(c, Status.FAILED, Reason.EXPIRED, why, now)
        m = Moment(
            now,
            now,
            r.timezone or DEFAULT_TIMEZONE,
            r.category,
            r.expires_at,
            self.policy.rules(r.tenant or None, r.brand or None),
            r.channel,
        )
        expiry = self.rules.expiry.decide(
            m, now, "expires_at passed before the message could be sent", at_expiry=False
        )
        if expiry.reason is not None:
            metrics.DECISIONS_BY.inc(expiry.rule, expiry.outcome)
            return self.outcomes.final(c, Status.SUPPRESSED, Reason.EXPIRED, expiry.reason, now)
        quiet = self.rules.quiet_hours.decide(m)
        if quiet.release is not None:
            metrics.DECISIONS_BY.inc(quiet.rule, quiet.outcome)
            expiry = self.rules.expiry.decide(
                m, quiet.release, "the member's quiet hours end after expires_at", at_expiry=False
            )
            if expiry.reason is not None:
                return self.outcomes.final(c, Status.SUPPRESSED, Reason.EXPIRED, expiry.reason, now)
            ev = events.Compliance(
                at=events.at(now),
                stage="dispatch",
                rule=quiet.rule,
                outcome=quiet.outcome,
                scheduled_for=rfc3339(quiet.release),
            )
            fields = {"status": Status.SCHEDULED, "not_before": repr(quiet.release)}
            lease = quiet.release + self.settings.lease_seconds
            return Written(c.id, c.attempt, "defer", events.encode(ev), fields, lease)
        if not routed:
            why = reason(Reason.UNSUPPORTED_CHANNEL, "no provider is configured for this channel")
            return self.outcomes.final(c, Status.FAILED, Reason.UNSUPPORTED_CHANNEL, why, now)
        return None

    async def _route(
        self, channel: str, items: list[tuple[Claimed, Message]], wait_until: float
    ) -> list[tuple[Written, SendResult | None]]:
        """Send through the channel's providers in route order: a message the first one cannot take
        (transient failure, open circuit) goes to the next, within this attempt."""
        tried = _Tried()
        pending = list(range(len(items)))
        for rank, provider in enumerate(self.router.candidates(channel)):
            if not pending:
                break
            pending = await self._try_provider(channel, provider, rank, items, pending, wait_until, tried)
        return self._answers(channel, items, tried)

    async def _try_provider(
        self,
        channel: str,
        provider: Provider,
        rank: int,
        items: list[tuple[Claimed, Message]],
        pending: list[int],
        wait_until: float,
        tried: _Tried,
    ) -> list[int]:
        """Offer the pending messages to one provider (as its circuit allows); the ones still pending."""
        admission, reopens = await self.health.admit(provider)
        if admission == "open":
            tried.soonest = reopens if tried.soonest is None else min(tried.soonest, reopens)
            return pending
        if rank > 0:
            metrics.FAILOVERS.labels(channel, provider.name).inc(len(pending))
        # Half-open: one message tests the provider; the others move on.
        batch = pending if admission == "closed" else pending[:1]
        if provider.quotas:  # the provider's own limits, counted before the call; over one: not sent
            offered = [(i, items[i][1]) for i in pending]
            batch = await self.quotas.with_room(provider, offered, tried.over, admission == "probe")
            if not batch:
                return pending
        outs = await self._send_via(provider, [items[i][1] for i in batch], wait_until)
        if provider.quotas:  # what the provider did not take does not count against it
            untaken = [items[i][1] for i, o in zip(batch, outs, strict=True) if o[0].outcome is Outcome.RETRY]
            if untaken:
                await self.quotas.give_back(provider, untaken)
        failed = [i for i, out in zip(batch, outs, strict=True) if out[0].outcome is Outcome.RETRY]
        # Held back by the rate limit: not sent, so not a failure of the provider.
        held = {i for i, out in zip(batch, outs, strict=True) if out[0].code == RATE_LIMITED}
        await self.health.report(provider, len(batch) - len(failed), len(failed) - len(held))
        for i, out in zip(batch, outs, strict=True):
            if i in held:
                tried.deferred[i] = max(tried.deferred.get(i, 0.0), out[0].retry_after or 0.0)
            else:
                (tried.last if out[0].outcome is Outcome.RETRY else tried.done)[i] = out
        sent = set(batch) - set(failed)
        return [i for i in pending if i not in sent]

    def _answers(
        self, channel: str, items: list[tuple[Claimed, Message]], tried: _Tried
    ) -> list[tuple[Written, SendResult | None]]:
        """Each message's outcome: its provider's answer, held for the rate limit, or unroutable."""
        # Not tried anywhere (every circuit open): an attempt like any failed send, so the retry budget
        # stays the one rule for giving up; not before a probe may go.
        unroutable = (
            SendResult(
                Outcome.RETRY,
                "router",
                code="circuit_open",
                detail="every provider's circuit is open",
                retry_after=tried.soonest,
            ),
            0.0,
        )
        answers: list[tuple[Written, SendResult | None]] = []
        for i, (c, _) in enumerate(items):
            if i in tried.over and i not in tried.done and i not in tried.last and i not in tried.deferred:
                answers.append((self.outcomes.over_quota(c, *tried.over[i]), None))
            elif i in tried.deferred and i not in tried.done and i not in tried.last:
                answers.append((self.outcomes.held(c, tried.deferred[i]), None))
            else:
                answer = tried.done.get(i) or tried.last.get(i) or unroutable
                answers.append(self.outcomes.outcome(channel, c, *answer))
        return answers

    async def _send_via(
        self, provider: Provider, messages: list[Message], wait_until: float
    ) -> list[tuple[SendResult, float]]:
        """Send concurrently (bounded) through one provider, its batch API when it has one, at its rate."""
        adapter = provider.adapter
        limit = provider.timeout + 1
        size = adapter.max_batch if isinstance(adapter, BatchAdapter) and len(messages) > 1 else 1

        def give_back(chunk: list[Message], after: float) -> list[tuple[SendResult, float]]:
            held = SendResult(Outcome.RETRY, provider.name, code=RATE_LIMITED, retry_after=after)
            return [(held, 0.0)] * len(chunk)

        async def one_chunk(chunk: list[Message]) -> list[tuple[SendResult, float]]:
            async with self._sem:
                # Reserve after taking a slot, so reserved sends are not bunched by the wait for one.
                # A wait past wait_until would outlive the lease (another worker would take the
                # message over): such a message is given back for later instead.
                budget = max(0.0, wait_until - time.monotonic())
                reserved, wait = await self.health.reserve(provider, len(chunk), budget)
                if not reserved:
                    return give_back(chunk, wait)
                if wait:
                    await asyncio.sleep(wait)
                # The reservation spaced the planned times; sleepers that wake late (a stalled loop)
                # would bunch, so the send itself also passes the provider's window of actual sends.
                while True:
                    budget = max(0.0, wait_until - time.monotonic())
                    room, wait = await self.health.gate(provider, len(chunk), budget)
                    if not room:
                        return give_back(chunk, wait)
                    if not wait:
                        break
                    await asyncio.sleep(wait)
                started = time.perf_counter()
                try:
                    if isinstance(adapter, BatchAdapter) and len(chunk) > 1:
                        results = await asyncio.wait_for(adapter.send_batch(chunk), limit)
                    else:
                        results = [await asyncio.wait_for(adapter.send(chunk[0]), limit)]
                except Exception as exc:  # an adapter bug or time-out must not lose the batch
                    results = [failure(provider.name, exc)] * len(chunk)
                elapsed = time.perf_counter() - started
            return [(r, elapsed) for r in results]

        chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
        done = await asyncio.gather(*(one_chunk(ch) for ch in chunks))
        return [pair for chunk_result in done for pair in chunk_result]
