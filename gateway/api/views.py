"""The shapes of the API's answers, for the OpenAPI document (handlers build the same shapes as dicts).

schemathesis checks every answer against these in CI, so a drift between a handler and its
documented shape fails the build.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example, Link, OpenAPI, OpenAPIResponse, OpenAPIType, Schema
from litestar.params import Body

from compliance.reasons import ReasonEntry
from gateway.api import examples
from gateway.api.deps import KEYLESS
from gateway.api.problems import PROBLEM


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


class WebhookView(msgspec.Struct):
    """A webhook endpoint (never its secret)."""

    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    include_addresses: bool
    disabled_reason: str | None
    created_at: str | None
    updated_at: str | None


class WebhookCreated(WebhookView):
    """A new endpoint with its signing secret, shown this once."""

    secret: str


class WebhookList(msgspec.Struct):
    """``GET /v1/webhooks``."""

    webhooks: list[WebhookView]


class RotatedSecret(msgspec.Struct):
    """The new secret; the previous one signs until ``previous_valid_until``."""

    id: str
    secret: str
    previous_valid_until: str | None


class TestQueued(msgspec.Struct):
    """A test event on its way."""

    delivery_id: str
    event_id: str


class DeliveryView(msgspec.Struct):
    """One event's delivery to one endpoint."""

    id: str
    event_id: str
    type: str
    status: str  # pending, retrying, delivered, failed
    attempts: int
    last_status: int | None
    last_error: str | None
    latency_ms: float | None
    created_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None


class DeliveryList(msgspec.Struct):
    """``GET /v1/webhooks/{id}/deliveries``."""

    deliveries: list[DeliveryView]


class FieldError(msgspec.Struct):
    """One field of the request that failed validation."""

    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document (``application/problem+json``): every error answer has this shape.

    ``code`` is the machine-readable reason. A notify refused by a rule (``type`` .../rejected)
    also carries the notify answer's members: ``id`` (null), ``channel`` and ``reasons``.
    """

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None
    reasons: list[ReasonEntry] | None = None
    id: str | None = None
    channel: str | None = None


class Verbatim(Example):
    """An example whose value is sent as written: Litestar drops ``None`` members of example values,
    and a documented null (``"id": null`` of a rejection) is part of the real answer."""

    def to_schema(self) -> dict[str, Any]:
        """The spec form, the value untouched."""
        return {**super().to_schema(), "value": self.value}


# What each error status means, for every operation that can answer it.
_MEANING = {
    400: "The body could not be read: not JSON, empty, or nested too deep (malformed_json)",
    401: "No API key, or an unknown or revoked one (unauthorized)",
    403: "The API key lacks the scope this operation needs (insufficient_scope)",
    404: "Not found for this tenant (not_found)",
    409: "Conflict with the resource's state",
    413: "The body is over the size limit (body_too_large)",
    422: "The request is well-formed but wrong (validation_error and the codes of API.md)",
    429: "The API key is over its request rate (rate_limited); retry after Retry-After seconds",
    503: "Redis or the audit store is unreachable; retry after Retry-After seconds",
}
# Every operation behind an API key can answer these; operations with a JSON body these too.
KEYED = (401, 403, 429, 503)
BODY = (400, 413, 422)


def problems(
    *statuses: int, say: dict[int, str] | None = None, show: dict[int, Any] | None = None
) -> dict[int, ResponseSpec]:
    """``responses=`` entries for the error statuses an operation answers, each a ``Problem``;
    ``say`` replaces a status's description and ``show`` its example for this operation."""
    say, show = say or {}, show or {}
    return {
        status: ResponseSpec(
            Problem,
            description=say.get(status, _MEANING[status]),
            media_type=PROBLEM,
            generate_examples=False,
            examples=[
                Verbatim(
                    summary=_MEANING[status].split(" (")[0], value=show.get(status, examples.PROBLEMS[status])
                )
            ],
        )
        for status in statuses
    }


