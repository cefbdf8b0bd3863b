"""Controllers for operators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import metrics
from gateway.api import views
from gateway.api.deps import json_response, services
from gateway.state import gauges as state_metrics
from gateway.state import keys
from gateway.timeutil import system_clock


@get("/healthz", summary="The process is alive", responses=views.ok(views.Health, {"ok": True}))
async def healthz() -> Response[bytes]:
    """Liveness."""
    return json_response({"ok": True})


@get(
    "/readyz",
    summary="Redis reachable and a worker alive",
    responses={
        **views.ok(views.Ready, {"ok": True, "redis": True, "workers": 2}),
        **views.ok(views.Ready, {"ok": False, "redis": True, "workers": 0}, "Not ready", 503),
    },
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
        STATE.snapshot = await state_metrics.take(svc.store.redis, svc.queue)
    except redis.RedisError:
        STATE.snapshot = state_metrics.Snapshot()  # no numbers rather than stale ones
    return Response(content=generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


STATE = state_metrics.StateCollector()
with contextlib.suppress(ValueError):
    metrics.REGISTRY.register(STATE)


HANDLERS = [healthz, readyz, metrics_endpoint]
