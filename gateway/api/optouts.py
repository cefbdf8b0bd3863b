"""Opt-out endpoints: members' replies from providers, and the opt-out API of API.md."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream

from channels.signing import SIGNATURE_HEADER, verify
from channels.twilio import verify_twilio
from compliance.replies import ReplyKind, classify
from gateway.api import views
from gateway.api.deps import json_response, principal, raw_header, services
from gateway.errors import BadRequest, Forbidden, NotFound, Unprocessable
from gateway.optouts.importer import CsvImporter
from gateway.recipients import InvalidRecipient, check_email, mask_address, parse_phone
from gateway.state import keys


class SimReply(msgspec.Struct):
    """A member's reply as the simulator pushes it."""

    text: str
    sender: str = msgspec.field(name="from")
    to: str = ""
    brand: str | None = None
    reference: str | None = None
    received_at: str | None = None


@post(
    "/v1/inbound/{provider:str}/replies",
    status_code=200,
    summary="Member replies (MO) from a provider",
    responses=views.ok(dict[str, Any], "The provider's own acknowledgement"),
)
async def replies(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Each provider's own format and proof of origin; an unsubscribe reply opts the member out."""
    if provider == "simulator":
        return await _simulator_reply(request)
    if provider == "twilio":
        return await _twilio_reply(request)
    if provider == "alibaba":
        return await _alibaba_reply(request)
    if provider == "tencent":
        return await _tencent_reply(request)
    raise NotFound("unknown_provider", f"no replies endpoint for provider {provider!r}")


async def _apply(
    request: Request[Any, Any, Any], tenant: str, sender: str, text: str, brand: str | None, provider: str
) -> dict[str, Any]:
    """Classify one reply and act on it; idempotent (the same reply twice is one opt-out)."""
    svc = services(request.app.state)
    kind = classify(text)
    try:
        phone = parse_phone(sender, svc.settings.default_region).e164
    except InvalidRecipient:
        return {"kind": kind.value, "action": "invalid_sender"}
    rules = svc.acceptor.policy.rules(tenant, brand)
    scope_brand = None if rules.replies_global else brand
    if kind is ReplyKind.RESUBSCRIBE and rules.replies_resubscribe:
        evidence = f"{provider} reply from the member: {text[:64]}"
        removed = await svc.optouts.remove(tenant, phone, brand=scope_brand, evidence=evidence, by=provider)
        return {"kind": kind.value, "action": "opted_in" if removed else "none"}
    if kind is not ReplyKind.OPT_OUT:
        return {"kind": kind.value, "action": "none"}
    added = await svc.optouts.add(
        tenant, phone, brand=scope_brand, source="sms_reply", reason=text[:64], by=provider
    )
    return {"kind": kind.value, "action": "opted_out" if added else "already_opted_out"}


async def _simulator_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = services(request.app.state)
    body = await request.body()
    if not verify(svc.settings.simulator_secret, body, raw_header(request, SIGNATURE_HEADER.encode())):
        raise Forbidden("bad_signature", "the request signature does not verify")
    try:
        reply = msgspec.json.decode(body, type=SimReply)
    except msgspec.DecodeError as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    # The simulator ties a reply to the last message it delivered to that number (a sub-port);
    # a reply to nothing it delivered belongs to the development tenant (it is the dev provider).
    tenant = (reply.reference or "").partition(":")[0] or svc.settings.dev_tenant
    return json_response(
        {"ok": True, **await _apply(request, tenant, reply.sender, reply.text, reply.brand, "simulator")}
    )


async def twilio_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A Twilio webhook's form fields, after X-Twilio-Signature checked out over our public URL (with
    its query) and the sorted fields."""
    svc = services(request.app.state)
    raw = await request.body()
    try:
        fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("malformed_request", "body is not UTF-8") from None
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = f"{svc.settings.public_url.rstrip('/')}{request.scope['path']}" + (f"?{query}" if query else "")
    if not verify_twilio(
        svc.settings.twilio_auth_token, url, fields, raw_header(request, b"x-twilio-signature")
    ):
        raise Forbidden("bad_signature", "X-Twilio-Signature does not verify")
    return fields


async def _twilio_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Form-encoded, signed; the tenant (and brand) in the webhook URL's query."""
    fields = await twilio_form(request)
    tenant = request.query_params.get("tenant") or ""
    if not tenant or "From" not in fields:
        raise BadRequest("malformed_reply", "the webhook URL needs ?tenant= and the form needs From and Body")
    await _apply(
        request, tenant, fields["From"], fields.get("Body", ""), request.query_params.get("brand"), "twilio"
    )
    return empty_twiml()


