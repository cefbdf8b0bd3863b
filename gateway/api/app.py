"""The Litestar application: ``create_app(settings, redis_url)`` composes controllers and services."""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import redis
from litestar import Litestar, Request, Response, get, post, put
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import ASGIApp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channels.config import route_names
from compliance.policy import load_policy
from gateway import metrics
from gateway.accept.pipeline import Acceptor, Answer, Rejected
from gateway.accept.tenant_templates import TemplateRejected, TenantTemplates
from gateway.api import views
from gateway.api.audit import HANDLERS as AUDIT_HANDLERS
from gateway.api.auth import Authenticator, RateLimiter
from gateway.api.deps import JSON, RawResponse, Services, json_response, principal, raw_header, services
from gateway.api.optouts import HANDLERS as OPTOUT_HANDLERS
from gateway.api.problems import (
    PROBLEM,
    on_http_exception,
    on_redis_error,
    on_tidings_error,
    on_unexpected,
)
from gateway.api.receipts import HANDLERS as RECEIPT_HANDLERS
from gateway.api.unsubscribe import HANDLERS as UNSUBSCRIBE_HANDLERS
from gateway.errors import Conflict, NotFound, TidingsError, Unprocessable
from gateway.logs import RequestIdMiddleware
from gateway.models import BatchRequest, BatchResults, NotifyRequest, NotifyResult
from gateway.optouts.store import OptOuts
from gateway.recipients import Members, mask_address
from gateway.settings import Settings
from gateway.state import gauges as state_metrics
from gateway.state import keys, scripts
from gateway.state.redisdb import async_client
from gateway.state.scriptpipe import ScriptPipe
from gateway.state.store import Store, event
from gateway.timeutil import rfc3339, system_clock
from templates.renderer import load_catalog

_encode = msgspec.json.Encoder()
MERGED_FIELDS = ("to", "params", "content", "metadata")


def answer_response(answer: Answer) -> RawResponse:
    """An accept answer; rejections are also problem documents."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media_type = PROBLEM if answer.status >= 400 else JSON
    return RawResponse(_encode.encode(answer.body), answer.status, media_type, headers)


# -- send ----------------------------------------------------------------------------------------
@post(
    "/v1/notify",
    status_code=202,
    summary="Send one notification",
    responses={
        202: ResponseSpec(NotifyResult, description="Accepted: queued or scheduled"),
        200: ResponseSpec(NotifyResult, description="Accepted but suppressed (opted out, capped, expired)"),
    },
)
async def notify(request: Request[Any, Any, Any], data: JSONBody[NotifyRequest]) -> ASGIApp:
    """Accept one notification: 202 queued/scheduled, 200 suppressed, 422 rejected."""
    who = await principal(request, "notify")
    header_key = raw_header(request, b"idempotency-key")
    if header_key is not None:
        if not 0 < len(header_key) <= 255:
            raise Unprocessable(
                "validation_error",
                "Idempotency-Key must be 1 to 255 characters",
                errors=[{"field": "Idempotency-Key", "message": "must be 1 to 255 characters"}],
            )
        if data.idempotency_key not in (None, header_key):
            raise Unprocessable(
                "idempotency_key_mismatch", "Idempotency-Key header and body idempotency_key differ"
            )
        data = msgspec.structs.replace(data, idempotency_key=header_key)
    answer = await services(request.app.state).acceptor.notify(who.tenant, data)
    return answer_response(answer)


@post(
    "/v1/notify/batch",
    status_code=200,
    summary="Send up to 1,000 notifications",
    responses={200: ResponseSpec(BatchResults, description="One result per item, in order")},
)
async def notify_batch(request: Request[Any, Any, Any], data: JSONBody[BatchRequest]) -> ASGIApp:
    """Each item is merged over ``defaults`` and accepted or rejected on its own."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    limit = svc.settings.max_batch_items
    if len(data.items) > limit:
        raise Unprocessable("batch_too_large", f"a batch holds at most {limit} items, got {len(data.items)}")
    if not data.items:
        raise Unprocessable(
            "validation_error", "items must not be empty", errors=[{"field": "items", "message": "empty"}]
        )
    header_key = request.headers.get("idempotency-key")
    fp = ""
    if header_key:
        fp = hashlib.sha256(_encode.encode(data)).hexdigest()
        pending = _encode.encode({"fp": fp, "state": "pending"}).decode()
        existing = await svc.store.idempotency_reserve(who.tenant, f"batch:{header_key}", pending)
        if existing is not None:
            return answer_response(svc.acceptor.replay(existing, fp))
    try:
        reqs: list[NotifyRequest | Rejected] = [_item(data.defaults, item) for item in data.items]
        answers = await svc.acceptor.notify_many(who.tenant, reqs)
    except BaseException:
        if header_key:
            await svc.store.idempotency_release(who.tenant, f"batch:{header_key}")
        raise
    results = []
    for index, ans in enumerate(answers):
        body = ans.body if isinstance(ans.body, dict) else msgspec.to_builtins(ans.body)
        if ans.status >= 400:
            reasons = body.get("reasons") or [{"code": body.get("code"), "detail": body.get("detail")}]
            results.append(
                {
                    "index": index,
                    "id": body.get("id"),
                    "status": "rejected",
                    "channel": body.get("channel") or "",
                    "reasons": reasons,
                }
            )
        else:
            results.append({"index": index, **body})
    out = {"results": results}
    if header_key:
        record = _encode.encode({"fp": fp, "status": 200, "body": out}).decode()
        await svc.store.idempotency_complete(who.tenant, f"batch:{header_key}", record)
    return RawResponse(_encode.encode(out), 200)


