"""The WeChat grant ledger of API.md: ``POST /v1/wechat/grants`` records one-time subscribe grants.

A member who taps "allow" on the mini program's subscribe dialog gives one grant per template; the
caller records it here, and each WeChat notification to that member with that template spends one.
``GET /v1/wechat/grants?openid=&template_id=`` reads the balance. The openid is shown masked.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery
from msgspec import Meta

from gateway import events, metrics
from gateway.api import views
from gateway.api.deps import json_response, principal, services
from gateway.errors import Unprocessable
from gateway.recipients import Members, mask_address
from gateway.state.grants import MAX_BALANCE, GrantLedger

Openid = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TemplateId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
MAX_COUNT = 100  # grants one request may record


class GrantBody(msgspec.Struct, forbid_unknown_fields=True):
    """Grants a member accepted in the mini program (``wx.requestSubscribeMessage``)."""

    openid: Openid
    template_id: TemplateId
    count: Annotated[int, Meta(ge=1, le=MAX_COUNT)] = 1


class GrantView(msgspec.Struct):
    """A member's balance for one template, the openid masked."""

    openid: str
    template_id: str
    balance: int


EXAMPLE = {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "template_id": "tmpl-points-credited", "count": 1}
VIEW = {"openid": "oUpF…eS6o", "template_id": "tmpl-points-credited", "balance": 2}


def _ledger(request: Request[Any, Any, Any]) -> tuple[GrantLedger, Members]:
    svc = services(request.app.state)
    return GrantLedger(svc.store.redis), svc.acceptor.members


@post(
    "/v1/wechat/grants",
    status_code=201,
    summary="Record a member's WeChat subscribe grants",
    responses={
        **views.ok(GrantView, VIEW, "Recorded: the balance now", 201),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={422: f"Invalid body (validation_error), or a balance past {MAX_BALANCE} (grant_limit)"},
        ),
    },
)
async def post_grants(
    request: Request[Any, Any, Any], data: Annotated[GrantBody, views.body(EXAMPLE)]
) -> Response[bytes]:
    """Adds ``count`` one-time grants (1 to 100); each lets one subscribe message through."""
    who = await principal(request, "notify")
    ledger, members = _ledger(request)
    masked = mask_address(data.openid, "wechat")
    said = events.encode(
        events.WechatGranted(at=events.at(), template_id=data.template_id, count=data.count, by=who.key_id)
    )
    balance = await ledger.add(
        who.tenant, members.of(data.openid), masked, data.template_id, data.count, said
    )
    if balance is None:
        raise Unprocessable(
            "grant_limit",
            f"a member holds at most {MAX_BALANCE} grants for one template",
            errors=[{"field": "count", "message": f"the balance would pass {MAX_BALANCE}"}],
        )
    metrics.WECHAT_GRANTS.labels("recorded").inc(data.count)
    view = GrantView(masked, data.template_id, balance)
    return json_response(msgspec.to_builtins(view), status=201)


@get(
    "/v1/wechat/grants",
    summary="A member's WeChat grant balance for one template",
    responses={**views.ok(GrantView, VIEW), **views.problems(*views.KEYED, 422)},
)
async def get_grants(
    request: Request[Any, Any, Any], openid: FromQuery[str], template_id: FromQuery[str]
) -> Response[bytes]:
    """How many grants are left (0 after WeChat answered 43101)."""
    who = await principal(request, "notify")
    try:
        msgspec.convert({"openid": openid, "template_id": template_id}, GrantBody)
    except msgspec.ValidationError as exc:
        raise Unprocessable("validation_error", str(exc)) from None
    ledger, members = _ledger(request)
    balance = await ledger.balance(who.tenant, members.of(openid), template_id)
    return json_response(msgspec.to_builtins(GrantView(mask_address(openid, "wechat"), template_id, balance)))


HANDLERS = [post_grants, get_grants]
