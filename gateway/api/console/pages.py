"""Signing in and out, the language switch and the overview page."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from gateway import events
from gateway.api.console.i18n import LANGS, label
from gateway.api.console.render import (
    Refused,
    lang_of,
    new_token,
    page,
    safe_back,
    session_cookie,
    sessions,
    signed_in,
)
from gateway.api.console.session import COOKIE, LANG_COOKIE, LOGIN_COOKIE, User, same
from gateway.api.deps import services
from gateway.audit import stream as audit
from gateway.state import keys

log = logging.getLogger("tidings.console")
FAILURES = 10  # wrong keys a minute from one address
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")


async def record(request: Request[Any, Any, Any], user: User, action: str, **fields: Any) -> None:
    """Every console action is an audit event naming the key (and, for a member, the keyed hash)."""
    member = fields.pop("member", "")
    masked = fields.pop("masked", "")
    ev = events.ConsoleAction(at=events.at(), action=action, by=user.key_id, **fields)
    await audit.record(
        services(request.app.state).store.redis, user.tenant, events.encode(ev), member=member, masked=masked
    )


def _login_form(
    request: Request[Any, Any, Any], back: str, status: int = 200, failed: bool = False
) -> Template:
    """The sign-in form. Its CSRF token (double submit: a cookie and a field) is kept while the
    browser has one, so two open sign-in tabs both work."""
    held = request.cookies.get(LOGIN_COOKIE) or ""
    token = held if _TOKEN.fullmatch(held) else new_token()
    shown = page(request, "login.html", None, status=status, back=back, login_csrf=token, failed=failed)
    shown.cookies.append(
        Cookie(
            key=LOGIN_COOKIE, value=token, path="/console", httponly=True, samesite="strict", max_age=86_400
        )
    )
    return shown


@get("/login")
async def login_page(request: Request[Any, Any, Any], next_: FromQuery[str | None] = None) -> Template:
    """The sign-in form."""
    return _login_form(request, safe_back(next_))


async def _too_many_failures(request: Request[Any, Any, Any], failed: bool) -> bool:
    """Wrong keys from one address: at most FAILURES a minute (a key is 256 bits; this stops noise)."""
    redis = services(request.app.state).store.redis
    key = keys.console_failures(request.client.host if request.client else "unknown")
    if not failed:
        return int(await redis.get(key) or 0) >= FAILURES
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=60, nx=True)  # the minute starts at the first failure
        pipe.incr(key)
        _, count = await pipe.execute()
    return int(count) > FAILURES


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the key; on success the session cookie and the page asked for."""
    fields = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    if not same(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        raise Refused(403, _t(request, "csrf_failed"), code="csrf_failed")
    if await _too_many_failures(request, failed=False):
        raise Refused(429, _t(request, "too_many_failures"), code="rate_limited")
    back = safe_back(fields.get("next"))
    key = fields.get("api_key", "").strip()
    started = await sessions(request).start(key) if 0 < len(key) <= 512 else None
    if started is None:
        log.warning(
            "console sign-in with an unknown key from %s", request.client.host if request.client else "?"
        )
        if await _too_many_failures(request, failed=True):
            raise Refused(429, _t(request, "too_many_failures"), code="rate_limited")
        return _login_form(request, back, status=401, failed=True)
    token, user = started
    await record(request, user, "sign_in")
    settings = services(request.app.state).settings
    done = Redirect(back, status_code=303)
    done.cookies.append(session_cookie(request, token, int(settings.console_session_hours * 3600)))
    done.cookies.append(Cookie(key=LOGIN_COOKIE, value="", path="/console", max_age=0))
    return done


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session on the server and forget the cookie."""
    user = await signed_in(request)
    fields = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    if not same(fields.get("csrf"), user.csrf):
        raise Refused(403, _t(request, "csrf_failed"), user, "csrf_failed")
    await sessions(request).end(user)
    await record(request, user, "sign_out")
    done = Redirect("/console/login", status_code=303)
    done.cookies.append(Cookie(key=COOKIE, value="", path="/console", max_age=0, httponly=True))
    return done


@get("/lang/{lang:str}")
async def switch_lang(
    request: Request[Any, Any, Any], lang: FromPath[str], back: FromQuery[str | None] = None
) -> Response[Any]:
    """Switch between Chinese and English (a cookie), back to the page it was clicked on."""
    chosen = lang if lang in LANGS else LANGS[0]
    done = Redirect(safe_back(back), status_code=303)
    done.cookies.append(
        Cookie(key=LANG_COOKIE, value=chosen, path="/console", samesite="strict", max_age=31_536_000)
    )
    return done


@get("/")
async def home(request: Request[Any, Any, Any]) -> Template:
    """What the key may do, and the way to each page."""
    user = await signed_in(request)
    return page(request, "home.html", user)


@get("/{rest:path}", include_in_schema=False)
async def not_found(request: Request[Any, Any, Any], rest: FromPath[str]) -> Template:
    """Any other console path: a page saying so (with the menu when signed in)."""
    user = await sessions(request).load(request.cookies.get(COOKIE))
    raise Refused(404, _t(request, "not_found"), user)


def _t(request: Request[Any, Any, Any], key: str) -> str:
    return label(lang_of(request), key)


HANDLERS = [login_page, login, logout, switch_lang, home]