def empty_twiml() -> Response[bytes]:
    """What Twilio expects back when there is nothing to say."""
    twiml = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    return Response(content=twiml, media_type="text/xml", status_code=200)


class AlibabaReply(msgspec.Struct):
    """One SmsUp record of Alibaba Cloud's HTTP batch push."""

    phone_number: str
    content: str
    send_time: str = ""
    dest_code: str = ""
    sequence_id: int | str = ""
    sign_name: str | None = None


def url_tenant(request: Request[Any, Any, Any], provider: str) -> str:
    """For providers that do not sign their calls: the tenant in the URL, proven by its token."""
    tenant = request.query_params.get("tenant") or ""
    token = request.query_params.get("token") or ""
    secret = services(request.app.state).settings.inbound_token
    if not tenant or not hmac.compare_digest(token, inbound_token(secret, provider, tenant)):
        raise Forbidden("bad_token", "the callback URL's token does not match")
    return tenant


class TencentReply(msgspec.Struct):
    """Tencent Cloud SMS reply callback (one reply per call)."""

    mobile: str
    text: str
    nationcode: str = "86"
    sign: str | None = None
    time: int | None = None
    extend: str | None = None


async def _tencent_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Answered {"result": 0, "errmsg": "OK"} as Tencent expects."""
    tenant = url_tenant(request, "tencent")
    try:
        reply = msgspec.json.decode(await request.body(), type=TencentReply)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    sender = reply.mobile if reply.mobile.startswith("+") else f"+{reply.nationcode}{reply.mobile}"
    brand = (reply.sign or "").strip("【】 ") or None
    await _apply(request, tenant, sender, reply.text, brand, "tencent")
    return json_response({"result": 0, "errmsg": "OK"})


async def _alibaba_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A JSON array of SmsUp records; answered {"code": 0} as Alibaba expects (else it pushes again)."""
    tenant = url_tenant(request, "alibaba")
    try:
        records = msgspec.json.decode(await request.body(), type=list[AlibabaReply])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    for record in records:
        # Alibaba's record has no message id: the member is matched by number and signature (brand).
        brand = (record.sign_name or "").strip("【】 ") or None
        await _apply(request, tenant, record.phone_number, record.content, brand, "alibaba")
    return json_response({"code": 0, "msg": "接收成功"})


def inbound_token(secret: str, provider: str, tenant: str) -> str:
    """The token in a provider's push URL for one tenant (providers that do not sign their pushes)."""
    return hmac.new(secret.encode(), f"{provider}:{tenant}".encode(), hashlib.sha256).hexdigest()[:32]


def _address(raw: str, region: str) -> str:
    try:
        return check_email(raw) if "@" in raw else parse_phone(raw, region).e164
    except InvalidRecipient as exc:
        raise Unprocessable("invalid_recipient", str(exc)) from None


async def _view(request: Request[Any, Any, Any], tenant: str, address: str) -> dict[str, Any]:
    entries = await services(request.app.state).optouts.entries(tenant, address)
    shown = [{k: e.get(k) for k in ("brand", "channel", "since", "source")} for e in entries]
    return {"address": mask_address(address), "opted_out": bool(entries), "entries": shown}


@get("/v1/optouts/{address:str}", summary="A member's opt-outs", responses=views.ok(views.OptOutView))
async def get_optouts(request: Request[Any, Any, Any], address: FromPath[str]) -> Response[bytes]:
    """Masked address, whether any opt-out applies, and the entries."""
    who = await principal(request, "optouts")
    return json_response(
        await _view(
            request, who.tenant, _address(address, services(request.app.state).settings.default_region)
        )
    )


