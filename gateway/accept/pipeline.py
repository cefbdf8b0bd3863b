"""The accept pipeline: validate, normalize, render, decide, record, enqueue."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from compliance.content import content_pipeline
from compliance.policy import Policy
from compliance.reasons import Reason, ReasonEntry, reason
from compliance.state import Moment
from gateway import events, metrics
from gateway.accept.answers import Answer, Prepared, StateArgs, held_full
from gateway.accept.links import LinkMaker, write_links
from gateway.accept.request import (
    Checked,
    ContentKey,
    check_content,
    check_send_at,
    refuse_dead_push_token,
    resolve_recipient,
)
from gateway.accept.tenant_templates import TenantTemplates
from gateway.accept.variants import choose_variant
from gateway.accept.writes import (
    NO_SUPPRESSIONS,
    RULES,
    audit_rejections,
    compliance_event,
    note_experiments,
    record_fields,
    static_document,
    suppression_reason,
    suppressions,
    track_engagement,
)
from gateway.errors import Conflict, Rejected, Unprocessable
from gateway.ids import new_id
from gateway.models import CHANNELS, NotifyRequest, NotifyResult, Status
from gateway.recipients import (
    Members,
)
from gateway.settings import Settings
from gateway.state import keys
from gateway.state.store import Store
from gateway.timeutil import Clock, rfc3339, system_clock
from templates.renderer import Renderer

_encode = msgspec.json.Encoder()
_decode_idem = msgspec.json.Decoder(dict[str, Any])


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
        self.state_rules = RULES
        self.members = Members(settings.hmac_key)
        self.clock = clock
        self._noted: set[tuple[str, str, str]] = set()  # (tenant, campaign, experiment) noted on the campaign
        self.link_base = (settings.link_base or settings.public_url.rstrip("/") + "/l").rstrip("/")

    # -- public ---------------------------------------------------------------------------------
    async def notify(self, tenant: str, req: NotifyRequest, sealed: str = "") -> Answer:
        """Accept one notify request; ``sealed``: a verification's sealed code (``gateway/verify``),
        which alone lets a ``verification`` template through."""
        fp = fingerprint(req) if req.idempotency_key else ""
        renderer = await self.templates.renderer(tenant)
        try:
            await refuse_dead_push_token(self.store, tenant, req)
            prepared = self.prepare(tenant, req, fp, renderer, verification=bool(sealed))
        except Rejected as rej:
            await self._audit_rejections(tenant, [(req, rej)])
            return Answer(422, rej.problem())
        if sealed and not prepared.final:  # a message that will never go keeps no code
            prepared.record["sealed"] = sealed
        if prepared.links:
            await self._write_links([prepared])
        k, a = self._accept_args(prepared)
        verdict, stored = await self.store.accept(k, a)
        if verdict == "need":  # a rule suppresses it: again, with what the suppression writes
            prepared.record.pop("sealed", None)
            k, a = self._accept_args(prepared, suppressing=True)
            verdict, stored = await self.store.accept(k, a)
        if verdict == "dup":
            return self.replay(stored, fp)
        if verdict == "full":
            raise held_full(prepared)
        if verdict != "new":
            raise Conflict("id_collision", "please retry")
        if stored != "accept":
            prepared.suppress(suppression_reason(stored, prepared.state.cap_limit))
        await self._after_accept([prepared])
        return Answer(prepared.http_status, prepared.result)

    async def notify_many(
        self,
        tenant: str,
        reqs: list[NotifyRequest | Rejected],
        links: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[Answer]:
        """Accept many requests in one round trip, each on its own; ``links``: per request, fields its
        record carries beside its own (a series step's ``series`` and ``series_step``, for the claim)."""
        answers: list[Answer | None] = [None] * len(reqs)
        calls: list[tuple[list[str], list[str | bytes]]] = []
        slots: list[tuple[int, Prepared]] = []
        renderer = await self.templates.renderer(tenant)
        rejected: list[tuple[NotifyRequest | None, Rejected]] = []
        memo: dict[ContentKey, Checked] = {}
        for i, req in enumerate(reqs):
            if isinstance(req, Rejected):
                answers[i] = Answer(422, req.problem())
                rejected.append((None, req))
                continue
            try:
                await refuse_dead_push_token(self.store, tenant, req)
                fp = fingerprint(req) if req.idempotency_key else ""
                prepared = self.prepare(tenant, req, fp, renderer, memo=memo)
            except Rejected as rej:
                answers[i] = Answer(422, rej.problem())
                rejected.append((req, rej))
                continue
            link = links[i] if links is not None else None
            if link:
                prepared.record.update(link)
            calls.append(self._accept_args(prepared))
            slots.append((i, prepared))
        with_links = [p for _, p in slots if p.links]
        if with_links:
            await self._write_links(with_links)
        results = await self.store.accept_many(calls)
        again = [n for n, (verdict, _) in enumerate(results) if verdict == "need"]
        if again:  # suppressed by a rule: again, with what the suppression writes
            redone = await self.store.accept_many(
                [self._accept_args(slots[n][1], suppressing=True) for n in again]
            )
            for n, result in zip(again, redone, strict=True):
                results[n] = result
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
                    prepared.suppress(suppression_reason(stored, prepared.state.cap_limit))
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
            "decision": {Status.QUEUED: "allow", Status.SCHEDULED: "defer", Status.SUPPRESSED: "suppress"}[
                p.result.status
            ],
            "reasons": p.result.reasons,
            "rendered": rendered,
            "segments": p.result.segments,
            "encoding": doc.get("encoding") or None,
            "scheduled_for": p.result.scheduled_for,
        }
        if p.result.status != Status.SUPPRESSED:
            state = await self.store.state_check(
                p.state.optout_key, p.state.scopes, p.state.cap_key, p.state.cap_limit
            )
            if state is not None:
                p.suppress(suppression_reason(state, p.state.cap_limit))
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

    # -- pipeline -------------------------------------------------------------------------------
    def prepare(
        self,
        tenant: str,
        req: NotifyRequest,
        fp: str,
        renderer: Renderer,
        verification: bool = False,
        memo: dict[ContentKey, Checked] | None = None,
    ) -> Prepared:
        """Everything that needs no Redis: checks, normalization, rendering, timing. ``memo``: one
        batch's renderings and content checks, shared by its items that render alike."""
        channel = req.channel
        if channel not in CHANNELS:
            raise Rejected(
                channel,
                [reason(Reason.UNSUPPORTED_CHANNEL, f"channel must be one of {', '.join(CHANNELS)}")],
            )
        for fb in req.fallback:
            if fb not in CHANNELS or fb == channel:
                raise Rejected(
                    channel, [reason(Reason.UNSUPPORTED_CHANNEL, f"fallback channel {fb!r} is not usable")]
                )
        address, zone = resolve_recipient(req, self.settings.default_region)
        variant = None
        if req.experiment is not None:
            req, variant = choose_variant(req, self.settings.hmac_key, self.members.of(address))
        maker, rules, category, draft, verdict = check_content(
            req, renderer, LinkMaker(self.link_base, channel), self.policy.rules(tenant, req.brand),
            self.pipeline, verification, memo,
        )  # fmt: skip
        content_decisions = tuple(draft.decisions)
        if verdict is not None:
            metrics.DECISIONS_BY.inc_each(content_decisions)
            raise Rejected(channel, [verdict.reason])

        now = self.clock()
        send_at = check_send_at(req, now, self.settings.max_schedule_days)
        expires_at = req.expires_at.timestamp() if req.expires_at else None
        moment = Moment(now, max(now, send_at or now), zone, category, expires_at, rules, channel)
        due, due_text, held_by, reasons, timing = self._timing(moment, list(draft.warnings))
        status = (
            Status.SUPPRESSED
            if timing[0][1] == "suppress"
            else Status.QUEUED
            if due <= now
            else Status.SCHEDULED
        )
        metrics.DECISIONS_BY.inc_each(content_decisions, timing)
        final = status is Status.SUPPRESSED
        member = self.members.of(address)
        state = StateArgs() if final else self._state_args(tenant, member, channel, req.brand or "", moment)
        ntf_id = new_id("ntf", keys.member_bucket(member))
        at = rfc3339(now) or ""
        scheduled_for = due if status is Status.SCHEDULED else None
        result = NotifyResult(
            id=ntf_id,
            status=status,
            channel=channel,
            scheduled_for=None if scheduled_for is None else due_text or rfc3339(scheduled_for),
            segments=draft.segments,
            reasons=reasons,
        )
        first = events.encode(
            events.Accepted(at=at, status=status, channel=channel, category=category, segments=draft.segments)
        )
        extra = [compliance_event(at, content_decisions, timing)]
        if status is Status.SCHEDULED:
            extra.append(
                events.encode(events.Scheduled(at=at, scheduled_for=result.scheduled_for, reason=held_by))
            )
        if final:
            extra.append(
                events.encode(events.Suppressed(at=at, reason=Reason.EXPIRED, detail=reasons[0]["detail"]))
            )
        prepared = Prepared(
            tenant,
            record_fields(
                tenant, ntf_id, channel, status, due, now, reasons, member, address, req.brand, state
            ),
            static_document(req, draft, address, zone, now),
            result,
            None if final else due + self.settings.lease_seconds,
            final,
            first,
            req.idempotency_key,
            fp,
            scheduled_for,
            extra,
            at,
            state,
            category,
        )
        track_engagement(prepared, req, maker.made, variant, member)
        return prepared

    def _timing(
        self, m: Moment, reasons: list[ReasonEntry]
    ) -> tuple[float, str | None, str | None, list[ReasonEntry], tuple[tuple[str, str], ...]]:
        """When it can go (quiet hours), whether it expires first: (due, due as text when quiet hours
        made it, held by, reasons, decisions)."""
        due, due_text, held_by = m.due, None, ("send_at" if m.due > m.now else None)
        timing = [("expiry", "pass")]
        quiet = self.state_rules.quiet_hours.decide(m)
        if quiet.release is not None and quiet.reason is not None:
            due, due_text, held_by = quiet.release, rfc3339(quiet.release), "quiet_hours"
            reasons.append({**quiet.reason, "scheduled_for": due_text})
            timing.append((quiet.rule, quiet.outcome))
        expiry = self.state_rules.expiry.decide(m, due, "expires_at is before the message could be sent")
        if expiry.reason is not None:
            reasons = [expiry.reason]
            timing[0] = (expiry.rule, expiry.outcome)
        return due, due_text, held_by, reasons, tuple(timing)

    def _state_args(self, tenant: str, member: str, channel: str, brand: str, m: Moment) -> StateArgs:
        """What the accept script needs for the opt-out test and the cap reservation."""
        rules = self.state_rules
        state = StateArgs(keys.optouts(tenant, member), rules.opt_out.scopes(brand, channel))
        slot = rules.frequency_cap.slot(m)
        if slot is not None:
            state.cap_key = keys.cap(tenant, member, slot.month)
            state.cap_limit = slot.limit
            state.cap_ttl = slot.ttl
        return state

    def _accept_args(self, p: Prepared, suppressing: bool = False) -> tuple[list[str], list[str | bytes]]:
        """The accept script's call; with ``suppressing``, what an opt-out or a full cap would write."""
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
            state=(p.state.optout_key, p.state.scopes, p.state.cap_key, p.state.cap_limit, p.state.cap_ttl),
            suppressions=suppressions(p) if suppressing else NO_SUPPRESSIONS,
            attribution=p.attribution,
        )

    async def _write_links(self, prepared: list[Prepared]) -> None:
        await write_links(self.store.redis, self.settings.link_ttl_days * 86_400, prepared)

    async def _after_accept(self, accepted: list[Prepared]) -> None:
        tested = [p for p in accepted if p.experiment is not None]
        if tested:
            await note_experiments(self.store.redis, tested, self._noted)
        for p in accepted:
            # Held ones wait in their channel's held set (written by the accept script itself).
            metrics.NOTIFICATIONS_BY.inc(p.record["channel"], p.result.status)
            metrics.ACCEPTED.inc(p.record["channel"], p.category, p.result.status)
            code = p.result.reasons[0]["code"] if p.result.status == Status.SUPPRESSED else None
            if code in ("opted_out", "frequency_cap"):  # decided by the accept script
                metrics.DECISIONS_BY.inc("opt_out" if code == "opted_out" else "frequency_cap", "suppress")

    async def _audit_rejections(
        self, tenant: str, rejected: Sequence[tuple[NotifyRequest | None, Rejected]]
    ) -> None:
        await audit_rejections(self.store.redis, self.members, self.settings.default_region, tenant, rejected)
