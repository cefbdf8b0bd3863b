"""Every error leaves as ``application/problem+json`` (RFC 9457), never a stack trace."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import redis
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from gateway.errors import ProblemError
from gateway.errors import problem_document as problem

log = logging.getLogger("tidings.api")
PROBLEM = "application/problem+json"
_encode = msgspec.json.Encoder()
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("body_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
}


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[bytes]:
    """A problem document response."""
    return Response(content=_encode.encode(body), status_code=status, media_type=PROBLEM, headers=headers)


def answer_of(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """What an error raised past a handler answers: (status, problem document, headers).

    The exception handlers below and the fast ``/v1/notify`` front (``gateway/api/notify.py``)
    both answer through it: our own errors know their status and code (refused credentials and
    signatures are logged), Redis away is 503 with Retry-After (never a 500), a JSON body nested
    past what the decoder follows is the client's mistake, anything else is a bug: logged, and a
    plain 500 without internals.
    """
    if isinstance(exc, ProblemError):
        if exc.status in (401, 403):
            log.warning("refused (%d %s): %s", exc.status, exc.code, exc.detail)
        return exc.status, exc.problem(), exc.headers
    if isinstance(exc, redis.RedisError):
        log.warning("redis unavailable: %s", type(exc).__name__)
        detail = "state store unreachable; retry shortly"
        return 503, problem(503, "redis_unavailable", "Service unavailable", detail), {"Retry-After": "1"}
    if isinstance(exc, RecursionError):
        log.warning("refused a JSON body nested too deep")
        return 400, problem(400, "malformed_json", "Malformed JSON", "the JSON body is nested too deep"), None
    log.exception("unhandled error", exc_info=exc)
    detail = "an unexpected error occurred; it has been logged"
    return 500, problem(500, "internal_error", "Internal error", detail), None


def on_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's handler for our errors, Redis errors, too-deep bodies and bugs (``answer_of``)."""
    return problem_response(*answer_of(exc))


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's errors: malformed JSON, validation, routing, body size."""
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        if len(extra) == 1 and extra[0].get("message") == "'data'":
            return problem_response(
                400, problem(400, "malformed_json", "Malformed JSON", "the request body is empty")
            )
        errors = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            message = str(item.get("message", ""))
            field = str(item.get("key", ""))
            unknown = _UNKNOWN_FIELD.search(message)
            if unknown:
                field = unknown.group(1) if field in ("", "data") else f"{field}.{unknown.group(1)}"
            errors.append({"field": "" if field == "data" else field, "message": message})
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or exc.detail
        body = problem(422, "validation_error", "Invalid request", detail, errors=errors)
        return problem_response(422, body)
    status = exc.status_code
    if status == 400 and any(w in str(exc.detail).lower() for w in ("json", "truncated", "malformed")):
        return problem_response(400, problem(400, "malformed_json", "Malformed JSON", str(exc.detail)))
    code, title = _HTTP_CODES.get(status, (f"http_{status}", "Error"))
    headers = {k: v for k, v in (exc.headers or {}).items()}
    return problem_response(status, problem(status, code, title, str(exc.detail)), headers)