def _item(defaults: dict[str, Any], item: Any) -> NotifyRequest | Rejected:
    if not isinstance(item, dict):
        return Rejected("", [{"code": "validation_error", "detail": "each item must be an object"}])
    merged = {**defaults, **item}
    for name in MERGED_FIELDS:
        if isinstance(defaults.get(name), dict) and isinstance(item.get(name), dict):
            merged[name] = {**defaults[name], **item[name]}
    try:
        return msgspec.convert(merged, NotifyRequest, strict=False)
    except msgspec.ValidationError as exc:
        channel = str(merged.get("channel", ""))
        return Rejected(channel, [{"code": "validation_error", "detail": str(exc)}])


@post(
    "/v1/compliance/check",
    status_code=200,
    summary="Dry run: what would happen to this notify",
    responses=views.ok(views.CheckResult),
)
async def compliance_check(request: Request[Any, Any, Any], data: JSONBody[NotifyRequest]) -> Response[bytes]:
    """Same body as /v1/notify; sends nothing, counts nothing."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).acceptor.check(who.tenant, data))


# -- templates -----------------------------------------------------------------------------------
@get(
    "/v1/templates",
    summary="The catalogue and the tenant's own templates",
    responses=views.ok(views.TemplateList),
)
async def list_templates(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Every template this tenant can send, its own overriding the catalogue's by name."""
    who = await principal(request, "templates")
    svc = services(request.app.state)
    own = await svc.templates.custom(who.tenant)
    merged = {
        **{n: (t, "catalog") for n, t in svc.templates.catalog.items()},
        **{n: (t, "tenant") for n, t in own.items()},
    }
    items = [{**t.describe(), "source": src} for _, (t, src) in sorted(merged.items())]
    return json_response({"templates": items})


