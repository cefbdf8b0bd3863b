"""Delivery receipts: ``POST /v1/inbound/{provider}/receipts`` in each provider's own format.

The provider's adapter reads its receipts (``channels.base.Receipt``); one pipelined script call
applies them all. The receipt script handles the awkward orders: a receipt that comes before the
send is recorded is kept and applied when it is ("early"), a second receipt for the same message
changes nothing ("duplicate"). Providers that do not sign their calls (Alibaba, Tencent) are proven
by the tenant token in the callback URL, as for replies. A provider that checks its push URL first
(WeChat: a signed ``GET`` with ``echostr``) is answered on the same path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from channels.base import Receipt, UrlCheck
from gateway import events, metrics
from gateway.api import views
from gateway.api.deps import Services, services
from gateway.api.inbound import adapter_for, answer, proven, refused
from gateway.errors import NotFound
from gateway.models import Status
from gateway.timeutil import system_clock


@post(
    "/v1/inbound/{provider:str}/receipts",
    status_code=200,
    summary="Delivery receipts from a provider",
    responses=views.callback_answers(),
)
async def receipts(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Check where it comes from, read the provider's format, apply; answer as the provider expects."""
    adapter = adapter_for(provider, "receipts")
    svc = services(request.app.state)
    # Providers named otherwise in the providers file say so: ?name=<provider name>.
    name = request.query_params.get("name") or provider
    callback, tenant = await proven(request, provider, adapter)
    with refused():
        found = adapter.parse_receipts(callback)
    applied = await apply(svc, name, tenant, found)
    return answer(adapter.receipts_ack(len(found), applied))


@get(
    "/v1/inbound/{provider:str}/receipts",
    status_code=200,
    summary="A provider's check of its push URL (WeChat's echostr)",
    responses=views.callback_answers(),
)
async def url_check(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Signed like its pushes; answered as the provider expects (WeChat: the echostr, plain text)."""
    adapter = adapter_for(provider, "receipts")
    if not isinstance(adapter, UrlCheck):
        raise NotFound("unknown_provider", f"provider {provider!r} makes no URL check")
    callback, _ = await proven(request, provider, adapter)
    with refused():
        ack = adapter.url_check_ack(callback)
    return answer(ack)


async def apply(svc: Services, provider: str, tenant: str | None, found: list[Receipt]) -> int:
    """Apply receipts; how many changed a notification (or were kept for a send not yet recorded).

    ``tenant``: the tenant the callback URL proved; a receipt naming another tenant is ignored.
    """
    items = []
    channels = []
    at = events.at()  # the batch is applied at one moment
    for r in found:
        owner, _, ntf_id = (r.reference or "").partition(":")
        if not ntf_id:
            looked_up = await svc.store.lookup_provider_id(provider, r.provider_message_id)
            if looked_up is None:
                continue
            owner, ntf_id = looked_up
        if tenant is not None and owner != tenant:
            continue
        final = Status.DELIVERED if r.delivered else Status.UNDELIVERED
        ev = events.encode(
            events.Receipt(
                at=at,
                status=final,
                provider=provider,
                provider_code=r.code,
                provider_message_id=r.provider_message_id,
                reported_at=r.at,
            )
        )
        items.append((owner, ntf_id, final, ev, {"receipt_code": r.code or ""}))
        channels.append(r.channel)
    applied = 0
    now = system_clock()
    counted: Counter[tuple[str, Status]] = Counter()
    waits: dict[str, Any] = {}  # channel -> its latency histogram (one label look-up a batch)
    for (_, _, final, _, _), channel, (verdict, created_at) in zip(
        items, channels, await svc.store.receipts(items), strict=True
    ):
        if verdict in (Status.DELIVERED, Status.UNDELIVERED, "early"):
            applied += 1
            counted[(channel, final)] += 1
        if created_at is not None:
            if channel not in waits:
                waits[channel] = metrics.RECEIPT_SECONDS.labels(channel, provider)
            waits[channel].observe(max(0.0, now - created_at))
        if verdict in (Status.DELIVERED, Status.UNDELIVERED):
            metrics.NOTIFICATIONS_BY.inc(channel, final)
    for (channel, status), n in counted.items():
        metrics.RECEIPTS.labels(channel, provider, status).inc(n)
    return applied


HANDLERS = [receipts, url_check]
