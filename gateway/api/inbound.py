"""What the provider callbacks (receipts, replies) share: the adapter that reads them, the proof of
where they come from, and the answer the provider expects.

The provider's adapter (channels) verifies its signature, reads its format and says what to answer;
the gateway proves the tenant of unsigned callbacks by the token in their URL and applies the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response

from channels import registry
from channels.base import Ack, Callback, CallbackAuth, ForgedCallback, Inbound, MalformedCallback
from gateway.api.deps import services
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.settings import Settings


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


def adapter_for(provider: str, endpoint: str) -> Inbound:
    """The adapter class that reads this provider kind's callbacks; 404 when none does."""
    found = registry.inbound(provider)
    if found is None:
        raise NotFound("unknown_provider", f"no {endpoint} endpoint for provider {provider!r}")
    return found


async def proven(
    request: Request[Any, Any, Any], provider: str, adapter: Inbound
) -> tuple[Callback, str | None]:
    """The callback once its origin is proven, and the tenant its URL token proved (None when signed)."""
    settings = services(request.app.state).settings
    tenant = url_tenant(request, provider) if adapter.callback_auth is CallbackAuth.URL_TOKEN else None
    callback = await _callback(request, settings.public_url)
    with refused():
        adapter.verify_callback(callback, _signing_secret(settings, provider, adapter.callback_auth))
    return callback, tenant


def _signing_secret(settings: Settings, provider: str, auth: CallbackAuth) -> str:
    """The secret a provider signs its callbacks with, one setting each; "" for unsigned ones."""
    if auth is CallbackAuth.URL_TOKEN:
        return ""
    secrets = {
        "simulator": settings.simulator_secret,
        "twilio": settings.twilio_auth_token,
        "wechat": settings.wechat_push_token,
    }
    secret = secrets.get(provider)
    if secret is None:  # a signing adapter registered without its setting: nothing can verify
        raise Forbidden("bad_signature", f"no secret is configured for {provider} callbacks")
    return secret


async def _callback(request: Request[Any, Any, Any], public_url: str) -> Callback:
    """The request as raw bytes and strings; its URL as the provider called it (our public URL)."""
    query_string = request.scope.get("query_string", b"").decode("latin-1")
    path = request.scope["path"]
    url = f"{public_url.rstrip('/')}{path}" + (f"?{query_string}" if query_string else "")
    headers: dict[str, str] = {}
    for key, value in request.scope["headers"]:
        headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))  # the first, as raw_header
    query = {key: request.query_params[key] for key in request.query_params}  # the first value each
    return Callback(await request.body(), url, query, headers)


@contextlib.contextmanager
def refused() -> Iterator[None]:
    """An adapter's refusal as a problem answer: 400 for a malformed callback, 403 for a forged one."""
    try:
        yield
    except MalformedCallback as exc:
        raise BadRequest(exc.code, exc.detail) from None
    except ForgedCallback as exc:
        raise Forbidden(exc.code, exc.detail) from None


def answer(ack: Ack) -> Response[bytes]:
    """The adapter's acknowledgement as the response."""
    return Response(content=ack.body, media_type=ack.media_type, status_code=200)
