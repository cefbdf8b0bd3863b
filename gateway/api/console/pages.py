"""Signing in and out, the language switch and the overview page."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from gateway import events
from gateway.api.console.i18n import LANGS, label
from gateway.api.console.render import (
    Refused,
    lang_of,
    new_token,
    page,
    session_cookie,
    sessions,
    signed_in,
)
from gateway.api.console.session import COOKIE, LANG_COOKIE, LOGIN_COOKIE, User, same
from gateway.api.deps import services
from gateway.audit import stream as audit


async def record(request: Request[Any, Any, Any], user: User, action: str, **fields: Any) -> None:
    """Every console action is an audit event naming the key (and, for a member, the keyed hash)."""
    member = fields.pop("member", "")
    masked = fields.pop("masked", "")
    ev = events.ConsoleAction(at=events.at(), action=action, by=user.key_id, **fields)
    await audit.record(
        services(request.app.state).store.redis, user.tenant, events.encode(ev), member=member, masked=masked
    )


def _back(raw: str | None) -> str:
    """Where to go after signing in: a console path, never another site (//evil, /\\evil)."""
    if raw and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console"


@get("/login")
async def login_page(request: Request[Any, Any, Any], next_: FromQuery[str | None] = None) -> Template:
    """The sign-in form, with a CSRF token of its own (double submit: cookie and field)."""
    token = new_token()
    shown = page(request, "login.html", None, back=_back(next_), login_csrf=token, failed=False)
    shown.cookies.append(
        Cookie(key=LOGIN_COOKIE, value=token, path="/console", httponly=True, samesite="strict", max_age=1800)
    )
    return shown


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the key; on success the session cookie and the page asked for."""
    fields = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    if not same(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        raise Refused(403, _t(request, "csrf_failed"), code="csrf_failed")
    back = _back(fields.get("next"))
    key = fields.get("api_key", "").strip()
    started = await sessions(request).start(key) if 0 < len(key) <= 512 else None
    if started is None:
        token = new_token()
        shown = page(request, "login.html", None, status=401, back=back, login_csrf=token, failed=True)
        shown.cookies.append(
            Cookie(
                key=LOGIN_COOKIE, value=token, path="/console", httponly=True, samesite="strict", max_age=1800
            )
        )
        return shown
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
    request: Request[Any, Any, Any], lang: str, back: FromQuery[str | None] = None
) -> Response[Any]:
    """Switch between Chinese and English (a cookie), back to the page it was clicked on."""
    chosen = lang if lang in LANGS else LANGS[0]
    done = Redirect(_back(back), status_code=303)
    done.cookies.append(
        Cookie(key=LANG_COOKIE, value=chosen, path="/console", samesite="strict", max_age=31_536_000)
    )
    return done


@get("/")
async def home(request: Request[Any, Any, Any]) -> Template:
    """What the key may do, and the way to each page."""
    user = await signed_in(request)
    return page(request, "home.html", user)


def _t(request: Request[Any, Any, Any], key: str) -> str:
    return label(lang_of(request), key)


HANDLERS = [login_page, login, logout, switch_lang, home]
