"""Controllers that send: ``/v1/notify``, ``/v1/notify/batch`` and the ``/v1/compliance/check`` dry run."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.types import ASGIApp

from gateway.accept.answers import Answer
from gateway.api import examples, views
from gateway.api.deps import (
    JSON,
    RawResponse,
    check_batch,
    json_response,
    merge_item,
    principal,
    raw_header,
    services,
)
from gateway.api.problems import PROBLEM
from gateway.errors import Rejected, Unprocessable
from gateway.models import BatchRequest, BatchResults, NotifyRequest, NotifyResult, Status

_encode = msgspec.json.Encoder()
MERGED_FIELDS = ("to", "params", "content", "metadata")


def answer_response(answer: Answer) -> RawResponse:
    """An accept answer; rejections are also problem documents."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media_type = PROBLEM if answer.status >= 400 else JSON
    return RawResponse(_encode.encode(answer.body), answer.status, media_type, headers)


@post(
    "/v1/notify",
    status_code=202,
    summary="Send one notification",
    responses={
        **views.ok(NotifyResult, examples.QUEUED, "Accepted: queued or scheduled", 202),
        **views.ok(NotifyResult, examples.SUPPRESSED, "Accepted but suppressed (opted out, capped, expired)"),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            409,
            say={
                409: "A request with this Idempotency-Key is still being processed (idempotency_in_progress)",
                422: "Rejected by a rule (type .../rejected, with reasons), invalid, or an Idempotency-Key reused",
            },
            show={422: examples.REJECTED},
        ),
    },
)
async def notify(
    request: Request[Any, Any, Any], data: Annotated[NotifyRequest, views.body(examples.NOTIFY_REQUEST)]
) -> ASGIApp:
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
    responses={
        **views.ok(BatchResults, examples.BATCH_RESULTS, "One result per item, in order"),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            409,
            say={
                409: "A batch with this Idempotency-Key is still being processed (idempotency_in_progress)",
                422: "Invalid: no items, or more than the limit (batch_too_large)",
            },
        ),
    },
)
async def notify_batch(
    request: Request[Any, Any, Any], data: Annotated[BatchRequest, views.body(examples.BATCH_REQUEST)]
) -> ASGIApp:
    """Each item is merged over ``defaults`` and accepted or rejected on its own."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    limit = svc.settings.max_batch_items
    check_batch(data.items, limit)
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
                    "status": Status.REJECTED,
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
    merged = merge_item(defaults, item, MERGED_FIELDS)
    try:
        return msgspec.convert(merged, NotifyRequest, strict=False)
    except msgspec.ValidationError as exc:
        channel = str(merged.get("channel", ""))
        return Rejected(channel, [{"code": "validation_error", "detail": str(exc)}])


@post(
    "/v1/compliance/check",
    status_code=200,
    summary="Dry run: what would happen to this notify",
    responses={
        **views.ok(views.CheckResult, examples.CHECK_RESULT),
        **views.problems(*views.KEYED, *views.BODY),
    },
)
async def compliance_check(
    request: Request[Any, Any, Any], data: Annotated[NotifyRequest, views.body(examples.NOTIFY_REQUEST)]
) -> Response[bytes]:
    """Same body as /v1/notify; sends nothing, counts nothing."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).acceptor.check(who.tenant, data))


HANDLERS = [notify, notify_batch, compliance_check]
