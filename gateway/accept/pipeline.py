"""The accept pipeline: validate, normalize, render, decide, record, enqueue."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgspec

from compliance.content import Draft, content_pipeline, run
from compliance.policy import Policy, Rules
from compliance.reasons import Reason, reason
from compliance.timing import cap_month, quiet_release
from gateway import metrics
from gateway.accept.answers import Answer, Prepared, Rejected, StateArgs, held_full
from gateway.accept.request import render_request, resolve_recipient
from gateway.accept.tenant_templates import TenantTemplates
from gateway.audit import events as audit
from gateway.audit.events import tenant_event
from gateway.errors import Conflict, Unprocessable
from gateway.ids import new_id
from gateway.models import NotifyRequest, NotifyResult
from gateway.recipients import (
    Members,
    mask_address,
)
from gateway.settings import Settings
from gateway.state import keys
from gateway.state.store import Store, event
from gateway.timeutil import Clock, rfc3339, system_clock
from templates.renderer import Renderer

_encode = msgspec.json.Encoder()
_decode_idem = msgspec.json.Decoder(dict[str, Any])


@lru_cache(maxsize=1024)
def _scopes(brand: str, channel: str) -> list[str]:
    """The opt-out scopes that stop a message of this brand on this channel (shared, never mutated)."""
    scopes = ["*|*", f"*|{channel}"]
    if brand:
        scopes += [f"{brand}|*", f"{brand}|{channel}"]
    return scopes


@lru_cache(maxsize=256)
def _decisions_json(
    content: tuple[tuple[str, str, str | None], ...], timing: tuple[tuple[str, str], ...]
) -> str:
    decisions = [{"rule": r, "outcome": o, "reason": c} for r, o, c in content]
    decisions += [{"rule": r, "outcome": o} for r, o in timing]
    return _encode.encode(decisions).decode()


def _compliance_event(
    at: str, content: tuple[tuple[str, str, str | None], ...], timing: tuple[tuple[str, str], ...]
) -> str:
    """The accept-time compliance event; the decisions part repeats, so it is encoded once and cached."""
    return (
        f'{{"type":"compliance","at":"{at}","stage":"accept","decisions":{_decisions_json(content, timing)}}}'
    )


def fingerprint(req: NotifyRequest) -> str:
    """What makes two requests "the same body" for idempotency (the key itself excluded)."""
    canonical = msgspec.structs.replace(req, idempotency_key=None)
    return hashlib.sha256(_encode.encode(canonical)).hexdigest()


class Acceptor:
    """Turns notify requests into recorded, queued notifications."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        templates: TenantTemplates,
        policy: Policy,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.templates = templates
        self.policy = policy
        self.pipeline = content_pipeline(policy.matcher)
        self.members = Members(settings.hmac_key)
        self.clock = clock

    # -- public ---------------------------------------------------------------------------------
    async def notify(self, tenant: str, req: NotifyRequest) -> Answer:
        """Accept one notify request."""
        fp = fingerprint(req) if req.idempotency_key else ""
        renderer = await self.templates.renderer(tenant)
        try:
            await self._live_push_token(tenant, req)
            prepared = self.prepare(tenant, req, fp, renderer)
        except Rejected as rej:
            await self._audit_rejections(tenant, [(req, rej)])
            return Answer(422, self.rejection_body(rej))
        k, a = self._accept_args(prepared)
        verdict, stored = await self.store.accept(k, a)
        if verdict == "dup":
            return self.replay(stored, fp)
        if verdict == "full":
            raise held_full(prepared)
        if verdict != "new":
            raise Conflict("id_collision", "please retry")
        if stored != "accept":
            prepared.suppress(stored)
        await self._after_accept([prepared])
        return Answer(prepared.http_status, prepared.result)

    async def notify_many(self, tenant: str, reqs: list[NotifyRequest | Rejected]) -> list[Answer]:
        """Accept many requests with one pipelined round trip; each item succeeds or fails alone."""
        answers: list[Answer | None] = [None] * len(reqs)
        calls: list[tuple[list[str], list[str | bytes]]] = []
        slots: list[tuple[int, Prepared]] = []
        renderer = await self.templates.renderer(tenant)
        rejected: list[tuple[NotifyRequest | None, Rejected]] = []
        for i, req in enumerate(reqs):
            if isinstance(req, Rejected):
                answers[i] = Answer(422, self.rejection_body(req))
                rejected.append((None, req))
                continue
            try:
                await self._live_push_token(tenant, req)
                prepared = self.prepare(
                    tenant, req, fingerprint(req) if req.idempotency_key else "", renderer
                )
            except Rejected as rej:
                answers[i] = Answer(422, self.rejection_body(rej))
                rejected.append((req, rej))
                continue
            calls.append(self._accept_args(prepared))
            slots.append((i, prepared))
        results = await self.store.accept_many(calls)
        if rejected:
            await self._audit_rejections(tenant, rejected)
        accepted: list[Prepared] = []
        for (i, prepared), (verdict, stored) in zip(slots, results, strict=True):
            if verdict == "dup":
                try:
                    answers[i] = self.replay(stored, prepared.fingerprint)
                except (Unprocessable, Conflict) as exc:
                    answers[i] = Answer(exc.status, exc.problem())
            elif verdict == "full":
                full = held_full(prepared)
                answers[i] = Answer(full.status, full.problem())
            elif verdict == "new":
                if stored != "accept":
                    prepared.suppress(stored)
                accepted.append(prepared)
                answers[i] = Answer(prepared.http_status, msgspec.to_builtins(prepared.result))
            else:
                answers[i] = Answer(409, Conflict("id_collision", "please retry").problem())
        await self._after_accept(accepted)
        return [a for a in answers if a is not None]

    async def check(self, tenant: str, req: NotifyRequest) -> dict[str, Any]:
        """The dry run: every rule, the state rules read-only; nothing is stored, sent or counted."""
        try:
            p = self.prepare(tenant, req, "", await self.templates.renderer(tenant))
        except Rejected as rej:
            return {
                "decision": "reject",
                "reasons": rej.reasons,
                "rendered": None,
                "segments": None,
                "encoding": None,
                "scheduled_for": None,
            }
        doc = msgspec.json.decode(p.doc)
        rendered = doc["rendered"]
        body: dict[str, Any] = {
            "decision": {"queued": "allow", "scheduled": "defer", "suppressed": "suppress"}[p.result.status],
            "reasons": p.result.reasons,
            "rendered": rendered,
            "segments": p.result.segments,
            "encoding": doc.get("encoding") or None,
            "scheduled_for": p.result.scheduled_for,
        }
        if p.result.status != "suppressed":
            state = await self.store.state_check(
                p.state.optout_key, p.state.scopes, p.state.cap_key, p.state.cap_limit
            )
            if state is not None:
                p.suppress(state)
                body.update(decision="suppress", reasons=p.result.reasons, scheduled_for=None)
        return body

    def replay(self, stored: str, fp: str) -> Answer:
        """The stored answer for a reused idempotency key, or the error the reuse deserves."""
        record = _decode_idem.decode(stored)
        if record.get("fp") != fp:
            raise Unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body",
            )
        if record.get("state") == "pending":
            raise Conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
                headers={"Retry-After": "1"},
            )
        return Answer(int(record["status"]), record["body"], replayed=True)

    @staticmethod
    def rejection_body(rej: Rejected) -> dict[str, Any]:
        """A rejection is both a notify result and a problem document."""
        first = rej.reasons[0]
        return {
            "type": f"https://tidings.dev/problems/{first['code'].replace('_', '-')}",
            "title": "Notification rejected",
            "status": 422,
            "detail": first["detail"],
            "code": first["code"],
            **msgspec.to_builtins(rej.result()),
        }

    # -- pipeline -------------------------------------------------------------------------------
    def prepare(self, tenant: str, req: NotifyRequest, fp: str, renderer: Renderer) -> Prepared:
        """Everything that needs no Redis: checks, normalization, rendering, timing."""
        channel = req.channel
        if channel not in keys.CHANNELS:
            raise Rejected(
                channel,
                [reason(Reason.UNSUPPORTED_CHANNEL, f"channel must be one of {', '.join(keys.CHANNELS)}")],
            )
        for fb in req.fallback:
            if fb not in keys.CHANNELS or fb == channel:
                raise Rejected(
                    channel, [reason(Reason.UNSUPPORTED_CHANNEL, f"fallback channel {fb!r} is not usable")]
                )
        address, zone = resolve_recipient(req, self.settings.default_region)
        rendered = render_request(req, renderer)
        rules = self.policy.rules(tenant, req.brand)
        draft = Draft(channel=channel, category=req.category, brand=req.brand, fields=rendered, rules=rules)
        verdict = run(self.pipeline, draft)
        content_decisions = tuple(draft.decisions)
        if verdict is not None:
            metrics.DECISIONS_BY.inc_each(content_decisions)
            raise Rejected(channel, [verdict.reason])
        rendered = draft.fields
        segments, encoding = draft.segments, draft.encoding or ""

        now = self.clock()
        ntf_id = new_id("ntf")
        send_at = req.send_at.timestamp() if req.send_at else None
        expires_at = req.expires_at.timestamp() if req.expires_at else None
        due = max(now, send_at or now)
        reasons: list[dict[str, Any]] = list(draft.warnings)
        timing = [("expiry", "pass")]
        held_by = "send_at" if due > now else None
        release = quiet_release(due, zone, req.category, rules)
        if release is not None:
            due, held_by = release, "quiet_hours"
            reasons.append(
                reason(
                    Reason.QUIET_HOURS, "held until the member's quiet hours end", scheduled_for=rfc3339(due)
                )
            )
            timing.append(("quiet_hours", "defer"))
        status = "queued" if due <= now else "scheduled"
        if expires_at is not None and expires_at <= due:
            status = "suppressed"
            reasons = [reason(Reason.EXPIRED, "expires_at is before the message could be sent")]
            timing[0] = ("expiry", "suppress")
        timing_decisions = tuple(timing)
        metrics.DECISIONS_BY.inc_each(content_decisions, timing_decisions)
        final = status == "suppressed"
        scheduled_for = due if status == "scheduled" else None
        member = self.members.of(address)
        state = StateArgs()
        if not final:
            state = self._state_rules(tenant, member, channel, req, rules, due, zone, now)
        static = {
            "category": req.category,
            "address": address,
            "user_id": req.to.user_id or "",
            "timezone": zone,
            "locale": req.to.locale or "",
            "brand": req.brand or "",
            "template": req.template or "",
            "params": req.params,
            "rendered": rendered,
            "segments": "" if segments is None else str(segments),
            "encoding": encoding,
            "send_at": "" if send_at is None else repr(send_at),
            "expires_at": "" if expires_at is None else repr(expires_at),
            "created_at": repr(now),
            "fallback": req.fallback,
            # What a fallback channel needs to be tried later: every address and literal content.
            "to": req.to,
            "content": req.content,
            "metadata": req.metadata,
            "idempotency_key": req.idempotency_key or "",
        }
        # Fields the scripts read or change stay separate; the rest travels as one document.
        record = {
            "id": ntf_id,
            "tenant": tenant,
            "channel": channel,
            "status": status,
            "not_before": repr(due),
            "updated_at": repr(now),
            "created_at": repr(now),
            "attempts": "0",
            "reasons": _encode.encode(reasons).decode(),
            "member": member,
            "masked": mask_address(address, channel),
            "brand": req.brand or "",
        }
        if state.cap_key:
            record["cap_key"] = state.cap_key
        result = NotifyResult(
            id=ntf_id,
            status=status,
            channel=channel,
            scheduled_for=rfc3339(scheduled_for),
            segments=segments,
            reasons=reasons,
        )
        at = rfc3339(now) or ""
        first = (
            f'{{"type":"accepted","at":"{at}","status":"{status}","channel":"{channel}","category":"{req.category}"'
            + (f',"segments":{segments}}}' if segments is not None else "}")
        )
        extra = [_compliance_event(at, content_decisions, timing_decisions)]
        if status == "scheduled":
            extra.append(event("scheduled", at=now, scheduled_for=rfc3339(scheduled_for), reason=held_by))
        if final:
            extra.append(event("suppressed", at=now, reason=str(Reason.EXPIRED), detail=reasons[0]["detail"]))
        lease = None if final else due + self.settings.lease_seconds
        return Prepared(
            tenant,
            record,
            _encode.encode(static),
            result,
            lease,
            final,
            first,
            req.idempotency_key,
            fp,
            scheduled_for,
            extra,
            at,
            state,
            req.category,
        )

    def _state_rules(
        self,
        tenant: str,
        member: str,
        channel: str,
        req: NotifyRequest,
        rules: Rules,
        due: float,
        zone: str,
        now: float,
    ) -> StateArgs:
        """What the accept script needs for the opt-out test and the cap reservation."""
        state = StateArgs(keys.optouts(tenant, member), _scopes(req.brand or "", channel))
        if rules.monthly_cap > 0 and req.category in rules.cap_categories:
            month, month_end = cap_month(due, zone)
            state.cap_key = keys.cap(tenant, member, month)
            state.cap_limit = rules.monthly_cap
            state.cap_ttl = int(month_end - now) + 7 * 86_400
        return state

    def _accept_args(self, p: Prepared) -> tuple[list[str], list[str | bytes]]:
        idem = ""
        if p.idem_key:
            body = msgspec.to_builtins(p.result)
            idem = _encode.encode({"fp": p.fingerprint, "status": p.http_status, "body": body}).decode()
        return self.store.accept_args(
            p.tenant,
            p.record,
            doc=p.doc,
            events=[p.first_event, *p.extra_events],
            lease_score=p.lease_score,
            final=p.final,
            idem_key=p.idem_key,
            idem_record=idem,
            now=p.accepted_at,
            state=(p.state.optout_key, p.state.scopes, p.state.cap_key, p.state.cap_limit, p.state.cap_ttl),
        )

    async def _after_accept(self, accepted: list[Prepared]) -> None:
        for p in accepted:
            # Held ones wait in their channel's held set (written by the accept script itself).
            metrics.NOTIFICATIONS_BY.inc(p.record["channel"], p.result.status)
            metrics.ACCEPTED.inc(p.record["channel"], p.category, p.result.status)
            code = p.result.reasons[0]["code"] if p.result.status == "suppressed" else None
            if code in ("opted_out", "frequency_cap"):  # decided by the accept script
                metrics.DECISIONS_BY.inc("opt_out" if code == "opted_out" else "frequency_cap", "suppress")

    async def _audit_rejections(
        self, tenant: str, rejected: Sequence[tuple[NotifyRequest | None, Rejected]]
    ) -> None:
        """Rejected requests are never stored, but auditors see that, and why, they were refused."""
        for req, rej in rejected:
            channel = rej.channel if rej.channel in keys.CHANNELS else "unknown"
            category = req.category if req is not None else "unknown"
            metrics.ACCEPTED.inc(channel, category, "rejected")
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for req, rej in rejected:
                where: dict[str, str] = {"channel": rej.channel if rej.channel in keys.CHANNELS else ""}
                if req is not None:
                    try:
                        address, _ = resolve_recipient(req, self.settings.default_region)
                    except Rejected:
                        pass
                    else:
                        where["member"] = self.members.of(address)
                        where["masked"] = mask_address(address, req.channel)
                ev = tenant_event(
                    "rejected",
                    channel=rej.channel or None,
                    category=req.category if req is not None else None,
                    brand=req.brand if req is not None else None,
                    reasons=rej.reasons,
                )
                audit.queue(pipe, tenant, ev, **where)
            await pipe.execute()

    async def _live_push_token(self, tenant: str, req: NotifyRequest) -> None:
        """A push token its provider called unregistered is refused (one look-up, push only)."""
        token = req.to.push_token
        if req.channel == "push" and token and await self.store.is_dead_token(tenant, token):
            raise Rejected(
                "push",
                [
                    reason(
                        Reason.INVALID_RECIPIENT, "the push provider said this device token is unregistered"
                    )
                ],
            )


async def accept_fallbacks(
    acceptor: Acceptor, tenant: str, requests: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """Accept notifications a worker builds for fallback channels: (HTTP status, body) for each."""
    reqs: list[NotifyRequest | Rejected] = []
    for raw in requests:
        try:
            reqs.append(msgspec.convert(raw, NotifyRequest, strict=False))
        except msgspec.ValidationError as exc:
            reqs.append(Rejected(str(raw.get("channel", "")), [reason(Reason.VALIDATION_ERROR, str(exc))]))
    answers = await acceptor.notify_many(tenant, reqs)
    return [(a.status, a.body if isinstance(a.body, dict) else msgspec.to_builtins(a.body)) for a in answers]
