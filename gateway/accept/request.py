"""A notify request's recipient and content, resolved before any rule runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from compliance.content import Draft, Rule, Verdict, run
from compliance.policy import Rules
from compliance.reasons import Reason, reason
from gateway.accept.links import LinkMaker
from gateway.errors import InvalidRecipient, Rejected
from gateway.models import NotifyRequest
from gateway.recipients import check_email, check_timezone, parse_phone
from gateway.state.store import Store
from templates.renderer import MissingParam, Renderer, TemplateError, TemplateNotFound

DEFAULT_TIMEZONE = "Asia/Shanghai"
WECHAT_FIELDS = frozenset({"template_id", "page", "data"})


def resolve_recipient(req: NotifyRequest, default_region: str) -> tuple[str, str]:
    """The address the channel sends to (E.164, normalized email, push token) and the member's time zone."""
    to, channel = req.to, req.channel
    zone = None
    try:
        if to.timezone:
            zone = check_timezone(to.timezone)
        if channel in ("sms", "mms", "voice"):
            if not to.phone:
                raise InvalidRecipient(f"{channel} needs to.phone")
            phone = parse_phone(to.phone, default_region)
            # A call reaches a fixed line too; a text needs a mobile.
            if not phone.mobile and channel != "voice":
                raise InvalidRecipient(f"{channel} needs a mobile number")
            address = phone.e164
            zone = zone or phone.timezone
        elif channel == "wechat":
            if not to.wechat_openid:
                raise InvalidRecipient("wechat needs to.wechat_openid")
            address = to.wechat_openid
        elif channel == "email":
            if not to.email:
                raise InvalidRecipient("email needs to.email")
            address = check_email(to.email)
        else:
            if not to.push_token:
                raise InvalidRecipient("push needs to.push_token")
            address = to.push_token
        if zone is None and to.phone:
            zone = parse_phone(to.phone, default_region).timezone
    except InvalidRecipient as exc:
        raise Rejected(channel, [reason(Reason.INVALID_RECIPIENT, str(exc))]) from None
    return address, zone or DEFAULT_TIMEZONE


def check_send_at(req: NotifyRequest, now: float, horizon_days: int) -> float | None:
    """``send_at`` as epoch seconds; one further ahead than the scheduling horizon is refused."""
    if req.send_at is None:
        return None
    send_at = req.send_at.timestamp()
    if send_at - now > horizon_days * 86_400:
        raise Rejected(
            req.channel,
            [
                reason(
                    Reason.VALIDATION_ERROR,
                    f"send_at is more than {horizon_days} days ahead",
                    field="send_at",
                )
            ],
        )
    return send_at


def resolve_category(req: NotifyRequest, renderer: Renderer, verification: bool = False) -> str:
    """The category a message counts in: its template's (authoritative), else the request's, else marketing.

    A ``verification`` template goes only with ``verification`` (a code sealed by POST /v1/verifications):
    sent through /v1/notify it would skip the footer, the cap and quiet hours with any text.

    A request whose ``category`` contradicts its template's is refused: a marketing template sent as
    "transactional" would skip the unsubscribe footer, the monthly cap and quiet hours.
    """
    if not req.template:
        return req.category or "marketing"
    own = renderer.get(req.template).category
    if (own == "verification") != verification:
        raise Rejected(
            req.channel,
            [
                reason(
                    Reason.CATEGORY_MISMATCH,
                    f"template {req.template!r} is a verification template: POST /v1/verifications sends it"
                    if own == "verification"
                    else "a verification code is sent with a verification template",
                )
            ],
        )
    if req.category is not None and req.category != own:
        raise Rejected(
            req.channel,
            [
                reason(
                    Reason.CATEGORY_MISMATCH,
                    f"template {req.template!r} is {own}; the request says {req.category}",
                )
            ],
        )
    return own


# What the items of one batch that render alike share: the link maker (which made no links),
# rules, category, checked draft and verdict of the first of them.
Checked = tuple[LinkMaker, Rules, str, Draft, Verdict | None]
ContentKey = tuple[Any, ...]


