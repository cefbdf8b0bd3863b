"""The endpoint unsubscribe links point at: a page on GET, the one-click opt-out on POST."""

from __future__ import annotations

import html
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from gateway.api import views
from gateway.api.deps import json_response, services
from gateway.errors import BadRequest
from gateway.optouts.unsubscribe import read_token


@get(
    "/v1/unsubscribe/{token:str}",
    summary="The page an unsubscribe link opens (changes nothing)",
    responses={
        **views.text(
            "text/html", "A page with one button", "<!doctype html><meta charset='utf-8'><title>退订</title>"
        ),
        **views.problems(
            400,
            403,
            503,
            say={
                400: "The link is malformed or expired, or the body is not List-Unsubscribe=One-Click",
                403: "The link's signature does not verify (invalid_unsubscribe_link)",
            },
        ),
    },
)
async def unsubscribe_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    """A confirmation page with one button; a GET never opts out (link scanners prefetch)."""
    read_token(services(request.app.state).settings.hmac_key, token)
    page = (
        "<!doctype html><meta charset='utf-8'><title>退订</title>"
        f"<form method='post' action='/v1/unsubscribe/{html.escape(token)}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<p>确认不再接收此品牌的营销邮件?</p><button type='submit'>确认退订</button></form>"
    )
    return Response(content=page.encode(), media_type="text/html; charset=utf-8")


@post(
    "/v1/unsubscribe/{token:str}",
    status_code=200,
    summary="One-click unsubscribe (RFC 8058)",
    responses={
        **views.ok(views.Unsubscribed, {"ok": True, "opted_out": True, "changed": True}),
        **views.problems(
            400,
            403,
            413,
            503,
            say={
                400: "The link is malformed or expired, or the body is not List-Unsubscribe=One-Click",
                403: "The link's signature does not verify (invalid_unsubscribe_link)",
            },
        ),
    },
)
async def unsubscribe(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    """Opt the address out of the brand's email; repeating it changes nothing."""
    svc = services(request.app.state)
    link = read_token(svc.settings.hmac_key, token)
    form = (await request.body()).decode("utf-8", "replace")
    if "List-Unsubscribe=One-Click" not in form:
        raise BadRequest("invalid_unsubscribe_request", "expected the body List-Unsubscribe=One-Click")
    added = await svc.optouts.add(
        link.t, link.a, brand=link.b or None, channel="email", source="email_link", reason="one-click"
    )
    return json_response({"ok": True, "opted_out": True, "changed": added})


HANDLERS = [unsubscribe_page, unsubscribe]