def callback_answers() -> dict[int, ResponseSpec]:
    """``responses=`` of a provider callback (receipts, replies): the provider's own acknowledgement,
    or a problem for a callback that cannot be read, is forged, or names no provider we know."""
    return {
        **ok(dict[str, Any], {"code": 0}, "The provider's own acknowledgement (Twilio's is TwiML)"),
        **problems(
            400,
            403,
            404,
            413,
            503,
            say={
                400: "The callback could not be read in the provider's format",
                403: "The provider's signature or the URL token does not verify (bad_signature, bad_token)",
                404: "No such provider (unknown_provider)",
            },
            show={403: examples.problem(403, "bad_signature", "Forbidden", "signature does not verify")},
        ),
    }


def ok(model: Any, example: Any, description: str = "OK", status: int = 200) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler answering ``status`` with this shape, illustrated by ``example``."""
    return {
        status: ResponseSpec(
            model, description=description, generate_examples=False, examples=[Verbatim(value=example)]
        )
    }


def redirect(description: str) -> ResponseSpec:
    """A redirect answer (no body)."""
    return ResponseSpec(None, description=description, generate_examples=False)


def text(media_type: str, description: str, example: str) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler answering 200 with text (CSV, HTML)."""
    return {
        200: ResponseSpec(
            str,
            description=description,
            media_type=media_type,
            generate_examples=False,
            examples=[Verbatim(value=example)],
        )
    }


def body(example: Any) -> Any:
    """A JSON request body's ``Body`` marker with a real example."""
    return Body(examples=[Verbatim(value=example)])


def _any_number(schema: Any) -> None:
    """A union of scalars with both integer and number (``str | int | float | bool``) as ``anyOf``:
    under ``oneOf`` an integer matches two branches and so fails validation."""
    if not isinstance(schema, Schema):
        return
    branches = schema.one_of or []
    types = {b.type for b in branches if isinstance(b, Schema)}
    if {OpenAPIType.INTEGER, OpenAPIType.NUMBER} <= types:
        schema.any_of, schema.one_of = list(branches), None
    children = [*(schema.properties or {}).values(), schema.items, schema.additional_properties]
    for child in [*children, *(schema.one_of or []), *(schema.any_of or []), *(schema.all_of or [])]:
        _any_number(child)


def tidy(doc: OpenAPI) -> OpenAPI:
    """Drop the error entries Litestar adds by itself (its own validation body, which this API never
    sends: every error is a ``Problem``, declared per operation with ``problems``); mark the
    operations that take no API key; link a notify's answer to its lookup and cancel."""
    for path, item in (doc.paths or {}).items():
        for op in (item.get, item.put, item.post, item.delete, item.patch, item.head):
            if op is None or not op.responses:
                continue
            if not path.startswith("/v1/") or path.startswith(KEYLESS):
                op.security = []  # as ``authenticate`` decides: no API key here
            for status, response in list(op.responses.items()):
                content = getattr(response, "content", None) or {}
                schema = getattr(content.get("application/json"), "schema", None)
                if isinstance(schema, Schema) and "status_code" in (schema.properties or {}):
                    del op.responses[status]
    for schema in (doc.components.schemas or {}).values() if doc.components else ():
        _any_number(schema)
    # The id a notify answers leads to the notification: clients (and schemathesis' stateful
    # phase) follow these links from an accept to its lookup and cancel.
    by_id = {"ntf_id": "$response.body#/id"}
    links = {
        "GetNotification": Link(operation_id="get_notification", parameters=by_id),
        "CancelNotification": Link(operation_id="cancel_notification", parameters=by_id),
    }
    notify = (doc.paths or {}).get("/v1/notify")
    if notify is not None and notify.post is not None and notify.post.responses:
        for status in ("200", "202"):
            accepted = notify.post.responses.get(status)
            if isinstance(accepted, OpenAPIResponse):
                accepted.links = dict(links)
    return doc
