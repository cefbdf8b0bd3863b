"""What the provider callbacks (receipts, replies) share: proof of origin and the answers providers expect."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response

from channels.twilio import verify_twilio
from gateway.api.deps import raw_header, services
from gateway.errors import BadRequest, Forbidden


def inbound_token(secret: str, provider: str, tenant: str) -> str:
    """The token in a provider's push URL for one tenant (providers that do not sign their pushes)."""
    return hmac.new(secret.encode(), f"{provider}:{tenant}".encode(), hashlib.sha256).hexdigest()[:32]


def url_tenant(request: Request[Any, Any, Any], provider: str) -> str:
    """For providers that do not sign their calls: the tenant in the URL, proven by its token."""
    tenant = request.query_params.get("tenant") or ""
    token = request.query_params.get("token") or ""
    secret = services(request.app.state).settings.inbound_token
    if not tenant or not hmac.compare_digest(token, inbound_token(secret, provider, tenant)):
        raise Forbidden("bad_token", "the callback URL's token does not match")
    return tenant


async def twilio_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A Twilio webhook's form fields, after X-Twilio-Signature checked out over our public URL (with
    its query) and the sorted fields."""
    svc = services(request.app.state)
    raw = await request.body()
    try:
        fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("malformed_request", "body is not UTF-8") from None
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = f"{svc.settings.public_url.rstrip('/')}{request.scope['path']}" + (f"?{query}" if query else "")
    if not verify_twilio(
        svc.settings.twilio_auth_token, url, fields, raw_header(request, b"x-twilio-signature")
    ):
        raise Forbidden("bad_signature", "X-Twilio-Signature does not verify")
    return fields


def empty_twiml() -> Response[bytes]:
    """What Twilio expects back when there is nothing to say."""
    twiml = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    return Response(content=twiml, media_type="text/xml", status_code=200)