@get("/v1/templates/{name:str}", summary="One template", responses=views.ok(views.TemplateView))
async def get_template(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """The template with its variants and params."""
    who = await principal(request, "templates")
    svc = services(request.app.state)
    own = await svc.templates.custom(who.tenant)
    if name in own:
        return json_response({**own[name].describe(), "source": "tenant"})
    if name in svc.templates.catalog:
        return json_response({**svc.templates.catalog[name].describe(), "source": "catalog"})
    raise NotFound("template_not_found", f"no template named {name!r}")


class TemplateDocument(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PUT /v1/templates/{name}: the catalogue file's fields as JSON."""

    category: str = "marketing"
    description: str = ""
    params: dict[str, dict[str, Any]] = {}
    sms: dict[str, Any] | None = None
    mms: dict[str, Any] | None = None
    push: dict[str, Any] | None = None
    email: dict[str, Any] | None = None


@put(
    "/v1/templates/{name:str}",
    status_code=200,
    summary="Create or replace a template",
    responses=views.ok(views.TemplateView),
)
async def put_template(
    request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[TemplateDocument]
) -> Response[bytes]:
    """Refused (422) when any variant fails the content rules, with the same reasons as a notify."""
    who = await principal(request, "templates")
    if not (0 < len(name) <= 128 and name.replace("_", "").replace("-", "").isalnum()):
        raise Unprocessable(
            "validation_error",
            "template names are letters, digits, _ and -",
            errors=[{"field": "name", "message": "invalid"}],
        )
    document = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
    try:
        tpl = await services(request.app.state).templates.put(who.tenant, name, document, by=who.key_id)
    except TemplateRejected as exc:
        first = exc.reasons[0]
        raise Unprocessable(first["code"], first["detail"], reasons=exc.reasons) from None
    return json_response({**tpl.describe(), "source": "tenant"})


# -- notifications -------------------------------------------------------------------------------
@get(
    "/v1/notifications/{ntf_id:str}",
    summary="A notification and its lifecycle",
    responses=views.ok(views.NotificationView),
)
async def get_notification(request: Request[Any, Any, Any], ntf_id: FromPath[str]) -> Response[bytes]:
    """The notification with its events and attempts."""
    who = await principal(request, "notify")
    found = await services(request.app.state).store.get(who.tenant, ntf_id) if _valid_id(ntf_id) else None
    if found is None:
        raise NotFound("not_found", f"no notification {ntf_id}")
    record, events = found
    return json_response(notification_view(record, events))


@post(
    "/v1/notifications/{ntf_id:str}/cancel",
    status_code=200,
    summary="Cancel a queued or scheduled notification",
    responses=views.ok(views.NotificationView),
)
async def cancel_notification(request: Request[Any, Any, Any], ntf_id: FromPath[str]) -> Response[bytes]:
    """Cancel before it is handed to a provider; 409 afterwards."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    if not _valid_id(ntf_id):
        raise NotFound("not_found", f"no notification {ntf_id}")
    verdict = await svc.store.cancel(who.tenant, ntf_id, event("cancelled", by=who.key_id))
    if verdict == "unknown":
        raise NotFound("not_found", f"no notification {ntf_id}")
    if verdict != "ok":
        raise Conflict(
            "not_cancellable",
            f"notification is {verdict}; only queued or scheduled ones can be cancelled",
            current_status=verdict,
        )
    found = await svc.store.get(who.tenant, ntf_id)
    assert found is not None
    channel = found[0].get("channel", "")
    metrics.NOTIFICATIONS_BY.inc(channel, "cancelled")
    return json_response(notification_view(*found))


def _valid_id(ntf_id: str) -> bool:
    return ntf_id.startswith("ntf_") and len(ntf_id) == 30 and ntf_id[4:].isalnum()


def notification_view(record: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The public shape of a notification: addresses masked, times RFC 3339."""
    address = record.get("address", "")
    channel = record.get("channel", "")
    to: dict[str, Any] = {
        "user_id": record.get("user_id") or None,
        "timezone": record.get("timezone") or None,
    }
    if channel in ("sms", "mms"):
        to["phone"] = mask_address(address)
    elif channel == "email":
        to["email"] = mask_address(address)
    else:
        to["push_token"] = mask_address(address, "push")
    status = record.get("status", "")
    return {
        "id": record.get("id"),
        "status": status,
        "channel": channel,
        "category": record.get("category"),
        "to": to,
        "brand": record.get("brand") or None,
        "template": record.get("template") or None,
        "rendered": record.get("rendered") or {},
        "segments": int(record["segments"]) if record.get("segments") else None,
        "encoding": record.get("encoding") or None,
        "scheduled_for": rfc3339(record.get("not_before")) if status == "scheduled" else None,
        "send_at": rfc3339(record.get("send_at")),
        "expires_at": rfc3339(record.get("expires_at")),
        "created_at": rfc3339(record.get("created_at")),
        "updated_at": rfc3339(record.get("updated_at")),
        "provider": record.get("provider") or None,
        "provider_message_id": record.get("provider_message_id") or None,
        "error_code": record.get("error_code") or None,
        "reasons": msgspec.json.decode(record.get("reasons") or "[]"),
        "fallback": record.get("fallback") or [],
        "metadata": record.get("metadata") or {},
        "idempotency_key": record.get("idempotency_key") or None,
        "attempts": [e for e in events if e.get("type") == "attempt"],
        "events": events,
    }


# -- operations ----------------------------------------------------------------------------------
@get("/healthz", summary="The process is alive", responses=views.ok(views.Health))
async def healthz() -> Response[bytes]:
    """Liveness."""
    return json_response({"ok": True})


@get(
    "/readyz",
    summary="Redis reachable and a worker alive",
    responses={**views.ok(views.Ready), 503: ResponseSpec(views.Ready, description="Not ready")},
)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Readiness: Redis answers and a worker heartbeat is recent."""
    svc = services(request.app.state)
    try:
        await svc.store.redis.ping()
        workers = await svc.store.redis.zcount(keys.workers(), system_clock() - 15, "+inf")
    except redis.RedisError:
        return json_response({"ok": False, "redis": False, "workers": 0}, 503)
    ok = workers > 0
    return json_response({"ok": ok, "redis": True, "workers": workers}, 200 if ok else 503)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format."""
    svc = services(request.app.state)
    try:
        STATE.snapshot = await state_metrics.take(svc.store.redis)
    except redis.RedisError:
        STATE.snapshot = state_metrics.Snapshot()  # no numbers rather than stale ones
    return Response(content=generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


STATE = state_metrics.StateCollector()
with contextlib.suppress(ValueError):
    metrics.REGISTRY.register(STATE)


# -- composition ---------------------------------------------------------------------------------
def create_app(settings: Settings, redis_url: str) -> Litestar:
    """Compose the app from controllers and services; no globals beyond metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = async_client(redis_url)
        pipe = None if redis_url.startswith("rediss://") else ScriptPipe(redis_url, scripts.ACCEPT)
        store = Store(
            client,
            record_ttl=settings.record_ttl_seconds,
            idempotency_ttl=settings.idempotency_ttl_seconds,
            pipe=pipe,
            max_held=settings.max_held_per_channel,
        )
        policy = load_policy(settings.policy_path)
        metrics.prime(route_names(settings.providers_path))
        templates = TenantTemplates(client, load_catalog(), policy)
        app.state.services = Services(
            settings=settings,
            store=store,
            auth=Authenticator(client, settings.api_key_cache_seconds),
            acceptor=Acceptor(settings, store, templates, policy),
            templates=templates,
            optouts=OptOuts(client, Members(settings.hmac_key)),
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        )
        # Long-lived objects (modules, app, catalogue) leave the collector's generations:
        # fewer full collections while serving.
        gc.collect()
        gc.freeze()
        # Each request allocates a few hundred short-lived objects; collecting the youngest
        # generation every 700 allocations costs ~10% of throughput for nothing.
        gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            if pipe is not None:
                await pipe.aclose()
            audit_store = app.state.services.audit
            if audit_store is not None:
                audit_store.close()
            await client.aclose()

    return Litestar(
        route_handlers=[
            notify,
            notify_batch,
            compliance_check,
            list_templates,
            get_template,
            put_template,
            get_notification,
            cancel_notification,
            *RECEIPT_HANDLERS,
            healthz,
            readyz,
            metrics_endpoint,
            *OPTOUT_HANDLERS,
            *UNSUBSCRIBE_HANDLERS,
            *AUDIT_HANDLERS,
        ],
        lifespan=[lifespan],
        middleware=[RequestIdMiddleware],
        exception_handlers={
            TidingsError: on_tidings_error,
            HTTPException: on_http_exception,
            redis.RedisError: on_redis_error,
            Exception: on_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Tidings", version="0.1.0", path="/schema"),
        debug=False,
        logging_config=None,
    )
