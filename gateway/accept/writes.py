"""What an accepted notify writes: the record's fields, its static document, its events, and what the
accept script writes instead when a state rule suppresses it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import msgspec
import redis.asyncio as aioredis

from compliance.content import Draft
from compliance.reasons import Reason, ReasonEntry
from compliance.state import state_rules
from gateway import events, metrics
from gateway.accept.answers import Prepared, StateArgs
from gateway.accept.request import claimed_category, resolve_recipient
from gateway.audit import stream as audit
from gateway.errors import Rejected
from gateway.events import Decision
from gateway.models import CHANNELS, NotifyRequest, Status, Variant
from gateway.recipients import Members, mask_address
from gateway.state import keys

_encode = msgspec.json.Encoder()


@lru_cache(maxsize=256)
def _decisions(
    content: tuple[tuple[str, str, str | None], ...], timing: tuple[tuple[str, str], ...]
) -> msgspec.Raw:
    """Every rule's decision at accept, encoded once (the same few sets repeat across accepts)."""
    decisions = [Decision(r, o, c) for r, o, c in content]
    decisions += [Decision(r, o) for r, o in timing]
    return msgspec.Raw(_encode.encode(decisions))


def compliance_event(
    at: str, content: tuple[tuple[str, str, str | None], ...], timing: tuple[tuple[str, str], ...]
) -> str:
    """The accept-time compliance event."""
    return events.encode(events.Compliance(at=at, stage="accept", decisions=_decisions(content, timing)))


RULES = state_rules()


@lru_cache(maxsize=64)
def _reasons_json(rule: str, cap_limit: int) -> tuple[str, ReasonEntry]:
    """A state rule's suppression reason, and the ``reasons`` list holding it as JSON."""
    why = RULES.opt_out.reason() if rule == RULES.opt_out.name else RULES.frequency_cap.reason(cap_limit)
    return _encode.encode([why]).decode(), why


def _suppression(at: str, rule: str, cap_limit: int) -> tuple[str, str, str]:
    """What a state rule's suppression at accept writes: the reasons, the compliance and suppressed events."""
    reasons, why = _reasons_json(rule, cap_limit)
    code = why["code"]
    return (
        reasons,
        events.encode(events.Compliance(at=at, stage="accept", rule=rule, outcome="suppress", reason=code)),
        events.encode(events.Suppressed(at=at, reason=code, detail=why["detail"])),
    )


def suppression_reason(decision: str, cap_limit: int) -> ReasonEntry:
    """The reason of a suppression the accept script decided ('opted_out' or 'frequency_cap')."""
    if decision == Reason.OPTED_OUT:
        return RULES.opt_out.reason()
    return ReasonEntry(**RULES.frequency_cap.reason(cap_limit))


def record_fields(
    tenant: str,
    ntf_id: str,
    channel: str,
    status: Status,
    due: float,
    now: float,
    reasons: list[ReasonEntry],
    member: str,
    address: str,
    brand: str | None,
    state: StateArgs,
) -> dict[str, str]:
    """The fields the scripts read or change (the rest travels as one document). The first four are
    the audit entry's, in the order the accept script reads them."""
    at = repr(now)
    record = {
        "id": ntf_id,
        "member": member,
        "masked": mask_address(address, channel),
        "channel": channel,
        "tenant": tenant,
        "status": status,
        "not_before": repr(due),
        "updated_at": at,
        "created_at": at,
        "attempts": "0",
        "reasons": _encode.encode(reasons).decode() if reasons else "[]",
        "brand": brand or "",
    }
    if state.cap_key:  # the accept script takes the slot (or, suppressing it, says cap_counted 0)
        record["cap_key"] = state.cap_key
        record["cap_counted"] = "1"
    return record


def static_document(req: NotifyRequest, draft: Draft, address: str, zone: str, now: float) -> bytes:
    """The static part of the record: what the worker sends and a fallback channel needs."""
    send_at, expires_at = req.send_at, req.expires_at
    return _encode.encode(
        {
            "category": draft.category,
            "address": address,
            "user_id": req.to.user_id or "",
            "timezone": zone,
            "locale": req.to.locale or "",
            "brand": req.brand or "",
            "template": req.template or "",
            "params": req.params,
            "rendered": draft.fields,
            "segments": "" if draft.segments is None else str(draft.segments),
            "encoding": draft.encoding or "",
            "send_at": "" if send_at is None else repr(send_at.timestamp()),
            "expires_at": "" if expires_at is None else repr(expires_at.timestamp()),
            "created_at": repr(now),
            "fallback": req.fallback,
            # What a fallback channel needs to be tried later: every address and literal content.
            "to": req.to,
            "content": req.content,
            "metadata": req.metadata,
            "idempotency_key": req.idempotency_key or "",
        }
    )


