"""Verification codes: send one under the limits, check one exactly once.

``start`` counts the code against every limit in one script (``verify_start.lua``: per number and
brand, per number block, per tenant; nothing is written when one is full), then sends it through the
accept pipeline as a ``verification`` notification whose stored text holds a placeholder and whose
code is sealed (``gateway/verify/codes.py``). A send the pipeline refuses or suppresses withdraws the
verification (``verify_cancel.lua``), so it neither counts nor can be approved. ``check`` compares the
code's keyed hash in constant time and applies the result in one script (``verify_check.lua``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
import unicodedata
from datetime import UTC, datetime
from typing import Any

import msgspec

from compliance.limits import VerificationPolicy, block_of
from compliance.policy import Policy
from compliance.reasons import Reason
from gateway import events, metrics
from gateway.accept.pipeline import Acceptor
from gateway.errors import InvalidRecipient, NotFound, TooManyRequests, Unprocessable
from gateway.ids import new_id
from gateway.models import NotifyRequest, NotifyResult, Recipient, Status
from gateway.recipients import Members, mask_phone, parse_phone
from gateway.state import keys, scripts
from gateway.timeutil import rfc3339
from gateway.verify.codes import Codes, new_code, placeholder
from gateway.verify.requests import VerificationCheck, VerificationRequest

TEMPLATE = "verification_code"
_ID = re.compile(r"^ver_[0-9A-Z]{26}$")
_LIMITED = {
    1: ("verification_rate_limited", "rate_limited", "this number has had {count} code(s) in {span}"),
    2: (
        "verification_block_limited",
        "block_limited",
        "numbers of this block have had {count} codes in {span}: a burst to one range is refused "
        "(SMS pumping)",
    ),
    3: ("verification_tenant_limited", "tenant_limited", "this tenant has sent {count} codes in {span}"),
}
_KEEP_MS = 86_400_000  # a verification is kept (to answer "expired") for a day after its code


class Verifications:
    """Start and check verifications for any tenant."""

    def __init__(
        self,
        redis: Any,
        acceptor: Acceptor,
        policy: Policy,
        members: Members,
        hmac_key: str,
        default_region: str = "CN",
    ) -> None:
        self.redis = redis
        self.acceptor = acceptor
        self.policy = policy
        self.members = members
        self.codes = Codes(hmac_key)
        self.region = default_region
        self._start = redis.register_script(scripts.VERIFY_START)
        self._check = redis.register_script(scripts.VERIFY_CHECK)
        self._cancel = redis.register_script(scripts.VERIFY_CANCEL)

    @property
    def rules(self) -> VerificationPolicy:
        """The policy's ``[verification]`` table."""
        return self.policy.verification

    async def start(self, tenant: str, req: VerificationRequest, by: str = "") -> dict[str, Any]:
        """Send a new code; 429 over a limit, 422 when its message cannot go."""
        e164 = self._number(req.to.phone, req.channel)
        if not self.policy.rules(tenant, req.brand).brand_registered:
            raise Unprocessable(
                Reason.UNKNOWN_BRAND, f"brand {req.brand!r} has no entry (so no signature) in the policy"
            )
        rules = self.rules
        member = self.members.of(e164)
        masked = mask_phone(e164)
        ver_id = new_id("ver")
        code = new_code(rules.code_length)
        now_ms = int(time.time() * 1000)
        expires_ms = now_ms + rules.ttl_seconds * 1000
        expires_at = rfc3339(expires_ms / 1000) or ""
        logs = self._logs(tenant, member, e164, req.brand)
        created = events.VerificationChanged(
            at=events.at(now_ms / 1000),
            verification_id=ver_id,
            change="created",
            channel=req.channel,
            brand=req.brand,
            purpose=req.purpose,
            expires_at=expires_at,
            by=by or None,
        )
        record = {
            "id": ver_id,
            "hash": self.codes.digest(tenant, ver_id, code),
            "status": "pending",
            "expires_ms": str(expires_ms),
            "attempts": "0",
            "channel": req.channel,
            "brand": req.brand,
            "purpose": req.purpose,
            "masked": masked,
            "created_ms": str(now_ms),
        }
        argv: list[Any] = [
            now_ms,
            ver_id,
            rules.ttl_seconds * 1000 + _KEEP_MS,
            events.encode(created),
            member,
            masked,
            req.channel,
            f"{member}|{req.purpose}",
        ]
        for windows in (rules.per_number, rules.per_block, rules.per_tenant):
            argv.append(len(windows))
            for w in windows:
                argv += [w.count, w.seconds * 1000]
        for k, v in record.items():
            argv += [k, v]
        own = self._own(tenant, member, req.purpose, ver_id)
        limited = await self._start(keys=[*logs, *own], args=argv)
        if int(limited[0]) != 0:
            code_, outcome, text = _LIMITED[int(limited[0])]
            metrics.VERIFICATIONS.labels(req.channel, outcome).inc()
            retry = max(1, -(-int(limited[1]) // 1000))
            detail = text.format(count=int(limited[2]), span=_span(int(limited[3]) // 1000))
            raise TooManyRequests(
                code_, f"{detail}; retry in {retry} s", headers={"Retry-After": str(retry)}, retry_after=retry
            )
        withdraw = functools.partial(self._withdraw, tenant, ver_id, member, masked, req, [*logs, *own])
        try:
            answer = await self.acceptor.notify(
                tenant,
                NotifyRequest(
                    to=Recipient(phone=e164, locale=req.locale),
                    channel=req.channel,
                    brand=req.brand,
                    template=TEMPLATE,
                    params={"code": placeholder(len(code)), "minutes": max(1, rules.ttl_seconds // 60)},
                    expires_at=datetime.fromtimestamp(expires_ms / 1000, UTC),
                    metadata={"verification": ver_id, "purpose": req.purpose},
                ),
                sealed=self.codes.seal(tenant, code),
            )
        except BaseException:  # Redis gone, a held set full...: nothing half done, then the error
            with contextlib.suppress(Exception):
                await withdraw("accept_failed", None)
            raise
        body = answer.body
        result = body if isinstance(body, NotifyResult) else None
        if result is None or result.status not in (Status.QUEUED, Status.SCHEDULED):
            await withdraw(None, body)
            raise _refusal(answer.status, body)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(own[3])  # the code it replaced is gone for good
            pipe.hset(own[0], "notification_id", result.id or "")
            await pipe.execute()
        metrics.VERIFICATIONS.labels(req.channel, "sent").inc()
        return {
            "id": ver_id,
            "status": "pending",
            "channel": req.channel,
            "to": masked,
            "brand": req.brand,
            "purpose": req.purpose,
            "expires_at": expires_at,
            "notification_id": result.id,
        }

    async def check(self, tenant: str, req: VerificationCheck) -> dict[str, Any]:
        """approved once for the right code; pending for a wrong one until the tries run out."""
        given = unicodedata.normalize("NFKC", req.code)  # full-width digits from an input method too
        given = "".join(given.split())
        if not (given.isascii() and given.isdigit() and len(given) == self.rules.code_length):
            why = f"a code is {self.rules.code_length} digits"
            raise Unprocessable("validation_error", why, errors=[{"field": "code", "message": why}])
        if req.id is not None and req.to is not None:
            why = "give id, or to and purpose, not both"
            raise Unprocessable("validation_error", why, errors=[{"field": "to", "message": why}])
        if req.id is not None:
            where = await self.redis.get(keys.verification_id(tenant, req.id))
            if where is None:
                raise NotFound("verification_not_found", f"no verification {req.id!r}")
            member, _, purpose = (where.decode() if isinstance(where, bytes) else where).partition("|")
            ver_id: str | None = req.id
        elif req.to is not None:
            try:
                e164 = parse_phone(req.to.phone, self.region).e164
            except InvalidRecipient as exc:
                raise Unprocessable(Reason.INVALID_RECIPIENT, str(exc), errors=_at_phone(str(exc))) from None
            member, purpose, ver_id = self.members.of(e164), req.purpose, None
        else:
            why = "give id, or to and purpose"
            raise Unprocessable("validation_error", why, errors=[{"field": "id", "message": why}])
        key = keys.verification(tenant, member, purpose)
        found = await self.redis.hmget(key, ["id", "hash", "channel", "masked"])
        stored = [v.decode() if isinstance(v, bytes) else v for v in found]
        if stored[0] is None or (ver_id is not None and stored[0] != ver_id):
            if ver_id is not None:  # a newer code for the same member and purpose replaced it
                return {"id": ver_id, "status": "expired"}
            raise NotFound("verification_not_found", "no pending verification for this number and purpose")
        ver_id, digest, channel, masked = stored
        ok = self.codes.matches(digest, tenant, ver_id, given)
        at = events.at()

        def change(name: str) -> str:
            return events.encode(
                events.VerificationChanged(at=at, verification_id=ver_id, change=name, purpose=purpose)
            )

        status, attempts = await self._check(
            keys=[key, keys.audit(tenant)],
            args=[
                int(time.time() * 1000),
                ver_id,
                digest,
                "1" if ok else "0",
                self.rules.max_attempts,
                change("approved"),
                change("failed_attempt"),
                change("max_attempts"),
                change("expired"),
                member,
                masked,
                channel,
            ],
        )
        status = status.decode() if isinstance(status, bytes) else status
        if status == "used":
            raise NotFound(
                "verification_not_found", "this verification was approved already: a code is single use"
            )
        if status == "missing":
            raise NotFound("verification_not_found", "no pending verification for this number and purpose")
        if status == "superseded":
            status = "expired"
        metrics.VERIFICATIONS.labels(channel, "wrong" if status == "pending" else status).inc()
        out: dict[str, Any] = {"id": ver_id, "status": status}
        if status == "pending":
            out["attempts_left"] = max(0, self.rules.max_attempts - int(attempts))
        return out

    async def get(self, tenant: str, ver_id: str) -> dict[str, Any]:
        """One verification as it stands (never its code)."""
        if not _ID.fullmatch(ver_id):
            raise NotFound("verification_not_found", "no such verification (ids look like ver_01J...)")
        where = await self.redis.get(keys.verification_id(tenant, ver_id))
        if where is None:
            raise NotFound("verification_not_found", f"no verification {ver_id!r}")
        member, _, purpose = (where.decode() if isinstance(where, bytes) else where).partition("|")
        raw = await self.redis.hgetall(keys.verification(tenant, member, purpose))
        rec = {k.decode(): v.decode() for k, v in raw.items()} if raw else {}
        if rec.get("id") != ver_id:
            return {"id": ver_id, "status": "expired", "purpose": purpose}
        status = rec["status"]
        if status == "pending" and time.time() * 1000 >= int(rec["expires_ms"]):
            status = "expired"
        return {
            "id": ver_id,
            "status": status,
            "channel": rec.get("channel"),
            "to": rec.get("masked"),
            "brand": rec.get("brand"),
            "purpose": purpose,
            "attempts": int(rec.get("attempts", "0")),
            "notification_id": rec.get("notification_id") or None,
            "expires_at": rfc3339(int(rec["expires_ms"]) / 1000),
        }

    async def _withdraw(
        self,
        tenant: str,
        ver_id: str,
        member: str,
        masked: str,
        req: VerificationRequest,
        ks: list[str],
        why: str | None,
        body: Any,
    ) -> None:
        """The code's message cannot go: uncount the code, make the one it replaced current again."""
        ev = events.VerificationChanged(
            at=events.at(),
            verification_id=ver_id,
            change="cancelled",
            purpose=req.purpose,
            reason=why or _first_reason(body)["code"],
        )
        await self._cancel(keys=ks, args=[ver_id, events.encode(ev), member, masked, req.channel])
        metrics.VERIFICATIONS.labels(req.channel, "refused").inc()

    def _number(self, raw: str, channel: str) -> str:
        """The number a code may go to, as E.164."""
        try:
            phone = parse_phone(raw, self.region)
        except InvalidRecipient as exc:
            raise Unprocessable(Reason.INVALID_RECIPIENT, str(exc), errors=_at_phone(str(exc))) from None
        if channel == "sms" and not phone.mobile:
            why = "an SMS code needs a mobile number"
            raise Unprocessable(Reason.INVALID_RECIPIENT, why, errors=_at_phone(why))
        allowed = self.rules.countries
        if allowed and phone.region not in allowed:
            why = f"codes go only to numbers of {', '.join(allowed)} (the policy's [verification] countries)"
            raise Unprocessable("country_not_allowed", why, errors=_at_phone(why))
        return phone.e164

    def _own(self, tenant: str, member: str, purpose: str, ver_id: str) -> list[str]:
        """The start and cancel scripts' keys after the three logs."""
        return [
            keys.verification(tenant, member, purpose),
            keys.verification_id(tenant, ver_id),
            keys.audit(tenant),
            keys.verification_replaced(tenant, member, purpose),
        ]

    def _logs(self, tenant: str, member: str, e164: str, brand: str) -> list[str]:
        block = self.members.of("block:" + block_of(e164, self.rules.block_digits))
        return [
            keys.verification_log(tenant, f"n:{member}:{brand}"),
            keys.verification_log(tenant, f"b:{block}"),
            keys.verification_log(tenant, "t"),
        ]


def _first_reason(body: Any) -> dict[str, Any]:
    reasons = body.reasons if isinstance(body, NotifyResult) else (body or {}).get("reasons", [])
    return dict(reasons[0]) if reasons else {"code": "validation_error", "detail": "not sent"}


def _refusal(status: int, body: Any) -> Unprocessable:
    """Why the code's message did not go, as the 422 to answer."""
    first = _first_reason(body)
    reasons = body.reasons if isinstance(body, NotifyResult) else body.get("reasons", [])
    if status == 422 and isinstance(body, dict):
        return Unprocessable(
            str(body.get("code", first["code"])), str(body.get("detail", "")), reasons=reasons
        )
    return Unprocessable(
        str(first["code"]),
        f"the code was not sent: {first.get('detail', '')}",
        reasons=msgspec.to_builtins(reasons),
    )


def _at_phone(message: str) -> list[dict[str, str]]:
    return [{"field": "to.phone", "message": message}]


def _span(seconds: int) -> str:
    for unit, name in ((86_400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % unit == 0:
            n = seconds // unit
            return f"{n} {name}s" if n != 1 else ("an " if name == "hour" else "a ") + name
    return f"{seconds} s"
