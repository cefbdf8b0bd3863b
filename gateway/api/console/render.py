"""Pages: the Jinja environment (every value escaped), the signed-in user, forms and their CSRF check.

Every page is rendered on the server from the templates beside this module; the browser runs no
script of ours but the tiny ``console.js`` (confirmations), and the Content-Security-Policy allows
nothing else: no inline script, no inline style, no other origin.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from litestar import Request, Response
from litestar.datastructures import Cookie, ResponseHeader
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from gateway.api.console.i18n import LANGS, label, pick_lang
from gateway.api.console.session import COOKIE, LANG_COOKIE, Sessions, User, same
from gateway.api.deps import services
from gateway.recipients import mask_address, scrub

HERE = Path(__file__).parent
DISPLAY_TZ = ZoneInfo("Asia/Shanghai")  # members and operators in China read Beijing time
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=CSP),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


class SignInRequired(Exception):
    """No session (or it ended): the browser is sent to the sign-in page."""

    def __init__(self, back: str) -> None:
        super().__init__(back)
        self.back = back


_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    503: "unavailable",
}


class Refused(Exception):
    """A page or action the console refuses, shown as a page with this status."""

    def __init__(self, status: int, message: str, user: User | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.user = user
        self.code = code or _CODES.get(status, "error")


def when(value: Any) -> str:
    """An epoch (s or ms) or RFC 3339 time in Beijing time, to the second."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        seconds = float(value) / 1000 if float(value) > 10**11 else float(value)
        moment = datetime.fromtimestamp(seconds, UTC)
    return moment.astimezone(DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S")


def show(value: Any) -> str:
    """A value as text (objects and lists as JSON), phone numbers and emails inside it masked: the
    console is an audit view. The template escapes what this returns."""
    if isinstance(value, dict | list):
        return scrub(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return "" if value is None else scrub(str(value))


def safe_back(raw: str | None) -> str:
    """Where to send the browser back to: a console path (with its query), never another site."""
    text = (raw or "").strip()
    parts = urlsplit(text)
    if (
        not text.startswith("/console")
        or parts.scheme
        or parts.netloc
        or "//" in text
        or "\\" in text
        or any(ord(c) < 32 for c in text)
    ):
        return "/console"
    return text


def here_of(request: Request[Any, Any, Any]) -> str:
    """This page's path and query (what the language switch and sign-in come back to)."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value: params, metadata and provider errors are attacker-controlled
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["mask"] = mask_address
    env.filters["show"] = show
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The app's template engine: the console's templates, autoescaped."""
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(_environment()))


def sessions(request: Request[Any, Any, Any]) -> Sessions:
    """The process's console sessions (made on first use)."""
    state = request.app.state
    found: Sessions | None = getattr(state, "console_sessions", None)
    if found is None:
        svc = services(state)
        found = Sessions(
            svc.store.redis, svc.settings.console_session_hours * 3600, svc.settings.console_idle_minutes * 60
        )
        state.console_sessions = found
    return found


async def signed_in(request: Request[Any, Any, Any], scope: str | None = None) -> User:
    """The signed-in user, who must hold ``scope``; otherwise the sign-in page, or a 403 page."""
    user = await sessions(request).load(request.cookies.get(COOKIE))
    if user is None:
        back = here_of(request) if request.method == "GET" else "/console"
        raise SignInRequired(back)
    if scope is not None and not user.can(scope):
        raise Refused(403, label(lang_of(request), "needs_scope", scope=scope), user, "insufficient_scope")
    return user


async def form(request: Request[Any, Any, Any], user: User) -> dict[str, str]:
    """A posted form's fields, once its CSRF token matched the session's (403 otherwise)."""
    data = await request.form()
    fields = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    if not same(fields.get("csrf"), user.csrf):
        raise Refused(403, label(lang_of(request), "csrf_failed"), user, "csrf_failed")
    return fields


def lang_of(request: Request[Any, Any, Any]) -> str:
    """The language the console speaks to this browser."""
    return pick_lang(request.cookies.get(LANG_COOKIE))


def nav(user: User, settings_simulator: bool) -> list[tuple[str, str]]:
    """The menu: only what the key may see."""
    items: list[tuple[str, str]] = []
    if user.can("notify"):
        items += [("notifications", "/console/notifications"), ("members", "/console/members")]
    if user.can("audit:read"):
        items.append(("audit", "/console/audit"))
    if user.can("optouts"):
        items.append(("optouts", "/console/optouts"))
    if user.can("audit:read"):
        items.append(("campaigns", "/console/campaigns"))
    if user.can("notify"):
        items.append(("series", "/console/series"))
    if user.can("admin"):
        items += [("dead_letters", "/console/dead-letters"), ("providers", "/console/providers")]
    if settings_simulator:
        items.append(("simulator", "/console/simulator"))
    return items


def page(
    request: Request[Any, Any, Any],
    template: str,
    user: User | None,
    status: int = 200,
    **context: Any,
) -> Template:
    """Render one page with what every page shows: language, menu, the key, the CSRF token."""
    lang = lang_of(request)
    settings = services(request.app.state).settings
    other = LANGS[1] if lang == LANGS[0] else LANGS[0]

    def t(key: str, **values: object) -> str:
        return label(lang, key, **values)

    return Template(
        template_name=template,
        context={
            "lang": lang,
            "other_lang": other,
            "t": t,
            "user": user,
            "nav": nav(user, settings.console_simulator) if user else [],
            "here": request.url.path,
            "back": here_of(request),
            "csrf": user.csrf if user else "",
            "status": status,
            "qs": lambda **kv: urlencode({k: v for k, v in kv.items() if v not in (None, "")}),
            **context,
        },
        status_code=status,
        media_type="text/html",
    )


def on_sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    """To the sign-in page, coming back here after (a path of ours only)."""
    return Redirect(f"/console/login?{urlencode({'next': safe_back(exc.back)})}", status_code=303)


def on_refused(request: Request[Any, Any, Any], exc: Refused) -> Response[Any]:
    """The refusal as a page with its status."""
    return page(request, "error.html", exc.user, status=exc.status, message=exc.message, code=exc.code)


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals inside the console (a query parameter of the wrong type, a body too
    large, a method not allowed) as a page too."""
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "validation_error"
    )
    message = label(lang_of(request), "bad_input") if exc.status_code in (400, 422) else str(exc.detail)
    return page(request, "error.html", None, status=exc.status_code, message=message, code=code)


def session_cookie(request: Request[Any, Any, Any], token: str, max_age: int | None) -> Cookie:
    """The session cookie: HttpOnly, SameSite=Strict, Secure when the browser came over TLS."""
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    return Cookie(
        key=COOKIE,
        value=token,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=max_age,
    )


def new_token() -> str:
    """A random token (the sign-in form's CSRF token)."""
    return secrets.token_urlsafe(24)
