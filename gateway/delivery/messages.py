"""A claimed notification as the provider's ``Message``: the stored fields, a verification's code
filled in from its seal, a marketing email's one-click unsubscribe link."""

from __future__ import annotations

from channels import Message
from gateway.optouts.unsubscribe import make_token
from gateway.settings import Settings
from gateway.state.store import Claimed
from gateway.verify.codes import Codes, reveal


def message_of(settings: Settings, codes: Codes, tenant: str, channel: str, c: Claimed) -> Message:
    """What the adapter sends for one claimed notification (the code only here, at the moment of sending)."""
    r = c.record
    rendered, params = r.rendered, r.params
    code = codes.unseal(tenant, r.sealed) if r.sealed else None
    if code is not None:  # a verification: the code goes where its placeholder stands
        rendered, params = reveal(rendered, params, code, spoken=channel == "voice")
    unsubscribe_url = None
    if channel == "email" and r.category == "marketing":
        token = make_token(settings.hmac_key, tenant, r.address, r.brand or None)
        unsubscribe_url = f"{settings.public_url.rstrip('/')}/v1/unsubscribe/{token}"
    return Message(
        reference=f"{tenant}:{c.id}",
        tenant=tenant,
        channel=channel,
        to=r.address,
        category=r.category,
        brand=r.brand or None,
        text=rendered.get("text"),
        subject=rendered.get("subject"),
        html=rendered.get("html"),
        title=rendered.get("title"),
        media=tuple(rendered.get("media", ())),
        template=r.template or None,
        params=params,
        unsubscribe_url=unsubscribe_url,
        template_id=rendered.get("template_id"),
        page=rendered.get("page"),
        data=rendered.get("data") or {},
    )