def content_key(req: NotifyRequest, verification: bool) -> ContentKey | None:
    """The key under which requests render alike and so pass or fail the content checks alike: the
    same template, parameters (with their types: 1, 1.0 and true are not one value here), channel,
    brand and category; None for literal content or an experiment (a variant per member)."""
    if not req.template or req.content is not None or req.experiment is not None:
        return None
    params = tuple((k, type(v).__name__, v) for k, v in req.params.items())
    return (req.channel, req.brand, req.category, req.template, verification, params)


def check_content(
    req: NotifyRequest,
    renderer: Renderer,
    maker: LinkMaker,
    rules: Rules,
    pipeline: Sequence[Rule],
    verification: bool,
    memo: dict[ContentKey, Checked] | None,
) -> Checked:
    """The request rendered (its links made by ``maker``) and put through the content rules; from
    ``memo`` when an earlier item of the batch rendered alike (and made no links), else into it."""
    key = content_key(req, verification) if memo is not None else None
    if memo is not None and key is not None and (hit := memo.get(key)) is not None:
        return hit
    rendered = render_request(req, renderer, maker)
    category = resolve_category(req, renderer, verification)
    draft = Draft(channel=req.channel, category=category, brand=req.brand, fields=rendered, rules=rules)
    checked = (maker, rules, category, draft, run(pipeline, draft))
    if memo is not None and key is not None and not maker.made:
        memo[key] = checked
    return checked


def render_request(req: NotifyRequest, renderer: Renderer, links: LinkMaker | None = None) -> dict[str, Any]:
    """The message fields: the template rendered for the channel, or the literal content checked.

    With ``links``, ``{{ link(url) }}`` in a template (and, with ``track_links``, every URL in
    content) becomes the message's own short link.
    """
    channel = req.channel
    if req.template and req.content:
        raise Rejected(
            channel,
            [reason(Reason.VALIDATION_ERROR, "give either template + params or content, not both")],
        )
    if req.template:
        try:
            if links is not None:
                return renderer.render(req.template, channel, req.params, links.short)
            return renderer.render(req.template, channel, req.params)
        except TemplateNotFound as exc:
            raise Rejected(channel, [reason(Reason.TEMPLATE_NOT_FOUND, str(exc))]) from None
        except MissingParam as exc:
            raise Rejected(channel, [reason(Reason.MISSING_PARAM, str(exc), params=exc.names)]) from None
        except TemplateError as exc:
            raise Rejected(channel, [reason(Reason.VALIDATION_ERROR, str(exc))]) from None
    c = req.content
    if c is None:
        raise Rejected(channel, [reason(Reason.VALIDATION_ERROR, "give template + params, or content")])
    need = {
        "sms": c.text is not None,
        "mms": c.text is not None or bool(c.media),
        "push": c.text is not None or c.title is not None,
        "email": c.subject is not None and (c.text is not None or c.html is not None),
        "voice": c.text is not None,
        "wechat": c.template_id is not None and bool(c.data),
    }[channel]
    if not need:
        what = {
            "sms": "content.text",
            "mms": "content.text or content.media",
            "push": "content.title or content.text",
            "email": "content.subject and content.text or content.html",
            "voice": "content.text (what the call says)",
            "wechat": "content.template_id and content.data",
        }[channel]
        raise Rejected(channel, [reason(Reason.VALIDATION_ERROR, f"{channel} needs {what}")])
    fields = {k: v for k, v in msgspec.to_builtins(c).items() if v not in (None, [])}
    # A subscribe message sends its template and data; the other channels (an SMS fallback) the rest.
    if channel == "wechat":
        fields = {k: v for k, v in fields.items() if k in WECHAT_FIELDS}
    else:
        fields = {k: v for k, v in fields.items() if k not in WECHAT_FIELDS}
    if req.track_links and links is not None:
        for name in ("text", "html"):
            if name in fields:
                fields[name] = links.track(fields[name])
    return fields


def claimed_category(req: NotifyRequest | None) -> str:
    """A refused request's category for metrics and audit: what it said, else free content's default."""
    if req is None:
        return "unknown"
    return req.category or ("unknown" if req.template else "marketing")


async def refuse_dead_push_token(store: Store, tenant: str, req: NotifyRequest) -> None:
    """A push token its provider called unregistered is refused (one look-up, push only)."""
    token = req.to.push_token
    if req.channel == "push" and token and await store.is_dead_token(tenant, token):
        why = "the push provider said this device token is unregistered"
        raise Rejected("push", [reason(Reason.INVALID_RECIPIENT, why)])
