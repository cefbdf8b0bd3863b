"""The opt-out API of API.md: look up, opt out, opt back in, import and export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import Stream

from gateway.api import examples, views
from gateway.api.deps import json_response, principal, services
from gateway.errors import BadRequest, InvalidRecipient, NotFound, Unprocessable
from gateway.models import CHANNELS
from gateway.optouts.importer import CsvImporter
from gateway.recipients import check_email, mask_address, parse_phone


def _address(raw: str, region: str) -> str:
    try:
        return check_email(raw) if "@" in raw else parse_phone(raw, region).e164
    except InvalidRecipient as exc:
        raise Unprocessable("invalid_recipient", str(exc)) from None


async def _view(request: Request[Any, Any, Any], tenant: str, address: str) -> dict[str, Any]:
    entries = await services(request.app.state).optouts.entries(tenant, address)
    shown = [{k: e.get(k) for k in ("brand", "channel", "since", "source")} for e in entries]
    return {"address": mask_address(address), "opted_out": bool(entries), "entries": shown}


@get(
    "/v1/optouts/{address:str}",
    summary="A member's opt-outs",
    responses={
        **views.ok(views.OptOutView, examples.OPTOUT_VIEW),
        **views.problems(
            *views.KEYED, 422, say={422: "Not a phone number or email address (invalid_recipient)"}
        ),
    },
)
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
    responses={
        **views.ok(views.OptOutView, examples.OPTOUT_VIEW),
        **views.problems(*views.KEYED, *views.BODY),
    },
)
async def put_optout(
    request: Request[Any, Any, Any],
    address: FromPath[str],
    data: Annotated[OptOutBody, views.body({"brand": "星耀商城", "channel": None, "reason": "客服来电要求"})],
) -> Response[bytes]:
    """Idempotent: the same scope twice is one entry."""
    who = await principal(request, "optouts")
    svc = services(request.app.state)
    if data.channel is not None and data.channel not in CHANNELS:
        raise Unprocessable("unsupported_channel", f"channel must be one of {', '.join(CHANNELS)} or null")
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
    responses={
        **views.ok(views.OptOutView, {**examples.OPTOUT_VIEW, "opted_out": False, "entries": []}),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            404,
            say={404: "No opt-out with that brand and channel for this address (not_found)"},
        ),
    },
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
    responses={
        **views.ok(views.ImportReport, examples.IMPORT_REPORT),
        **views.problems(*views.KEYED, 413),
    },
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
    responses={
        **views.text(
            "text/csv",
            "address,brand,channel,since,source",
            "address,brand,channel,since,source\n+86138****5678,星耀商城,,2026-11-30T21:14:05+08:00,sms_reply\n",
        ),
        **views.problems(
            *views.KEYED,
            400,
            say={400: "include is something other than addresses (invalid_parameter)"},
            show={
                400: examples.problem(
                    400,
                    "invalid_parameter",
                    "Bad request",
                    "include must be `addresses` (or left out for masked addresses)",
                )
            },
        ),
    },
)
async def export_optouts(
    request: Request[Any, Any, Any],
    include: Annotated[
        str | None,
        Parameter(
            description="`addresses` to export full addresses (to sync a suppression list); masked otherwise",
            examples=[Example(value="addresses")],
        ),
    ] = None,
) -> Stream:
    """Streams address,brand,channel,since,source; every export is an audit event."""
    who = await principal(request, "optouts")
    if include not in (None, "addresses"):
        raise BadRequest(
            "invalid_parameter", "include must be `addresses` (or left out for masked addresses)"
        )
    svc = services(request.app.state)
    entries = svc.optouts.export(who.tenant, addresses=include == "addresses", via="api", by=who.key_id)
    first = await anext(entries, None)  # the audit event is recorded before the answer starts

    async def rows() -> AsyncIterator[bytes]:
        yield b"address,brand,channel,since,source\n"
        if first is None:
            return
        yield csv_line(first).encode()
        async for e in entries:
            yield csv_line(e).encode()

    return Stream(rows(), media_type="text/csv")  # Litestar adds "; charset=utf-8" to text types


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


HANDLERS = [export_optouts, import_optouts, get_optouts, put_optout, delete_optout]
