"""The auditors' API (scope ``audit:read``): search, CSV export and chain verification."""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream

from gateway.api import examples, views
from gateway.api.deps import json_response, principal, services
from gateway.audit import stream as audit
from gateway.audit.backends import open_store
from gateway.audit.chain import StoredEvent
from gateway.audit.store import AuditStore
from gateway.errors import AuditStoreError, InvalidRecipient, Unavailable, Unprocessable
from gateway.recipients import Members, address_key
from gateway.state import keys

_decode = msgspec.json.Decoder()
Since = Annotated[str | None, QueryParameter(name="from")]
CSV_COLUMNS = [
    "seq",
    "id",
    "at",
    "type",
    "notification_id",
    "channel",
    "address",
    "data",
    "prev_hash",
    "hash",
]


def _store(request: Request[Any, Any, Any]) -> AuditStore:
    svc = services(request.app.state)
    if svc.audit is None:
        try:
            svc.audit = open_store(svc.settings.audit_url)
        except AuditStoreError as exc:
            raise Unavailable("audit_unavailable", str(exc)) from None
    return svc.audit


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a store call in a thread; a store that cannot be reached is a 503, not a 500."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except AuditStoreError as exc:
        raise Unavailable("audit_unavailable", str(exc)) from None


def parse_time(name: str, raw: str | None) -> int | None:
    """An RFC 3339 time with offset -> epoch milliseconds; 422 otherwise."""
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        raise Unprocessable("validation_error", f"{name} must be an RFC 3339 time with offset") from None
    if value.tzinfo is None:
        raise Unprocessable("validation_error", f"{name} needs a UTC offset (for example +08:00)")
    return int(value.timestamp() * 1000)


def member_of(members: Members, raw: str, region: str) -> str:
    """The keyed hash an address is searched by: a phone (any form), an email or a push token."""
    if not raw.strip():
        raise Unprocessable("validation_error", "address is empty")
    try:
        return members.of(address_key(raw, region))
    except InvalidRecipient as exc:
        raise Unprocessable("invalid_recipient", str(exc)) from None


def _types(raw: str | None) -> list[str]:
    if not raw:
        return []
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(audit.TYPES))
    if unknown:
        raise Unprocessable(
            "validation_error", f"unknown event type {unknown[0]!r}; known: {', '.join(audit.TYPES)}"
        )
    return wanted


