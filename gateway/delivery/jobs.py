"""rq job entry points (imported by name by the workers)."""

from __future__ import annotations

from typing import Any

from gateway.delivery.worker import Runtime
from gateway.settings import load_settings


def deliver(tenant: str, channel: str, ids: list[str]) -> dict[str, Any]:
    """Deliver a batch of notification ids of one tenant and channel."""
    runtime = Runtime.current()
    if runtime is None:
        import os

        settings = load_settings()
        url = settings.redis_url or os.environ.get("TIDINGS_REDIS_URL", "")
        runtime = Runtime(settings, url)
        Runtime.install(runtime)
    return runtime.deliver(tenant, channel, ids)
