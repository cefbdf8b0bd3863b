"""The Litestar application: ``create_app(settings, redis_url)`` composes controllers and services."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import redis
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from channels.config import route_names
from gateway import metrics
from gateway.api import console, notifications, notify, ops, views
from gateway.api import templates as templates_api
from gateway.api.audit import HANDLERS as AUDIT_HANDLERS
from gateway.api.auth import Authenticator, RateLimiter
from gateway.api.deps import Services, authenticate
from gateway.api.engagement import HANDLERS as ENGAGEMENT_HANDLERS
from gateway.api.links import HANDLERS as LINK_HANDLERS
from gateway.api.links import ShortLinks
from gateway.api.notify import NotifyFront
from gateway.api.optouts import HANDLERS as OPTOUT_HANDLERS
from gateway.api.problems import on_error, on_http_exception
from gateway.api.receipts import HANDLERS as RECEIPT_HANDLERS
from gateway.api.replies import HANDLERS as REPLY_HANDLERS
from gateway.api.series import HANDLERS as SERIES_HANDLERS
from gateway.api.unsubscribe import HANDLERS as UNSUBSCRIBE_HANDLERS
from gateway.api.verifications import HANDLERS as VERIFICATION_HANDLERS
from gateway.api.webhooks import HANDLERS as WEBHOOK_HANDLERS
from gateway.api.wechat import HANDLERS as WECHAT_HANDLERS
from gateway.engagement.clicks import Clicks
from gateway.engagement.outcomes import Outcomes
from gateway.errors import ProblemError
from gateway.logs import RequestIdMiddleware
from gateway.services import build_services
from gateway.settings import Settings, queue_url
from gateway.state.redisdb import async_client


# -- composition ---------------------------------------------------------------------------------
def create_app(settings: Settings, redis_url: str) -> Litestar:
    """Compose the app from controllers and services; no globals beyond metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        core = build_services(settings, redis_url)
        rq_url = queue_url(settings, redis_url)
        queue = None if rq_url == redis_url else async_client(rq_url, max_connections=4)
        metrics.prime(route_names(settings.providers_path))
        app.state.services = Services(
            settings=settings,
            store=core.store,
            auth=Authenticator(core.redis, settings.api_key_cache_seconds),
            acceptor=core.acceptor,
            templates=core.templates,
            optouts=core.optouts,
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            series=core.series,
            clicks=Clicks(core.redis, core.store, settings.click_repeat_seconds, redis_url),
            outcomes=Outcomes(settings, core.store, core.optouts, core.members),
            verifications=core.verifications,
            queue=queue,
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
            audit_store = app.state.services.audit
            if audit_store is not None:
                audit_store.close()
            await app.state.services.clicks.aclose()
            if queue is not None:
                await queue.aclose()
            await core.aclose()

    app = Litestar(
        route_handlers=[
            *notify.HANDLERS,
            *templates_api.HANDLERS,
            *notifications.HANDLERS,
            *RECEIPT_HANDLERS,
            *ops.HANDLERS,
            *REPLY_HANDLERS,
            *OPTOUT_HANDLERS,
            *WECHAT_HANDLERS,
            *UNSUBSCRIBE_HANDLERS,
            *AUDIT_HANDLERS,
            *WEBHOOK_HANDLERS,
            *SERIES_HANDLERS,
            *LINK_HANDLERS,
            *ENGAGEMENT_HANDLERS,
            *VERIFICATION_HANDLERS,
            console.router(),
        ],
        template_config=console.template_config(),
        lifespan=[lifespan],
        before_request=authenticate,
        middleware=[RequestIdMiddleware],
        exception_handlers={
            ProblemError: on_error,
            HTTPException: on_http_exception,
            redis.RedisError: on_error,
            RecursionError: on_error,
            Exception: on_error,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Tidings",
            version="0.1.0",
            path="/schema",
            description="Notification gateway with compliance guardrails for loyalty programs.",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http", scheme="bearer", description="An API key: `tidings keys create`"
                    )
                }
            ),
            security=[{"apiKey": []}],
            operation_id_creator=lambda handler, _method, _path: handler.handler_name,
        ),
        debug=False,
        logging_config=None,
    )
    views.tidy(app.openapi_schema)
    return app


def create_asgi(settings: Settings, redis_url: str) -> NotifyFront:
    """What the servers run: the app, with ``POST /v1/notify`` and the short links members tap
    answered in front of it."""
    app = create_app(settings, redis_url)
    return NotifyFront(app, ShortLinks(app))
