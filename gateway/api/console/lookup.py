"""Finding notifications and members: search forms (posted: no number in a URL), lists and timelines."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from compliance.timing import cap_month
from gateway.api.audit import _store
from gateway.api.console.i18n import label
from gateway.api.console.pages import record
from gateway.api.console.render import DISPLAY_TZ, Refused, form, lang_of, page, sessions, signed_in
from gateway.api.console.session import User
from gateway.api.deps import services
from gateway.api.notifications import _valid_id, notification_view
from gateway.audit.chain import StoredEvent
from gateway.errors import AuditStoreError, InvalidRecipient
from gateway.models import Status
from gateway.recipients import address_key, mask_address
from gateway.state import keys

PAGE = 50
_PHONE_LIKE = re.compile(r"[+0-9][0-9 ()+-]{5,30}")
SCOPE = "notify"  # as GET /v1/notifications/{id}: a key that may send may look its sends up
_SCAN_PAGES = 6  # pages of accepted events read at most to fill one filtered page
MEMBER_RE_LEN = 32


def parse_local(
    request: Request[Any, Any, Any], name: str, raw: str | None, user: User | None = None
) -> int | None:
    """A form's time: '2026-12-01 09:00' or '2026/12/01' (Beijing time), or RFC 3339 with an offset
    -> epoch ms; a 422 page (with the menu) otherwise."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-")[:40])
    except ValueError:
        lang = lang_of(request)
        raise Refused(
            422, f"{label(lang, 'bad_input')}: {label(lang, name)} ({label(lang, 'time_hint')})", user
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=DISPLAY_TZ)
    return int(moment.timestamp() * 1000)


def _member_hash(raw: str) -> str:
    """A member hash from a URL: 32 lowercase hex characters, else 404 (nothing else is looked up)."""
    if len(raw) != MEMBER_RE_LEN or any(c not in "0123456789abcdef" for c in raw):
        raise Refused(404, "not found: not a member's keyed hash")
    return raw


Cursor = dict[str, int]  # the query parameters of the next page: before (seq) and, by time, before_at


def cursor_of(
    request: Request[Any, Any, Any], user: User, before: int | None, before_at: int | None
) -> Cursor | None:
    """The cursor a page link carries; a number out of range is a 422 page, not a database error."""
    cursor = {k: v for k, v in (("before", before), ("before_at", before_at)) if v is not None}
    if any(not 0 <= v < 2**62 for v in cursor.values()):
        raise Refused(422, label(lang_of(request), "bad_input"), user)
    return cursor or None


async def event_page(
    request: Request[Any, Any, Any],
    user: User,
    *,
    member: str | None,
    types: list[str],
    since_ms: int | None,
    until_ms: int | None,
    cursor: Cursor | None,
    limit: int = PAGE,
) -> tuple[list[StoredEvent], Cursor | None]:
    """A page of events newest first, and the cursor of the next: one index walk each, whatever the
    log holds: a member by (member, seq), a time window by (time, seq), else by (type, seq) or seq."""
    store = _store(request)
    cursor = cursor or {}
    try:
        if member is None and (since_ms is not None or until_ms is not None):
            at, seq = cursor.get("before_at"), cursor.get("before")
            found: list[StoredEvent] = await asyncio.to_thread(
                store.recent,
                user.tenant,
                since_ms=since_ms,
                until_ms=until_ms,
                types=types,
                before=(at, seq) if at is not None and seq is not None else None,
                limit=limit,
            )
            more = {"before_at": found[-1].at_ms, "before": found[-1].seq} if len(found) == limit else None
        else:
            found = await asyncio.to_thread(
                store.search,
                user.tenant,
                member=member,
                types=types,
                before_seq=cursor.get("before"),
                limit=limit,
                descending=True,
            )
            more = {"before": found[-1].seq} if len(found) == limit else None
    except AuditStoreError as exc:
        raise Refused(503, str(exc), user) from None
    return found, more


async def _rows(
    request: Request[Any, Any, Any], user: User, accepted: list[StoredEvent]
) -> list[dict[str, Any]]:
    """One row per accepted event: the live record's status and content where Redis still holds it."""
    store = services(request.app.state).store
    found = await asyncio.gather(*(store.get(user.tenant, e.notification_id) for e in accepted))
    rows = []
    for e, hit in zip(accepted, found, strict=True):
        view = notification_view(*hit) if hit else None
        rows.append(
            {
                "id": e.notification_id,
                "at": e.at_ms,
                "channel": e.channel,
                "to": e.address,
                "status": view["status"] if view else "expired",
                "template": (view or {}).get("template") or "",
                "brand": (view or {}).get("brand") or "",
                "campaign": str(((view or {}).get("metadata") or {}).get("campaign", "")),
            }
        )
    return rows