def encode_cursor(seq: int) -> str:
    """An opaque cursor for the position after ``seq``."""
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int:
    """The position a cursor names; 422 for one we did not make."""
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        if not text.startswith("s") or not text[1:].isdigit():
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable("invalid_cursor", "cursor is not one this API returned") from None


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_view(e: StoredEvent) -> dict[str, Any]:
    """One event as auditors see it: the address masked, never its hash."""
    data = _decode.decode(e.body)
    data.pop("type", None)
    data.pop("at", None)
    return {
        "seq": e.seq,
        "id": e.event_id,
        "at": _at(e.at_ms),
        "type": e.type,
        "notification_id": e.notification_id or None,
        "channel": e.channel or None,
        "address": e.address or None,
        "data": data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def _cell(value: object) -> object:
    """A cell a spreadsheet shows as text: one that would start a formula (=, +, -, @, a tab or a
    carriage return) gets a leading apostrophe (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_rows(events: list[StoredEvent], *, spreadsheet: bool = False) -> str:
    """Export lines for a page of events; ``spreadsheet``: cells safe to open in Excel (the console's
    download), else the stored values exactly (the API's, for tools that re-verify the chain)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for e in events:
        v = event_view(e)
        row: list[object] = [
            v["seq"],
            v["id"],
            v["at"],
            v["type"],
            e.notification_id,
            e.channel,
            e.address,
            msgspec.json.encode(v["data"]).decode(),
            e.prev_hash,
            e.hash,
        ]
        writer.writerow([_cell(c) for c in row] if spreadsheet else row)
    return buf.getvalue()


@get(
    "/v1/audit/events",
    summary="Search the audit log (time-ordered, addresses masked, cursor paging)",
    responses={
        **views.ok(views.AuditPage, {"events": [examples.AUDIT_EVENT], "next_cursor": "c2VxOjEwNDI"}),
        **views.problems(
            *views.KEYED, 422, say={422: "A parameter is wrong: a time, the type, the cursor or the limit"}
        ),
    },
)
async def audit_events(
    request: Request[Any, Any, Any],
    address: FromQuery[str | None] = None,
    from_: Since = None,
    to: FromQuery[str | None] = None,
    type_: Annotated[str | None, QueryParameter(name="type")] = None,
    cursor: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
) -> Response[bytes]:
    """Events of the caller's tenant in the order they happened; ``next_cursor`` while more remain."""
    who = await principal(request, "audit:read")
    svc = services(request.app.state)
    if not 1 <= limit <= 1000:
        raise Unprocessable("validation_error", "limit must be between 1 and 1000")
    member = (
        member_of(svc.acceptor.members, address, svc.settings.default_region) if address is not None else None
    )
    since, until = parse_time("from", from_), parse_time("to", to)
    store = _store(request)
    found: list[StoredEvent] = await _run(
        store.search,
        who.tenant,
        member=member,
        since_ms=since,
        until_ms=until,
        types=_types(type_),
        after_seq=decode_cursor(cursor),
        limit=limit,
    )
    next_cursor = encode_cursor(found[-1].seq) if len(found) == limit else None
    return json_response({"events": [event_view(e) for e in found], "next_cursor": next_cursor})


@get(
    "/v1/audit/export",
    summary="Every event in a time range as CSV (streamed)",
    responses={
        **views.text("text/csv", ",".join(CSV_COLUMNS), ",".join(CSV_COLUMNS) + "\n"),
        **views.problems(*views.KEYED, 422, say={422: "A time is not RFC 3339"}),
    },
)
async def audit_export(
    request: Request[Any, Any, Any], from_: Since = None, to: FromQuery[str | None] = None
) -> Stream:
    """Streams a page at a time: memory stays flat for any number of events."""
    who = await principal(request, "audit:read")
    since, until = parse_time("from", from_), parse_time("to", to)
    store = _store(request)

    async def body() -> AsyncIterator[bytes]:
        yield (",".join(CSV_COLUMNS) + "\n").encode()
        pages = store.iter_events(who.tenant, since_ms=since, until_ms=until)
        while True:
            page = await asyncio.to_thread(next, pages, None)
            if page is None:
                return
            yield csv_rows(page).encode()

    return Stream(
        body(),
        media_type="text/csv",  # Litestar adds "; charset=utf-8" to text types
        headers={"Content-Disposition": f'attachment; filename="audit-{who.tenant}.csv"'},
    )


@get(
    "/v1/audit/verify",
    summary="Check the hash chain",
    responses={
        **views.ok(views.Verification, {"ok": True, "checked": 1042, "broken": None}),
        **views.problems(*views.KEYED, 422, say={422: "A time is not RFC 3339"}),
    },
)
async def audit_verify(
    request: Request[Any, Any, Any], from_: Since = None, to: FromQuery[str | None] = None
) -> Response[bytes]:
    """``{"ok": true, "checked": n}`` or ``{"ok": false, "checked": n, "broken": {...}}`` (the first broken link)."""
    who = await principal(request, "audit:read")
    svc = services(request.app.state)
    since, until = parse_time("from", from_), parse_time("to", to)
    anchor = audit.parse_anchor(await svc.store.redis.get(keys.audit_head(who.tenant)))
    result = await _run(_store(request).verify, who.tenant, anchor=anchor, since_ms=since, until_ms=until)
    return json_response(result)


HANDLERS = [audit_events, audit_export, audit_verify]
