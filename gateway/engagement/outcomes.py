"""Conversions and complaints: what members did after a message, attributed to it and audited.

A conversion names its notification, or an exclusive code a message carried (param ``code``), or the
member and campaign: then it goes to the member's latest delivered message of the campaign within
the attribution window. A complaint goes on the message's timeline when it names one, and opts the
member out of the brand (``TIDINGS_COMPLAINT_OPTS_OUT``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import redis.asyncio as aioredis
from msgspec import Meta

from gateway import events, metrics
from gateway.accept.request import resolve_recipient
from gateway.audit import stream as audit
from gateway.errors import NotFound, Rejected, Unprocessable
from gateway.models import AwareTime, NotifyRequest, Recipient
from gateway.optouts.store import OptOuts
from gateway.recipients import Members, mask_address
from gateway.settings import Settings
from gateway.state import keys, scripts
from gateway.state.record import text_of
from gateway.state.store import Store
from gateway.timeutil import rfc3339, system_clock

Id = Annotated[str, Meta(min_length=1, max_length=64)]


class ConversionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/conversions``: one of notification_id, code, or to + campaign."""

    type: Annotated[str, Meta(min_length=1, max_length=64)] = "redeemed"
    value: Annotated[float, Meta(ge=0, le=1e12)] | None = None
    occurred_at: AwareTime | None = None
    notification_id: Id | None = None
    code: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    to: Recipient | None = None
    campaign: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


class ComplaintRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/complaints``."""

    to: Recipient
    source: Literal["carrier", "12321", "customer_service"]
    brand: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    notification_id: Id | None = None
    occurred_at: AwareTime | None = None


class Outcomes:
    """Records conversions and complaints."""

    def __init__(self, settings: Settings, store: Store, optouts: OptOuts, members: Members) -> None:
        self.settings = settings
        self.store = store
        self.redis: aioredis.Redis = store.redis
        self.optouts = optouts
        self.members = members

    def _address(self, to: Recipient) -> tuple[str, str]:
        channel = "sms" if to.phone else "email" if to.email else "push"
        try:
            address, _ = resolve_recipient(
                NotifyRequest(to=to, channel=channel), self.settings.default_region
            )
        except Rejected as rej:
            raise Unprocessable(
                rej.reasons[0]["code"], rej.reasons[0]["detail"], reasons=rej.reasons
            ) from None
        return address, channel

    async def _attribute(self, tenant: str, req: ConversionRequest) -> tuple[str, str]:
        """(notification id, attributed by) or Unprocessable not_attributable."""
        given = [n for n in ("notification_id", "code", "to") if getattr(req, n) is not None]
        if len(given) != 1 or (req.to is not None) != (req.campaign is not None):
            raise Unprocessable(
                "validation_error",
                "give exactly one of notification_id, code, or to with campaign",
                errors=[
                    {"field": "notification_id", "message": "one of notification_id, code, to + campaign"}
                ],
            )
        if req.notification_id is not None:
            if await self.redis.exists(keys.notification(tenant, req.notification_id)):
                return req.notification_id, "notification"
            raise Unprocessable("not_attributable", "no notification with that id (or it has expired)")
        if req.code is not None:
            found = await self.redis.get(keys.exclusive_code(tenant, req.code))
            if found is None:
                raise Unprocessable("not_attributable", "no message carried that code (or it has expired)")
            return text_of(found), "code"
        assert req.to is not None and req.campaign is not None
        address, _ = self._address(req.to)
        ids = [
            text_of(i)
            for i in await self.redis.lrange(
                keys.member_campaign(tenant, self.members.of(address), req.campaign), 0, -1
            )
        ]
        since = (
            req.occurred_at.timestamp() if req.occurred_at else system_clock()
        ) - self.settings.attribution_days * 86_400
        if ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hmget(keys.notification(tenant, i), "status", "updated_at")
                found_all = await pipe.execute()
            for ntf_id, (status, updated) in zip(ids, found_all, strict=True):
                if text_of(status) == "delivered" and float(text_of(updated) or 0) >= since:
                    return ntf_id, "campaign"
        raise Unprocessable(
            "not_attributable",
            f"the member has no delivered message of campaign {req.campaign!r} in the last "
            f"{self.settings.attribution_days:g} days",
        )

    async def convert(self, tenant: str, req: ConversionRequest) -> dict[str, object]:
        """Record a conversion on its notification; the answer says where it went and if it was the first."""
        ntf_id, by = await self._attribute(tenant, req)
        at = events.at()
        occurred = rfc3339(req.occurred_at.timestamp()) if req.occurred_at else None
        common = {
            "at": at,
            "kind": req.type,
            "by": by,
            "value": req.value,
            "occurred_at": occurred,
            "code": req.code,
        }
        first = events.encode(events.Converted(**common, first=True))  # type: ignore[arg-type]
        later = events.encode(events.Converted(**common, first=False))  # type: ignore[arg-type]
        (res,) = await self.store.run_many(
            scripts.FIRST_EVENT,
            [
                (
                    [keys.notification(tenant, ntf_id), keys.events(tenant, ntf_id), keys.audit(tenant)],
                    ["converted_at", first, later, repr(system_clock())],
                )
            ],
        )
        if int(res) < 0:
            raise Unprocessable("not_attributable", "the notification has expired")
        metrics.CONVERSIONS.labels(by).inc()
        return {"notification_id": ntf_id, "attributed_by": by, "first": int(res) == 1}

    async def complain(self, tenant: str, req: ComplaintRequest, by: str = "") -> dict[str, object]:
        """Record a complaint (on the message's timeline when named) and opt the member out of the brand."""
        address, channel = self._address(req.to)
        opted = False
        if self.settings.complaint_opts_out:
            opted = await self.optouts.add(
                tenant,
                address,
                brand=req.brand,
                source="complaint",
                reason=f"complaint ({req.source})",
                by=by,
            )
        ev = events.encode(
            events.Complained(
                at=events.at(),
                source=req.source,
                brand=req.brand,
                occurred_at=rfc3339(req.occurred_at.timestamp()) if req.occurred_at else None,
                opted_out=opted,
            )
        )
        if req.notification_id is not None:
            if not await self.redis.exists(keys.notification(tenant, req.notification_id)):
                raise NotFound("not_found", "no notification with that id (or it has expired)")
            await self.store.append_event(tenant, req.notification_id, ev)
        else:
            await audit.record(
                self.redis,
                tenant,
                ev,
                member=self.members.of(address),
                masked=mask_address(address, channel),
                channel=channel,
            )
        metrics.COMPLAINTS.labels(req.source).inc()
        return {"recorded": True, "notification_id": req.notification_id, "opted_out": opted}
