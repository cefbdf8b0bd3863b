"""Delivery receipts: ``POST /v1/inbound/{provider}/receipts`` in each provider's own format.

Every provider's receipt becomes a ``Receipt``; one pipelined script call applies them all. The
receipt script handles the awkward orders: a receipt that comes before the send is recorded is
kept and applied when it is ("early"), a second receipt for the same message changes nothing
("duplicate"). Providers that do not sign their calls (Alibaba, Tencent) are proven by the tenant
token in the callback URL, as for replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.params import FromPath

from channels.signing import SIGNATURE_HEADER, verify
from gateway import metrics
from gateway.api import views
from gateway.api.deps import Services, json_response, raw_header, services
from gateway.api.inbound import empty_twiml, twilio_form, url_tenant
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.state.store import event
from gateway.timeutil import system_clock

# Twilio's MessageStatus values that end a message; the others (queued, sent, ...) are progress.
TWILIO_FINAL = {"delivered": True, "undelivered": False, "failed": False, "read": True}


@dataclass(frozen=True)
class Receipt:
    """One provider receipt: our reference when the provider echoes it, else its message id."""

    provider_message_id: str
    delivered: bool
    code: str | None = None
    reference: str | None = None  # "tenant:ntf_id"
    at: str | None = None
    channel: str = "sms"


class SimReceipt(msgspec.Struct):
    """One receipt as the simulator posts it."""

    reference: str
    provider_message_id: str
    status: str
    channel: str = ""
    code: str | None = None
    at: str | None = None


class SimReceipts(msgspec.Struct):
    """The simulator's receipt batch."""

    receipts: list[SimReceipt]


class AlibabaReport(msgspec.Struct):
    """One SmsReport record of Alibaba Cloud's HTTP batch push."""

    success: bool
    biz_id: str = ""
    out_id: str = ""
    err_code: str = ""
    err_msg: str = ""
    phone_number: str = ""
    report_time: str = ""


class TencentReport(msgspec.Struct):
    """One status report of Tencent Cloud SMS's callback."""

    report_status: str
    sid: str = ""
    errmsg: str = ""
    description: str = ""
    mobile: str = ""
    user_receive_time: str = ""


def _decode(body: bytes, kind: Any) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest("malformed_receipt", str(exc)) from None


@post(
    "/v1/inbound/{provider:str}/receipts",
    status_code=200,
    summary="Delivery receipts from a provider",
    responses=views.ok(dict[str, Any], "The provider's own acknowledgement"),
)
async def receipts(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Check where it comes from, read the provider's format, apply; answer as the provider expects."""
    svc = services(request.app.state)
    # Providers named otherwise in the providers file say so: ?name=<provider name>.
    name = request.query_params.get("name") or provider
    if provider == "simulator":
        body = await request.body()
        if not verify(svc.settings.simulator_secret, body, raw_header(request, SIGNATURE_HEADER.encode())):
            raise Forbidden("bad_signature", "the request signature does not verify")
        batch = _decode(body, SimReceipts)
        found = [
            Receipt(
                r.provider_message_id, r.status == "delivered", r.code, r.reference, r.at, r.channel or "sms"
            )
            for r in batch.receipts
        ]
        applied = await apply(svc, name, None, found)
        return json_response({"ok": True, "received": len(found), "applied": applied})
    if provider == "alibaba":
        tenant = url_tenant(request, "alibaba")
        reports = _decode(await request.body(), list[AlibabaReport])
        found = [
            Receipt(r.biz_id, r.success, r.err_code or None, r.out_id or None, r.report_time or None)
            for r in reports
        ]
        await apply(svc, name, tenant, found)
        return json_response({"code": 0, "msg": "成功"})
    if provider == "tencent":
        tenant = url_tenant(request, "tencent")
        reports = _decode(await request.body(), list[TencentReport])
        found = [
            Receipt(r.sid, r.report_status == "SUCCESS", r.errmsg or None, None, r.user_receive_time or None)
            for r in reports
        ]
        await apply(svc, name, tenant, found)
        return json_response({"result": 0, "errmsg": "OK"})
    if provider == "twilio":
        fields = await twilio_form(request)
        status = fields.get("MessageStatus", "")
        if status in TWILIO_FINAL:
            ref = request.query_params.get("ref")
            channel = "mms" if int(fields.get("NumMedia", "0") or 0) else "sms"
            code = fields.get("ErrorCode") or None
            await apply(
                svc,
                name,
                None,
                [Receipt(fields.get("MessageSid", ""), TWILIO_FINAL[status], code, ref, None, channel)],
            )
        return empty_twiml()
    raise NotFound("unknown_provider", f"no receipts endpoint for provider {provider!r}")


async def apply(svc: Services, provider: str, tenant: str | None, found: list[Receipt]) -> int:
    """Apply receipts; how many changed a notification (or were kept for a send not yet recorded).

    ``tenant``: the tenant the callback URL proved; a receipt naming another tenant is ignored.
    """
    items = []
    channels = []
    for r in found:
        owner, _, ntf_id = (r.reference or "").partition(":")
        if not ntf_id:
            looked_up = await svc.store.lookup_provider_id(provider, r.provider_message_id)
            if looked_up is None:
                continue
            owner, ntf_id = looked_up
        if tenant is not None and owner != tenant:
            continue
        final = "delivered" if r.delivered else "undelivered"
        ev = event(
            "receipt",
            status=final,
            provider=provider,
            provider_code=r.code,
            provider_message_id=r.provider_message_id,
            reported_at=r.at,
        )
        items.append((owner, ntf_id, final, ev, {"receipt_code": r.code or ""}))
        channels.append(r.channel)
    applied = 0
    now = system_clock()
    for (_, _, final, _, _), channel, (verdict, created_at) in zip(
        items, channels, await svc.store.receipts(items), strict=True
    ):
        if verdict in ("delivered", "undelivered", "early"):
            applied += 1
            metrics.RECEIPTS.labels(channel, provider, final).inc()
        if created_at is not None:
            metrics.RECEIPT_SECONDS.labels(channel, provider).observe(max(0.0, now - created_at))
        if verdict in ("delivered", "undelivered"):
            metrics.NOTIFICATIONS_BY.inc(channel, final)
    return applied


HANDLERS = [receipts]
