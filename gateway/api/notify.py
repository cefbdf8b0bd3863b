"""Controllers that send: ``/v1/notify``, ``/v1/notify/batch`` and the ``/v1/compliance/check`` dry run."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, post
from litestar.types import ASGIApp

from gateway.accept.answers import Answer
from gateway.api import examples, views
from gateway.api.deps import (
    JSON,
    RawResponse,
    Services,
    check_batch,
    check_rate,
    json_response,
    merge_item,
    principal,
    raw_header,
    services,
)
from gateway.api.problems import PROBLEM, answer_of
from gateway.errors import Rejected, Unprocessable
from gateway.logs import REQUEST_ID, REQUEST_ID_HEADER, new_request_id, request_id_of
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
    data = keyed(data, raw_header(request, b"idempotency-key"))
    answer = await services(request.app.state).acceptor.notify(who.tenant, data)
    return answer_response(answer)


def keyed(data: NotifyRequest, header_key: str | None) -> NotifyRequest:
    """The request with its ``Idempotency-Key`` header, which must agree with the body's key."""
    if header_key is None:
        return data
    check_key(header_key)
    if data.idempotency_key not in (None, header_key):
        raise Unprocessable(
            "idempotency_key_mismatch", "Idempotency-Key header and body idempotency_key differ"
        )
    return msgspec.structs.replace(data, idempotency_key=header_key)


def check_key(header_key: str) -> None:
    """An ``Idempotency-Key`` header: 1 to 255 characters (422 otherwise)."""
    if not 0 < len(header_key) <= 255:
        raise Unprocessable(
            "validation_error",
            "Idempotency-Key must be 1 to 255 characters",
            errors=[{"field": "Idempotency-Key", "message": "must be 1 to 255 characters"}],
        )


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
    if header_key is not None:
        check_key(header_key)
        fp = hashlib.sha256(_encode.encode(data)).hexdigest()
        pending = _encode.encode({"fp": fp, "state": "pending"}).decode()
        existing = await svc.store.idempotency_reserve(who.tenant, f"batch:{header_key}", pending)
        if existing is not None:
            return answer_response(svc.acceptor.replay(existing, fp))
    try:
        reqs = [_item(data.defaults, item, header_key, i) for i, item in enumerate(data.items)]
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


def _item(defaults: dict[str, Any], item: Any, batch_key: str | None, index: int) -> NotifyRequest | Rejected:
    """One item merged over the defaults. In a batch with an ``Idempotency-Key``, an item without
    its own key gets ``batch-item:{key}:{index}`` (apart from the batch's own ``batch:{key}``, and
    one batch's from another's: the index is the last part and a number): a batch that failed
    part-way (a 503 after some items were accepted) and is sent again answers those items from
    their records instead of accepting them twice."""
    if not isinstance(item, dict):
        return Rejected("", [{"code": "validation_error", "detail": "each item must be an object"}])
    merged = merge_item(defaults, item, MERGED_FIELDS)
    try:
        req = msgspec.convert(merged, NotifyRequest, strict=False)
    except msgspec.ValidationError as exc:
        channel = str(merged.get("channel", ""))
        return Rejected(channel, [{"code": "validation_error", "detail": str(exc)}])
    if batch_key and req.idempotency_key is None:
        return msgspec.structs.replace(req, idempotency_key=f"batch-item:{batch_key}:{index}")
    return req


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

_decode_notify = msgspec.json.Decoder(NotifyRequest, strict=False)


class NotifyFront:
    """The API's ASGI app: ``POST /v1/notify``'s common case answered in front of Litestar.

    The single notify is the hottest endpoint, and the framework's routing, signature model and
    middleware cost about as much CPU as the accept itself. Here the request goes straight from
    the server to the acceptor: the same key check, body decoding (msgspec with Litestar's coercion
    rules), ``Idempotency-Key`` check, rate limit and accept as the ``notify`` handler above, and
    the same answer with its ``X-Request-Id``. Everything that is not the common case before the
    rate limit counts the request (another path, no or a refused key, no ``Content-Length`` or one
    over the limit, a body that does not decode or validate, a bad ``Idempotency-Key``) goes to
    ``inner`` with the body read so far handed over, so each of those errors is the app's own
    answer and nothing has been written. From the rate limit on, an error answers as the app's
    exception handlers would (``answer_of``).
    """

    def __init__(self, app: Litestar, inner: Callable[[dict[str, Any], Any, Any], Awaitable[None]]) -> None:
        self.app = app
        self.inner = inner
        self._services: Services | None = None  # the app's, once its lifespan has built them

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/notify" or scope["method"] != "POST":
            if scope["type"] == "lifespan":  # a start (again) builds the services anew
                self._services = None
            await self.inner(scope, receive, send)
            return
        authorization = header_key = None
        length = -1
        given_id = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"idempotency-key":
                header_key = value.decode("latin-1")
            elif name == REQUEST_ID_HEADER:
                given_id = True
        svc = self._services
        if svc is None:  # Litestar's State looks an attribute up through two mappings: once is enough
            svc = self._services = services(self.app.state)
        if authorization is None or not 0 < length <= svc.settings.max_body_bytes:
            await self.inner(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the caller went away: nothing to answer
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            who = await svc.auth.principal(authorization)
            who.require("notify")
            data = keyed(_decode_notify.decode(body), header_key)
        except Exception:  # the app answers it, from the same body
            await self.inner(scope, _replay(body, receive), send)
            return
        request_id = request_id_of(scope["headers"]) if given_id else new_request_id()
        token = REQUEST_ID.set(request_id)
        try:
            try:
                check_rate(svc, who)
                answer = await svc.acceptor.notify(who.tenant, data)
                response = answer_response(answer)
            except Exception as exc:  # answered as the app's exception handlers answer
                status, problem, headers = answer_of(exc)
                response = RawResponse(_encode.encode(problem), status, PROBLEM, headers)
            response.headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
            await response.send_to(send)
        finally:
            REQUEST_ID.reset(token)


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A ``receive`` that hands over the body already read, then listens as the original does."""
    pending = [body]

    async def replay() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replay
