"""Opt-out pages (scope ``optouts``): look a member up, opt them out, opt them back in with evidence."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from gateway.api.console.i18n import label
from gateway.api.console.lookup import _member_hash, look_up
from gateway.api.console.pages import record
from gateway.api.console.render import Refused, form, lang_of, page, sessions, signed_in
from gateway.api.console.session import User
from gateway.api.deps import services
from gateway.models import CHANNELS
from gateway.recipients import mask_address, scrub

SCOPE = "optouts"


async def _entries(request: Request[Any, Any, Any], user: User, member: str) -> list[dict[str, Any]]:
    return await services(request.app.state).optouts.entries_of(user.tenant, member)


async def _address(request: Request[Any, Any, Any], user: User, member: str) -> str:
    """The member's address: from this session's look-up, else from an entry (a shared link)."""
    address = await sessions(request).address_of(user, member)
    if address is None:
        found = [e.get("address") for e in await _entries(request, user, member) if e.get("address")]
        address = str(found[0]) if found else None
    if address is None or services(request.app.state).acceptor.members.of(address) != member:
        raise Refused(409, label(lang_of(request), "member_hint"), user)
    return address


def _scope(
    request: Request[Any, Any, Any], user: User, fields: dict[str, str]
) -> tuple[str | None, str | None]:
    """The brand and channel of a change; an unknown channel is refused, never widened to all."""
    brand = fields.get("brand", "").strip() or None
    channel = fields.get("channel", "").strip() or None
    if (channel is not None and channel not in CHANNELS) or (brand is not None and len(brand) > 64):
        raise Refused(422, label(lang_of(request), "bad_input"), user)
    return brand, channel


_MESSAGES = ("done", "nothing_changed")


@get("/optouts")
async def optouts_page(request: Request[Any, Any, Any]) -> Template:
    """The look-up form."""
    user = await signed_in(request, SCOPE)
    return page(request, "optouts.html", user, member=None, entries=[], masked=None, message=None)


@post("/optouts", status_code=303)
async def optouts_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """A posted address -> that member's opt-outs, named by keyed hash."""
    user = await signed_in(request, SCOPE)
    fields = await form(request, user)
    member = await look_up(request, user, fields.get("address", ""))
    return Redirect(f"/console/optouts/{member}", status_code=303)


async def _member_view(
    request: Request[Any, Any, Any], user: User, member: str, message: str | None, status: int = 200
) -> Template:
    address = await sessions(request).address_of(user, member)
    entries = await _entries(request, user, member)
    if address is None and entries:
        address = str(entries[0].get("address") or "") or None
    shown = [{k: e.get(k) for k in ("brand", "channel", "since", "source", "reason")} for e in entries]
    return page(
        request,
        "optouts.html",
        user,
        status=status,
        member=member,
        entries=shown,
        masked=mask_address(address) if address else None,
        channels=CHANNELS,
        message=message,
    )


@get("/optouts/{member:str}")
async def member_optouts(
    request: Request[Any, Any, Any], member: FromPath[str], m: FromQuery[str | None] = None
) -> Template:
    """A member's opt-out entries, with the forms to change them (and what the last change did)."""
    user = await signed_in(request, SCOPE)
    message = label(lang_of(request), m) if m in _MESSAGES else None
    return await _member_view(request, user, _member_hash(member), message)


def _after(member: str, changed: bool) -> Response[Any]:
    """Back to the member's page (a reload or Back does not post the change again)."""
    return Redirect(
        f"/console/optouts/{member}?m={'done' if changed else 'nothing_changed'}", status_code=303
    )


@post("/optouts/{member:str}/out", status_code=303)
async def opt_out(request: Request[Any, Any, Any], member: FromPath[str]) -> Response[Any]:
    """Opt the member out of a scope (every brand and channel when none is given)."""
    user = await signed_in(request, SCOPE)
    member = _member_hash(member)
    fields = await form(request, user)
    address = await _address(request, user, member)
    brand, channel = _scope(request, user, fields)
    reason = scrub(fields.get("reason", "").strip()[:500])
    added = await services(request.app.state).optouts.add(
        user.tenant, address, brand=brand, channel=channel, source="api", reason=reason, by=user.key_id
    )
    await record(
        request,
        user,
        "opt_out",
        member=member,
        masked=mask_address(address),
        target=f"{brand or '*'}/{channel or '*'}",
    )
    return _after(member, added)


@post("/optouts/{member:str}/in", status_code=303)
async def opt_in(request: Request[Any, Any, Any], member: FromPath[str]) -> Response[Any]:
    """Opt back in for exactly one entry's scope: only with the member's consent evidence."""
    user = await signed_in(request, SCOPE)
    member = _member_hash(member)
    fields = await form(request, user)
    lang = lang_of(request)
    evidence = fields.get("evidence", "").strip()[:1000]
    if not evidence:
        return await _member_view(request, user, member, label(lang, "evidence_missing"), status=422)
    address = await _address(request, user, member)
    brand, channel = _scope(request, user, fields)
    removed = await services(request.app.state).optouts.remove(
        user.tenant, address, brand=brand, channel=channel, evidence=evidence, by=user.key_id
    )
    await record(
        request,
        user,
        "opt_in",
        member=member,
        masked=mask_address(address),
        target=f"{brand or '*'}/{channel or '*'}",
    )
    return _after(member, removed)


HANDLERS = [optouts_page, optouts_search, member_optouts, opt_out, opt_in]