NO_SUPPRESSIONS: tuple[str, ...] = ()  # a first accept call leaves them out: most accepts suppress nothing


def _without_answers(at: str, cap_limit: int) -> tuple[str, ...]:
    """The eight strings of ``suppressions`` for a request without an idempotency key."""
    return (
        *_suppression(at, RULES.opt_out.name, cap_limit),
        "",
        *_suppression(at, RULES.frequency_cap.name, cap_limit),
        "",
    )


def suppressions(p: Prepared) -> tuple[str, ...]:
    """For each state rule the script may apply (opt-out, cap): reasons, its two events, the stored answer."""
    if not p.idem_key:
        return _without_answers(p.accepted_at, p.state.cap_limit)
    out: list[str] = []
    for rule in (RULES.opt_out.name, RULES.frequency_cap.name):
        strings = _suppression(p.accepted_at, rule, p.state.cap_limit)
        body = msgspec.to_builtins(p.result)
        body.update(status=Status.SUPPRESSED, scheduled_for=None, reasons=msgspec.json.decode(strings[0]))
        out += (*strings, _encode.encode({"fp": p.fingerprint, "status": 200, "body": body}).decode())
    return tuple(out)


async def audit_rejections(
    redis: aioredis.Redis,
    members: Members,
    region: str,
    tenant: str,
    rejected: Sequence[tuple[NotifyRequest | None, Rejected]],
) -> None:
    """Rejected requests are never stored, but auditors see that, and why, they were refused."""
    for req, rej in rejected:
        channel = rej.channel if rej.channel in CHANNELS else "unknown"
        category = claimed_category(req)
        metrics.ACCEPTED.inc(channel, category, Status.REJECTED)
    async with redis.pipeline(transaction=False) as pipe:
        for req, rej in rejected:
            where: dict[str, str] = {"channel": rej.channel if rej.channel in CHANNELS else ""}
            if req is not None:
                try:
                    address, _ = resolve_recipient(req, region)
                except Rejected:
                    pass
                else:
                    where["member"] = members.of(address)
                    where["masked"] = mask_address(address, req.channel)
            ev = events.encode(
                events.RejectedRequest(
                    at=events.at(),
                    channel=rej.channel or None,
                    category=claimed_category(req) if req is not None else None,
                    brand=req.brand if req is not None else None,
                    reasons=rej.reasons,
                )
            )
            audit.queue(pipe, tenant, ev, **where)
        await pipe.execute()


async def note_experiments(
    redis: aioredis.Redis, prepared: Sequence[Prepared], noted: set[tuple[str, str, str]]
) -> None:
    """Each campaign's report needs its experiment (name, metric, variants): written once per process."""
    new = []
    for p in prepared:
        if p.experiment is None:
            continue
        campaign, experiment = p.experiment
        mark = (p.tenant, campaign, experiment.name)
        if mark not in noted:
            noted.add(mark)
            new.append((p.tenant, campaign, experiment))
    if not new:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for tenant, campaign, experiment in new:
            doc = {
                "name": experiment.name,
                "metric": experiment.metric,
                "variants": [v.name for v in experiment.variants],
            }
            pipe.hsetnx(keys.campaign(tenant, campaign), "_experiment", _encode.encode(doc))
        await pipe.execute()


def track_engagement(
    p: Prepared, req: NotifyRequest, links: list[tuple[str, str]], variant: Variant | None, member: str
) -> None:
    """What engagement needs of an accepted notification: its tracked links, its campaign funnel's
    dimensions (campaign, channel, variant, series step; read by the audit), its experiment and
    variant, and the keys a conversion is attributed by (the member's campaign list, the code)."""
    tenant, channel = p.tenant, p.record["channel"]
    if links:
        p.links = links
        p.record["links"] = " ".join(code for code, _ in links)
    campaign = req.metadata.get("campaign")
    if campaign not in (None, ""):
        step = req.metadata.get("series_step")
        arm = variant.name if variant is not None else ""
        p.record["cmp"] = f"{campaign}\t{channel}\t{arm}\t{'' if step is None else step}"
        if not p.final:
            p.attribution = (keys.member_campaign(tenant, member, str(campaign)), "")
    if variant is not None and req.experiment is not None:
        p.record["experiment"] = req.experiment.name
        p.record["variant"] = variant.name
        if campaign not in (None, ""):
            p.experiment = (str(campaign), req.experiment)
    code = req.params.get("code")
    # A verification's code is a secret (and only its placeholder here), never a redemption code.
    if code not in (None, "") and not p.final and p.category != "verification":
        p.attribution = (p.attribution[0], keys.exclusive_code(tenant, str(code)))