class OptOutBody(msgspec.Struct, forbid_unknown_fields=True):
    """PUT body: null brand/channel = every brand/channel."""

    brand: str | None = None
    channel: str | None = None
    reason: str = ""


class OptInBody(msgspec.Struct, forbid_unknown_fields=True):
    """DELETE body: what shows the member consented again."""

    consent_evidence: str = ""


@put(
    "/v1/optouts/{address:str}",
    status_code=200,
    summary="Opt a member out",
    responses=views.ok(views.OptOutView),
)
async def put_optout(
    request: Request[Any, Any, Any], address: FromPath[str], data: JSONBody[OptOutBody]
) -> Response[bytes]:
    """Idempotent: the same scope twice is one entry."""
    who = await principal(request, "optouts")
    svc = services(request.app.state)
    if data.channel is not None and data.channel not in keys.CHANNELS:
        raise Unprocessable(
            "unsupported_channel", f"channel must be one of {', '.join(keys.CHANNELS)} or null"
        )
    addr = _address(address, svc.settings.default_region)
    await svc.optouts.add(
        who.tenant,
        addr,
        brand=data.brand,
        channel=data.channel,
        source="api",
        reason=data.reason[:256],
        by=who.key_id,
    )
    return json_response(await _view(request, who.tenant, addr))


@delete(
    "/v1/optouts/{address:str}",
    status_code=200,
    summary="Opt a member back in (needs consent evidence)",
    responses=views.ok(views.OptOutView),
)
async def delete_optout(
    request: Request[Any, Any, Any],
    address: FromPath[str],
    brand: FromQuery[str | None] = None,
    channel: FromQuery[str | None] = None,
) -> Response[bytes]:
    """Removes exactly the scope given; refused without consent evidence, which is recorded."""
    who = await principal(request, "optouts")
    svc = services(request.app.state)
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw, type=OptInBody) if raw.strip() else OptInBody()
    except msgspec.DecodeError as exc:
        raise BadRequest("malformed_json", str(exc)) from None
    if not body.consent_evidence.strip():
        raise Unprocessable(
            "consent_evidence_required", "opting back in needs consent_evidence (how the member agreed again)"
        )
    addr = _address(address, svc.settings.default_region)
    removed = await svc.optouts.remove(
        who.tenant, addr, brand=brand, channel=channel, evidence=body.consent_evidence[:1000], by=who.key_id
    )
    if not removed:
        raise NotFound("not_found", "no opt-out with that brand and channel for this address")
    return json_response(await _view(request, who.tenant, addr))


@post(
    "/v1/optouts/import",
    status_code=200,
    summary="Import opt-outs from CSV (address,brand,channel)",
    request_max_body_size=1 << 30,
    responses=views.ok(views.ImportReport),
)
async def import_optouts(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Streams the body: a million rows without holding the file in memory."""
    who = await principal(request, "optouts")
    svc = services(request.app.state)
    importer = CsvImporter(svc.optouts, who.tenant, svc.settings.default_region, by=who.key_id)
    report = await importer.run(request.stream())
    return json_response(report.as_dict())


@get(
    "/v1/optouts/export",
    summary="Every opt-out of the tenant as CSV",
    responses=views.text("text/csv", "address,brand,channel,since,source"),
)
async def export_optouts(request: Request[Any, Any, Any]) -> Stream:
    """Streams address,brand,channel,since,source."""
    who = await principal(request, "optouts")
    svc = services(request.app.state)

    async def rows() -> AsyncIterator[bytes]:
        yield b"address,brand,channel,since,source\n"
        async for e in svc.optouts.export(who.tenant):
            yield csv_line(e).encode()

    return Stream(rows(), media_type="text/csv; charset=utf-8")


def csv_line(e: dict[str, Any]) -> str:
    """One export row."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [
            e.get("address", ""),
            e.get("brand") or "",
            e.get("channel") or "",
            e.get("since", ""),
            e.get("source", ""),
        ]
    )
    return buf.getvalue()


HANDLERS = [replies, export_optouts, import_optouts, get_optouts, put_optout, delete_optout]
