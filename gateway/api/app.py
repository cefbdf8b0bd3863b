"""The Litestar application: ``create_app(settings, redis_url)`` composes controllers and services."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import redis
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from channels.config import route_names
from compliance.policy import load_policy
from gateway import metrics
from gateway.accept.pipeline import Acceptor
from gateway.accept.tenant_templates import TenantTemplates
from gateway.api import notifications, notify, ops
from gateway.api import templates as templates_api
from gateway.api.audit import HANDLERS as AUDIT_HANDLERS
from gateway.api.auth import Authenticator, RateLimiter
from gateway.api.deps import Services
from gateway.api.optouts import HANDLERS as OPTOUT_HANDLERS
from gateway.api.problems import on_http_exception, on_redis_error, on_tidings_error, on_unexpected
from gateway.api.receipts import HANDLERS as RECEIPT_HANDLERS
from gateway.api.replies import HANDLERS as REPLY_HANDLERS
from gateway.api.unsubscribe import HANDLERS as UNSUBSCRIBE_HANDLERS
from gateway.errors import TidingsError
from gateway.logs import RequestIdMiddleware
from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.settings import Settings
from gateway.state import scripts
from gateway.state.redisdb import async_client
from gateway.state.scriptpipe import ScriptPipe
from gateway.state.store import Store
from templates.renderer import load_catalog


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
            *notify.HANDLERS,
            *templates_api.HANDLERS,
            *notifications.HANDLERS,
            *RECEIPT_HANDLERS,
            *ops.HANDLERS,
            *REPLY_HANDLERS,
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
