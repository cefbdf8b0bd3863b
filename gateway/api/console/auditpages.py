"""The auditors' pages (scope ``audit:read``): search with filters, CSV export, chain verification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Stream, Template

from gateway.api.audit import CSV_COLUMNS, _store, csv_rows, event_view
from gateway.api.console.lookup import (
    _member_hash,
    cursor_of,
    event_page,
    look_up,
    older_link,
    parse_local,
)
from gateway.api.console.pages import record
from gateway.api.console.render import Refused, form, page, sessions, signed_in
from gateway.api.console.session import User
from gateway.api.deps import services
from gateway.audit import stream as audit
from gateway.audit.chain import StoredEvent
from gateway.audit.store import AuditStore
from gateway.errors import AuditStoreError
from gateway.state import keys

PAGE = 50
SCOPE = "audit:read"


def _criteria(
    request: Request[Any, Any, Any],
    user: User,
    member: str | None,
    type_: str | None,
    from_: str | None,
    to: str | None,
) -> dict[str, Any]:
    """The store's search arguments from the page's query (each checked)."""
    types = [type_] if type_ in audit.TYPES else []
    return {
        "member": _member_hash(member) if member else None,
        "types": types,
        "since_ms": parse_local(request, "from", from_, user),
        "until_ms": parse_local(request, "to", to, user),
    }


@get("/audit")
async def audit_page(
    request: Request[Any, Any, Any],
    member: FromQuery[str | None] = None,
    type_: FromQuery[str | None] = None,
    from_: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
    before_at: FromQuery[int | None] = None,
) -> Template:
    """Events newest first, a page at a time, each page one index walk (fast on a log of millions):
    a member's events by (member, seq), a time window by (time, seq), else by (type, seq) or seq."""
    user = await signed_in(request, SCOPE)
    criteria = _criteria(request, user, member, type_, from_, to)
    found, more = await event_page(
        request, user, **criteria, cursor=cursor_of(request, user, before, before_at)
    )
    filters = {
        "member": member or "",
        "type_": criteria["types"][0] if criteria["types"] else "",
        "from_": from_ or "",
        "to": to or "",
    }
    return page(
        request,
        "audit.html",
        user,
        rows=[event_view(e) for e in found],
        older=older_link(filters, more),
        types=audit.TYPES,
        filters=filters,
        export=urlencode({k: v for k, v in filters.items() if v}),
    )


@post("/audit", status_code=303)
async def audit_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """A posted search: the address becomes the member's keyed hash (no number in the URL)."""
    user = await signed_in(request, SCOPE)
    fields = await form(request, user)
    params = {
        "type_": fields.get("type", "").strip(),
        "from_": fields.get("from", "").strip(),
        "to": fields.get("to", "").strip(),
    }
    parse_local(request, "from", params["from_"], user)
    parse_local(request, "to", params["to"], user)
    if fields.get("address", "").strip():
        params["member"] = await look_up(request, user, fields["address"])
    return Redirect(f"/console/audit?{urlencode({k: v for k, v in params.items() if v})}", status_code=303)


def _pages(store: AuditStore, tenant: str, criteria: dict[str, Any]) -> Iterator[list[StoredEvent]]:
    after = 0
    while True:
        rows = store.search(tenant, **criteria, after_seq=after, limit=5000)
        if not rows:
            return
        yield rows
        after = rows[-1].seq


@get("/audit/export")
async def audit_export(
    request: Request[Any, Any, Any],
    member: FromQuery[str | None] = None,
    type_: FromQuery[str | None] = None,
    from_: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
) -> Stream:
    """The filtered events as CSV, oldest first, streamed (flat memory); the export is audited."""
    user = await signed_in(request, SCOPE)
    criteria = _criteria(request, user, member, type_, from_, to)
    store = _store(request)
    await record(request, user, "audit_export", detail=urlencode({k: v for k, v in criteria.items() if v}))
    pages = _pages(store, user.tenant, criteria)

    async def body() -> AsyncIterator[bytes]:
        yield ("\ufeff" + ",".join(CSV_COLUMNS) + "\n").encode()  # the BOM: Excel reads the Chinese
        while True:
            chunk = await asyncio.to_thread(next, pages, None)
            if chunk is None:
                return
            yield csv_rows(chunk, spreadsheet=True).encode()

    return Stream(
        body(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-{user.tenant}.csv"'},
    )


@get("/audit/verify")
async def verify_page(request: Request[Any, Any, Any]) -> Template:
    """The verify button and the last verification's result (verifying is posted, and audited)."""
    user = await signed_in(request, SCOPE)
    kept = await sessions(request).kept(user, "verify")
    found = msgspec.json.decode(kept) if kept else {"result": None, "event": None}
    return page(request, "verify.html", user, result=found["result"], event=found["event"])


@post("/audit/verify", status_code=303)
async def verify(request: Request[Any, Any, Any]) -> Response[Any]:
    """Walk the whole chain with the Redis anchor; a broken link is named, with the event it is at."""
    user = await signed_in(request, SCOPE)
    await form(request, user)
    svc = services(request.app.state)
    anchor = audit.parse_anchor(await svc.store.redis.get(keys.audit_head(user.tenant)))
    store = _store(request)
    try:
        result: dict[str, Any] = await asyncio.to_thread(store.verify, user.tenant, anchor=anchor)
    except AuditStoreError as exc:
        raise Refused(503, str(exc), user) from None
    event = None
    if not result["ok"]:
        seq = int(result["broken"]["seq"])
        near = await asyncio.to_thread(store.search, user.tenant, after_seq=seq - 1, limit=1)
        event = event_view(near[0]) if near and near[0].seq == seq else None
    outcome = "ok" if result["ok"] else f"broken at {result['broken']['seq']} ({result['broken']['reason']})"
    await record(request, user, "audit_verify", detail=outcome)
    await sessions(request).keep(
        user, "verify", msgspec.json.encode({"result": result, "event": event}).decode()
    )
    return Redirect("/console/audit/verify", status_code=303)


HANDLERS = [audit_page, audit_search, audit_export, verify_page, verify]
