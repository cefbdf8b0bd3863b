"""HTTP-facing errors, each knowing its status and problem ``code``.

TidingsError
 ├── BadRequest            400 malformed_json, bad_request
 ├── Unauthorized          401 unauthorized
 ├── Forbidden             403 forbidden
 ├── NotFound              404 not_found
 ├── Conflict              409 idempotency_in_progress, not_cancellable
 ├── PayloadTooLarge       413 body_too_large
 ├── Unprocessable         422 validation_error, idempotency_key_reused, batch_too_large, rejected...
 └── Unavailable           503 redis_unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class TidingsError(Exception):
    """Base of every error that turns into an ``application/problem+json`` answer."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        return {
            "type": f"https://tidings.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class BadRequest(TidingsError):
    """The request could not be read."""

    status = 400
    title = "Bad request"


class Unauthorized(TidingsError):
    """No API key, or an unknown one."""

    status = 401
    title = "Unauthorized"


class Forbidden(TidingsError):
    """The key lacks the scope, or a webhook signature is wrong."""

    status = 403
    title = "Forbidden"


class NotFound(TidingsError):
    """No such resource for this tenant."""

    status = 404
    title = "Not found"


class Conflict(TidingsError):
    """The resource is in a state that does not allow this."""

    status = 409
    title = "Conflict"


class PayloadTooLarge(TidingsError):
    """The body is over the size limit."""

    status = 413
    title = "Payload too large"


class Unprocessable(TidingsError):
    """The request is well-formed but wrong."""

    status = 422
    title = "Unprocessable request"


class TooManyRequests(TidingsError):
    """The key is over its request rate; retry after the time given."""

    status = 429
    title = "Too many requests"


class Unavailable(TidingsError):
    """A dependency (Redis) is not reachable; retry later."""

    status = 503
    title = "Service unavailable"
