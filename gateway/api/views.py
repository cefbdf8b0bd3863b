"""The shapes of the API's answers, for the OpenAPI document (handlers build the same shapes as dicts).

schemathesis checks every answer against these in CI, so a drift between a handler and its
documented shape fails the build.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi import ResponseSpec


class Health(msgspec.Struct):
    """``/healthz``."""

    ok: bool


class Ready(msgspec.Struct):
    """``/readyz``."""

    ok: bool
    redis: bool
    workers: int


class NotificationView(msgspec.Struct):
    """A notification, addresses masked, with its lifecycle."""

    id: str
    status: str
    channel: str
    category: str | None
    to: dict[str, Any]
    brand: str | None
    template: str | None
    rendered: dict[str, Any]
    segments: int | None
    encoding: str | None
    scheduled_for: str | None
    send_at: str | None
    expires_at: str | None
    created_at: str | None
    updated_at: str | None
    provider: str | None
    provider_message_id: str | None
    error_code: str | None
    reasons: list[dict[str, Any]]
    fallback: list[str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    attempts: list[dict[str, Any]]
    events: list[dict[str, Any]]


class CheckResult(msgspec.Struct):
    """``POST /v1/compliance/check``."""

    decision: str
    reasons: list[dict[str, Any]]
    rendered: dict[str, Any] | None
    segments: int | None
    encoding: str | None
    scheduled_for: str | None


class TemplateParam(msgspec.Struct):
    """A declared parameter."""

    name: str
    required: bool


class TemplateView(msgspec.Struct):
    """A template with its variants; ``source`` is catalog or tenant."""

    name: str
    category: str
    description: str
    params: list[TemplateParam]
    channels: list[str]
    variants: dict[str, Any]
    source: str


class TemplateList(msgspec.Struct):
    """``GET /v1/templates``."""

    templates: list[TemplateView]


class OptOutEntry(msgspec.Struct):
    """One scope a member opted out of."""

    brand: str | None
    channel: str | None
    since: str | None
    source: str | None


class OptOutView(msgspec.Struct):
    """A member's opt-outs, the address masked."""

    address: str
    opted_out: bool
    entries: list[OptOutEntry]


class ImportReport(msgspec.Struct):
    """``POST /v1/optouts/import``."""

    imported: int
    duplicates: int
    invalid: list[dict[str, Any]]
    invalid_count: int
    rows: int


class AuditEvent(msgspec.Struct):
    """One audit event, the address masked."""

    seq: int
    id: str
    at: str
    type: str
    notification_id: str | None
    channel: str | None
    address: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(msgspec.Struct):
    """``GET /v1/audit/events``."""

    events: list[AuditEvent]
    next_cursor: str | None


class Verification(msgspec.Struct):
    """``GET /v1/audit/verify``: ``broken`` names the first broken link when ``ok`` is false."""

    ok: bool
    checked: int
    broken: dict[str, Any] | None = None


class Unsubscribed(msgspec.Struct):
    """``POST /v1/unsubscribe/{token}``."""

    ok: bool
    opted_out: bool
    changed: bool


def ok(model: Any, description: str = "OK") -> dict[int, ResponseSpec]:
    """``responses=`` for a handler answering 200 with this shape."""
    return {200: ResponseSpec(model, description=description)}


def text(media_type: str, description: str) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler answering 200 with text (CSV, HTML)."""
    return {200: ResponseSpec(str, description=description, media_type=media_type, generate_examples=False)}