async def notifications_of(
    request: Request[Any, Any, Any],
    user: User,
    *,
    member: str | None,
    status: str | None = None,
    campaign: str | None = None,
    since: int | None = None,
    until: int | None = None,
    cursor: Cursor | None = None,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Newest first, from the accepted events; a status or campaign (the live record's) filters
    what a few pages of them hold, so a filtered page costs a bounded number of look-ups."""
    rows: list[dict[str, Any]] = []
    filtered = bool(status or campaign)
    for _ in range(_SCAN_PAGES if filtered else 1):
        accepted, cursor = await event_page(
            request, user, member=member, types=["accepted"], since_ms=since, until_ms=until, cursor=cursor
        )
        rows += [
            r
            for r in await _rows(request, user, accepted)
            if (not status or r["status"] == status) and (not campaign or r["campaign"] == campaign)
        ]
        if cursor is None or len(rows) >= PAGE:
            break
    return rows, cursor


def _address(request: Request[Any, Any, Any], user: User, raw: str) -> str:
    """A phone number (any written form) or an email address; nothing else is looked up."""
    text = raw.strip()
    if not text or len(text) > 320 or ("@" not in text and not _PHONE_LIKE.fullmatch(text)):
        raise Refused(422, label(lang_of(request), "address_hint"), user, "invalid_recipient")
    try:
        return address_key(text, services(request.app.state).settings.default_region)
    except InvalidRecipient as exc:
        raise Refused(
            422, f"{label(lang_of(request), 'bad_input')}: {exc}", user, "invalid_recipient"
        ) from None


async def look_up(request: Request[Any, Any, Any], user: User, raw: str) -> str:
    """An address in any written form -> the member's keyed hash, remembered in the session, audited."""
    address = _address(request, user, raw)
    member = services(request.app.state).acceptor.members.of(address)
    await sessions(request).remember(user, member, address)
    await record(request, user, "member_lookup", member=member, masked=mask_address(address))
    return member


@get("/notifications")
async def notifications_page(
    request: Request[Any, Any, Any],
    member: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    campaign: FromQuery[str | None] = None,
    from_: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
    before_at: FromQuery[int | None] = None,
) -> Template:
    """The search form and the newest notifications matching it."""
    user = await signed_in(request, SCOPE)
    wanted = status if status in set(Status) else None
    cursor = cursor_of(request, user, before, before_at)
    rows, more = await notifications_of(
        request,
        user,
        member=_member_hash(member) if member else None,
        status=wanted,
        campaign=(campaign or "").strip()[:200] or None,
        since=parse_local(request, "from", from_, user),
        until=parse_local(request, "to", to, user),
        cursor=cursor,
    )
    masked = None
    if member:
        address = await sessions(request).address_of(user, member)
        masked = mask_address(address) if address else None
    filters = {
        "member": member or "",
        "status": wanted or "",
        "campaign": (campaign or "").strip()[:200],
        "from_": from_ or "",
        "to": to or "",
    }
    return page(
        request,
        "notifications.html",
        user,
        rows=rows,
        older=older_link(filters, more),
        statuses=[s.value for s in Status if s != Status.REJECTED],
        filters=filters,
        masked=masked,
    )


def older_link(filters: dict[str, str], more: Cursor | None) -> str | None:
    """The query string of the next page: the same filters, the cursor after this page."""
    if more is None:
        return None
    return urlencode({**{k: v for k, v in filters.items() if v}, **more})


@post("/notifications", status_code=303)
async def notifications_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """A posted search: a notification id opens it; an address becomes a keyed hash in the URL."""
    user = await signed_in(request, SCOPE)
    fields = await form(request, user)
    q = fields.get("q", "").strip()
    if q.startswith("ntf_"):
        if not _valid_id(q):
            raise Refused(404, label(lang_of(request), "not_found"), user)
        return Redirect(f"/console/notifications/{q}", status_code=303)
    params = {k: fields.get(k, "").strip() for k in ("status", "campaign", "from", "to")}
    for name in ("from", "to"):
        parse_local(request, name, params[name], user)
    if q:
        params["member"] = await look_up(request, user, q)
    query = urlencode({("from_" if k == "from" else k): v for k, v in params.items() if v})
    return Redirect(f"/console/notifications?{query}", status_code=303)


@get("/notifications/{ntf_id:str}")
async def notification_page(request: Request[Any, Any, Any], ntf_id: FromPath[str]) -> Template:
    """One notification: what was sent, to whom (masked), and every event, reason and attempt."""
    user = await signed_in(request, SCOPE)
    found = await services(request.app.state).store.get(user.tenant, ntf_id) if _valid_id(ntf_id) else None
    if found is None:
        raise Refused(404, label(lang_of(request), "not_found"), user)
    view = notification_view(*found)
    return page(request, "notification.html", user, n=view)


@get("/members")
async def members_page(request: Request[Any, Any, Any]) -> Template:
    """The member search form."""
    user = await signed_in(request, SCOPE)
    return page(request, "members.html", user)


@post("/members", status_code=303)
async def members_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """A posted address -> the member's page, named by keyed hash."""
    user = await signed_in(request, SCOPE)
    fields = await form(request, user)
    member = await look_up(request, user, fields.get("address", ""))
    return Redirect(f"/console/members/{member}", status_code=303)


@get("/members/{member:str}")
async def member_page(request: Request[Any, Any, Any], member: FromPath[str]) -> Template:
    """A member: their notifications, opt-outs, series and this month's marketing cap use."""
    user = await signed_in(request, SCOPE)
    member = _member_hash(member)
    svc = services(request.app.state)
    redis = svc.store.redis
    address = await sessions(request).address_of(user, member)
    month, _ = cap_month(time.time(), "Asia/Shanghai")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.cap(user.tenant, member, month))
        pipe.smembers(keys.member_series(user.tenant, member))
        cap_raw, series_ids = await pipe.execute()
    optouts = await svc.optouts.entries_of(user.tenant, member) if user.can("optouts") else []
    series = [
        v
        for v in await asyncio.gather(
            *(svc.series.view(user.tenant, s.decode()) for s in sorted(series_ids)[:50])
        )
        if v
    ]
    rows, more = await notifications_of(request, user, member=member)
    policy_cap = svc.acceptor.policy.rules(user.tenant, None).monthly_cap
    return page(
        request,
        "member.html",
        user,
        member=member,
        masked=mask_address(address) if address else None,
        optouts=optouts,
        cap_used=int(cap_raw or 0),
        cap_limit=policy_cap,
        month=month,
        series=series,
        rows=rows,
        older=older_link({"member": member}, more),
    )


HANDLERS = [
    notifications_page,
    notifications_search,
    notification_page,
    members_page,
    members_search,
    member_page,
]
